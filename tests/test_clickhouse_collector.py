"""The ClickHouse path, collector side: the built collector accepts collector/clickhouse-config.yaml over
collector-config.yaml (the exporter in the traces pipeline, loopback, a persistent queue, the TTL, the
password from the environment and redacted), refuses a broken endpoint, and the DDL the SQL tests load is
the exporter's own, byte for byte; Jaeger accepts collector/jaeger-clickhouse-config.yaml over its config."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import stack
from tests.clickhouse_rows import FIXTURES

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent
OVERLAY = REPO / "collector" / "clickhouse-config.yaml"
EXPORTER_MODULE = "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/clickhouseexporter"


def _collector(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    configs = [f"--config={REPO / 'collector-config.yaml'}", f"--config={OVERLAY}"]
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("ALPHATRACE_")} | (env or {})
    return subprocess.run([str(stack.collector_bin()), *args, *configs], capture_output=True, text=True, timeout=120, env=full_env)


def test_the_collector_validates_the_clickhouse_overlay(built):
    done = _collector("validate")
    assert done.returncode == 0, done.stderr


def test_the_merged_config_sends_spans_to_clickhouse_with_a_persistent_queue(built):
    done = _collector("print-config", "--format=json", env={"ALPHATRACE_CLICKHOUSE_PASSWORD": "s3cret-pw-for-test"})
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    exporter = config["exporters"]["clickhouse"]
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["file", "otlp_grpc/jaeger", "clickhouse"]
    assert exporter["endpoint"] == "tcp://127.0.0.1:9000" and exporter["database"] == "otel"
    assert exporter["traces_table_name"] == "otel_traces" and exporter["create_schema"] is True
    assert exporter["ttl"] == 90 * 24 * 3600 * 10**9
    assert exporter["sending_queue"]["storage"] == "file_storage" and exporter["retry_on_failure"]["max_elapsed_time"] == 0
    assert exporter["password"] == "[REDACTED]" and "s3cret-pw-for-test" not in done.stdout
    assert "file_storage" in config["service"]["extensions"]


def test_a_broken_clickhouse_endpoint_is_refused_at_validation(built):
    done = _collector("validate", env={"ALPHATRACE_CLICKHOUSE_ENDPOINT": "http://[::1"})
    assert done.returncode != 0
    assert "endpoint must be url format" in done.stderr


def test_the_ddl_under_test_is_the_exporter_s_own(built, tmp_path):
    """`collector/stack.sh build` downloaded the exporter's module: the fixtures are its templates."""
    version = next(
        line.split()[-1] for line in (REPO / "collector" / "builder-config.yaml").read_text().splitlines() if EXPORTER_MODULE in line
    )
    located = subprocess.run(
        ["go", "mod", "download", "-json", f"{EXPORTER_MODULE}@{version}"], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert located.returncode == 0, located.stderr
    templates = Path(json.loads(located.stdout)["Dir"]) / "internal" / "sqltemplates"
    names = sorted(path.name for path in FIXTURES.glob("*.sql"))
    assert names == ["traces_id_ts_lookup_mv.sql", "traces_id_ts_lookup_table.sql", "traces_insert.sql", "traces_table.sql"]
    for name in names:
        assert (FIXTURES / name).read_bytes() == (templates / name).read_bytes(), name


JAEGER_CONFIGS = [
    f"--config={REPO / 'collector' / 'jaeger-config.yaml'}",
    f"--config={REPO / 'collector' / 'jaeger-clickhouse-config.yaml'}",
]


def test_jaeger_validates_its_clickhouse_overlay_and_refuses_a_broken_one(built, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALPHATRACE_")}
    done = subprocess.run([str(stack.jaeger_bin()), "validate", *JAEGER_CONFIGS], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "extensions:\n  jaeger_storage:\n    backends:\n      clickhouse_store:\n        clickhouse:\n          protocol: udp\n"
    )
    done = subprocess.run(
        [str(stack.jaeger_bin()), "validate", *JAEGER_CONFIGS, f"--config={broken}"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode != 0 and "does not validate as in(native|http)" in done.stderr
