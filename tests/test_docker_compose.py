"""docker-compose.yml is a valid Compose file (checked with compose-go, the loader Docker Compose v2
uses, since no Docker engine runs here) and describes the same stack as the Docker-less one:
same versions, same config files, same ports, published on 127.0.0.1 only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import stack

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose(built):
    return stack.validate_compose()


def _pinned(pattern: str, path: Path) -> str:
    return re.search(pattern, path.read_text(), re.MULTILINE).group(1)


def test_images_are_pinned_to_the_versions_the_local_stack_builds(compose):
    services = compose["services"]
    collector_version = _pinned(r"^\s*version:\s*([0-9.]+)-alphatrace", REPO / "collector" / "builder-config.yaml")
    jaeger_version = _pinned(r'^JAEGER_VERSION="v([0-9.]+)"', REPO / "collector" / "stack.sh")
    assert services["collector"]["image"] == f"otel/opentelemetry-collector-contrib:{collector_version}"
    assert services["jaeger"]["image"] == f"jaegertracing/jaeger:{jaeger_version}"
    prometheus_version = stack.prometheus_version()
    assert services["prometheus"]["image"] == f"prom/prometheus:v{prometheus_version}"


def test_every_published_port_is_on_loopback(compose):
    ports = [p for service in compose["services"].values() for p in service.get("ports", [])]
    assert ports and all(p["host_ip"] == "127.0.0.1" for p in ports)
    published = {(name, int(p["published"])) for name, s in compose["services"].items() for p in s["ports"]}
    expected = {("collector", 4317), ("collector", 4318), ("collector", 13133), ("collector", 8889)}
    expected |= {("jaeger", 16686), ("prometheus", 9090)}
    assert expected <= published


def test_same_config_files_and_trace_file_as_the_local_stack(compose):
    collector = compose["services"]["collector"]
    mounts = {v["target"]: v["source"] for v in collector["volumes"]}
    assert mounts["/etc/otelcol-contrib/config.yaml"].endswith("collector-config.yaml")
    assert mounts["/telemetry"].endswith("telemetry")
    assert collector["environment"]["ALPHATRACE_TRACE_FILE"] == "/telemetry/traces.jsonl"
    assert collector["environment"]["JAEGER_OTLP_ENDPOINT"] == "jaeger:14317"
    jaeger_mounts = {v["target"]: v["source"] for v in compose["services"]["jaeger"]["volumes"]}
    assert any(source.endswith("collector/jaeger-config.yaml") for source in jaeger_mounts.values())
    assert compose["services"]["collector"]["depends_on"]["jaeger"]["condition"] == "service_healthy"
    jaeger = compose["services"]["jaeger"]
    assert jaeger["environment"]["ALPHATRACE_JAEGER_DATA_DIR"].startswith("/telemetry/")
    assert jaeger["environment"]["ALPHATRACE_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert collector["environment"]["ALPHATRACE_COLLECTOR_PROMETHEUS_ENDPOINT"] == "0.0.0.0:8889"
    prometheus_mounts = {v["target"]: v["source"] for v in compose["services"]["prometheus"]["volumes"]}
    assert prometheus_mounts["/etc/prometheus/prometheus.yml"].endswith("collector/prometheus-compose.yml")
    local = (REPO / "collector" / "prometheus.yml").read_text()
    assert (REPO / "collector" / "prometheus-compose.yml").read_text().split("scrape_configs:")[1] == local.split("scrape_configs:")[
        1
    ].replace("127.0.0.1:8889", "collector:8889")
    assert all("healthcheck" in s for s in compose["services"].values())


def test_a_broken_compose_file_is_rejected(compose, tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((REPO / "docker-compose.yml").read_text().replace("ports:", "portz:", 1))
    with pytest.raises(stack.StackError, match="not a valid Compose file"):
        stack.validate_compose(broken)
