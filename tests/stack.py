"""Helpers to run the real OpenTelemetry Collector and Jaeger in tests (stdlib only).

This module holds no tests.  It gives:

* :func:`ensure_built` builds ``bin/otelcol-alphatrace`` and ``bin/jaeger`` through
  ``collector/stack.sh build`` (a no-op when they are up to date).  It returns ``None`` when both
  binaries are ready, or a reason string that a test can hand to ``pytest.skip``.  When the
  environment variable ``CI`` is ``true`` a missing Go toolchain or a failed build raises
  :class:`StackError` instead, so CI fails loudly.
* :class:`LocalStack` starts the collector (and optionally Jaeger) as subprocesses on free loopback
  ports with every path pointed into a temporary directory, waits until they are healthy, and stops
  them on exit::

      reason = stack.ensure_built()
      if reason:
          pytest.skip(reason)
      with stack.LocalStack(tmp_path) as s:
          ...  # export to s.otlp_http_endpoint / s.otlp_grpc_endpoint
          s.wait_for_trace_lines(lambda lines: len(lines) >= 1)
          s.jaeger_find_traces("alphatrace")

* With ``with_prometheus=True`` it also starts Prometheus (Debian's package, installed by
  ``collector/stack.sh build``) scraping the collector's ``prometheus`` exporter every second, and
  points Jaeger's Monitor tab at it: :meth:`LocalStack.prometheus_query`,
  :meth:`LocalStack.jaeger_metrics`.

* :class:`MultiHost` is the fleet on several hosts, on loopback: gateway collectors (each with its
  own trace file) and one agent-mode collector per shard routing by trace id to them
  (``collector/agent-config.yaml``); :meth:`MultiHost.start_shard` runs a scheduler shard against
  its agent collector.  ``collector/fleet_demo.py`` (``make fleet-demo``) and
  ``tests/test_fleet_hosts.py`` use it.

* :func:`validate_compose` validates ``docker-compose.yml`` with ``bin/compose-spec``.

Environment knobs: ``ALPHATRACE_OTELCOL_BIN`` / ``ALPHATRACE_JAEGER_BIN`` /
``ALPHATRACE_COMPOSE_SPEC_BIN`` / ``ALPHATRACE_PROMETHEUS_BIN`` use prebuilt binaries instead of the ones in ``bin/``
(``ensure_built`` then builds nothing);
``ALPHATRACE_STACK_BUILD_TIMEOUT`` (seconds, default 3600) bounds the build.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_SH = REPO_ROOT / "collector" / "stack.sh"
COLLECTOR_CONFIG = REPO_ROOT / "collector-config.yaml"
JAEGER_CONFIG = REPO_ROOT / "collector" / "jaeger-config.yaml"
AGENT_CONFIG = REPO_ROOT / "collector" / "agent-config.yaml"
BUILD_LOG = REPO_ROOT / "bin" / "build" / "stack-build.log"

HOST = "127.0.0.1"

_ENABLE_HINT = (
    "install Go (https://go.dev/doc/install, 1.24 or newer) and run `make stack` "
    "(collector/stack.sh build) to build bin/otelcol-alphatrace and bin/jaeger; "
    "with CI=true these tests run and a missing toolchain fails the run"
)


class StackError(RuntimeError):
    """The stack could not be built or started (message includes log tails)."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def collector_bin() -> Path:
    return Path(os.environ.get("ALPHATRACE_OTELCOL_BIN") or REPO_ROOT / "bin" / "otelcol-alphatrace")


def jaeger_bin() -> Path:
    return Path(os.environ.get("ALPHATRACE_JAEGER_BIN") or REPO_ROOT / "bin" / "jaeger")


def prometheus_bin() -> Path:
    """Debian's ``prometheus`` (installed by ``collector/stack.sh build prometheus``)."""
    return Path(os.environ.get("ALPHATRACE_PROMETHEUS_BIN") or shutil.which("prometheus") or "/usr/bin/prometheus")


def prometheus_version() -> str:
    """The installed Prometheus's release, e.g. ``2.42.0`` (Debian's ``2.42.0+ds`` without the suffix)."""
    out = subprocess.run([str(prometheus_bin()), "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.split()[2].split("+")[0]


def compose_spec_bin() -> Path:
    """compose-go's Compose-file validator, built by ``collector/stack.sh build``."""
    return Path(os.environ.get("ALPHATRACE_COMPOSE_SPEC_BIN") or REPO_ROOT / "bin" / "compose-spec")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


_built_result: list[str | None] | None = None


def ensure_built(timeout: float | None = None) -> str | None:
    """Make sure both binaries exist and match the pinned versions.

    Returns ``None`` when they are ready, otherwise a human-readable reason to skip.  With
    ``CI=true`` every failure raises :class:`StackError`.  The result is cached per process.
    """
    global _built_result
    if _built_result is not None:
        return _built_result[0]
    reason = _ensure_built(timeout)
    if reason is not None and _in_ci():
        raise StackError(f"CI=true but the collector/Jaeger stack is not available: {reason}")
    _built_result = [reason]
    return reason


def _ensure_built(timeout: float | None) -> str | None:
    if os.environ.get("ALPHATRACE_OTELCOL_BIN") or os.environ.get("ALPHATRACE_JAEGER_BIN"):
        missing = [str(p) for p in (collector_bin(), jaeger_bin(), compose_spec_bin()) if not os.access(p, os.X_OK)]
        if missing:
            return f"prebuilt stack binaries not executable: {', '.join(missing)}"
        return None
    if timeout is None:
        timeout = float(os.environ.get("ALPHATRACE_STACK_BUILD_TIMEOUT", "3600"))
    BUILD_LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(BUILD_LOG, "ab") as log:
        log.write(f"\n=== ensure_built {datetime.now().isoformat()} ===\n".encode())
        log.flush()
        try:
            proc = subprocess.run(
                ["bash", str(STACK_SH), "build"],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return f"`collector/stack.sh build` timed out after {timeout:.0f}s; log {BUILD_LOG}:\n{_tail(BUILD_LOG)}"
    if proc.returncode != 0:
        if shutil.which("go") is None:
            # Up-to-date binaries need no Go; anything to (re)build does.
            return f"the Go toolchain (`go`) is not on PATH; to run the collector/Jaeger tests, {_ENABLE_HINT}"
        return f"`collector/stack.sh build` failed (exit {proc.returncode}); log {BUILD_LOG}:\n{_tail(BUILD_LOG)}"
    for p in (collector_bin(), jaeger_bin(), compose_spec_bin(), prometheus_bin()):
        if not os.access(p, os.X_OK):
            return f"build finished but {p} is missing; log {BUILD_LOG}:\n{_tail(BUILD_LOG)}"
    return None


def validate_compose(compose_file=None, env: Mapping[str, str] | None = None) -> dict:
    """Validate ``docker-compose.yml`` against the Compose Specification; return the model.

    Runs ``bin/compose-spec`` (compose-go's validator: JSON-schema validation of the Compose
    Specification plus interpolation and normalisation, as ``docker compose config`` does) from the
    repository root, with ``env`` as the only environment for ``${...}`` interpolation.  Raises
    :class:`StackError` with compose-go's message when the file is invalid.  Call
    :func:`ensure_built` first.
    """
    compose_file = Path(compose_file or REPO_ROOT / "docker-compose.yml").resolve()
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    run_env.update(env or {})
    proc = subprocess.run(
        [str(compose_spec_bin()), "--format", "json", str(compose_file)],
        cwd=compose_file.parent,
        env=run_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise StackError(f"{compose_file} is not a valid Compose file: {proc.stderr.strip() or proc.stdout.strip()}")
    return json.loads(proc.stdout)


# Below Linux's default ephemeral range (32768-60999) and above the well-known ports of the stack's
# services (4317/4318, 6379, 9090, 16686 are below 20000): the kernel never hands one of these to an
# outgoing connection or to bind(0) between the check and the service's own bind. Ports from bind(0)
# could be, and were: a collector failing to bind while other suites ran on the same machine.
PORT_RANGE = (20000, 32767)

# Every port this process has handed out. Stacks draw their ports in __init__ and bind them only in
# start(), so a port free at one draw is still free at the next: without this, MultiHost's five stacks
# (60 ports from 12,768) drew the same port twice about one run in eight, and the second collector
# failed with "address already in use". Forgotten when half the range is taken (those stacks are long
# stopped), so a long session never runs out.
_HANDED_OUT: set[int] = set()


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1, drawn at random from ``PORT_RANGE``, none of them handed
    out before by this process; ``OSError`` when ``count`` free ones are not found in 10,000 tries."""
    if len(_HANDED_OUT) + count > (PORT_RANGE[1] - PORT_RANGE[0]) // 2:
        _HANDED_OUT.clear()
    draw = random.SystemRandom()
    socks: list[socket.socket] = []
    try:
        tries = 0
        while len(socks) < count:
            tries += 1
            if tries > 10_000:
                raise OSError(f"no {count} free TCP ports in {PORT_RANGE} on {HOST}")
            port = draw.randint(*PORT_RANGE)
            if port in _HANDED_OUT:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, port))
            except OSError:  # in use (or just drawn twice: the held one conflicts)
                s.close()
                continue
            socks.append(s)
        ports = [s.getsockname()[1] for s in socks]
        _HANDED_OUT.update(ports)
        return ports
    finally:
        for s in socks:
            s.close()


def http_get(url: str, timeout: float = 5.0) -> tuple:
    """GET ``url``; returns ``(status, body_bytes)``; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition", interval: float = 0.1):
    """Poll ``predicate()`` until it returns a truthy value (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def complete_lines(path: Path) -> list[str]:
    """Newline-terminated, non-empty lines of ``path`` (the file exporter may be mid-write)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n")
    if end < 0:
        return []
    return [ln for ln in data[:end].decode("utf-8").split("\n") if ln.strip()]


class _Proc:
    """One managed subprocess with its log file and restart parameters."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path, health_url: str, ready_urls: Sequence[str] = ()
    ):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log = log
        self.health_url = health_url
        self.ready_urls = list(ready_urls)
        self.popen: subprocess.Popen | None = None
        self._logf = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, timeout: float) -> None:
        if self.running:
            raise StackError(f"{self.name} is already running (pid {self.popen.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._logf = open(self.log, "ab")
        self._logf.write(f"\n=== start {self.name} {datetime.now().isoformat()}: {' '.join(self.argv)}\n".encode())
        self._logf.flush()
        self.popen = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [self.health_url, *self.ready_urls]
        while True:
            if self.popen is not None and self.popen.poll() is not None:
                raise StackError(
                    f"{self.name} exited with code {self.popen.returncode} before it was healthy; log {self.log}:\n{self.log_tail()}"
                )
            pending = [u for u in pending if http_get(u, timeout=2.0)[0] != 200]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{self.name} not healthy after {timeout:.0f}s (no 200 from {', '.join(pending)}); log {self.log}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send ``sig`` and wait for exit (SIGKILL after ``timeout``); returns the exit code."""
        rc = None
        if self.popen is not None:
            if self.popen.poll() is None:
                try:
                    self.popen.send_signal(sig)
                except ProcessLookupError:
                    pass
                try:
                    self.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(timeout=10)
            rc = self.popen.returncode
        if self._logf is not None:
            self._logf.close()
            self._logf = None
        return rc

    def log_tail(self, lines: int = 40) -> str:
        if self._logf is not None:
            self._logf.flush()
        return _tail(self.log, lines)


class LocalStack:
    """The collector (and optionally Jaeger) on free loopback ports, state under ``tmp_path``.

    Parameters
    ----------
    tmp_path:
        Directory for the trace file (``tmp_path/telemetry/<trace_file_name>``), the collector's
        persistent queue (``tmp_path/collector-storage``) and logs (``tmp_path/stack-logs``).
    with_jaeger:
        Also start Jaeger and export to it.  Without it the collector's pipeline has only the
        file exporter.
    collector_config:
        Another collector config file (default: the repository's ``collector-config.yaml``).  It
        should honour the same ``${env:...}`` names to get the ports and paths.
    env:
        Extra environment for the collector, e.g. ``{"ALPHATRACE_TRACE_FILE_FORMAT": "proto"}``,
        ``{"ALPHATRACE_TRACE_FILE_COMPRESSION": "zstd", "ALPHATRACE_TRACE_FILE_MAX_MEGABYTES": "1"}``.
    collector_args:
        Extra command-line arguments, e.g. ``["--feature-gates=exporter.file.nativeCompression"]``.
    batch_timeout / flush_interval:
        Short defaults so tests see spans quickly.
    with_prometheus:
        Also start Prometheus (scraping the collector's ``prometheus`` exporter every second) and
        point Jaeger's metrics storage (the Monitor tab) at it.
    spanmetrics_flush_interval:
        How often the spanmetrics connector emits its series (short, so tests see them quickly).

    Jaeger keeps its traces in Badger under ``tmp_path/jaeger-data``, so :meth:`restart_jaeger`
    keeps them.
    """

    def __init__(
        self,
        tmp_path,
        with_jaeger: bool = True,
        collector_config=None,
        *,
        env: Mapping[str, str] | None = None,
        collector_args: Sequence[str] = (),
        trace_file_name: str = "traces.jsonl",
        batch_timeout: str = "100ms",
        flush_interval: str = "100ms",
        startup_timeout: float = 60.0,
        with_prometheus: bool = False,
        spanmetrics_flush_interval: str = "1s",
    ):
        self.tmp_path = Path(tmp_path).resolve()
        self.with_jaeger = with_jaeger
        self.collector_config = Path(collector_config or COLLECTOR_CONFIG).resolve()
        self.startup_timeout = startup_timeout
        self.log_dir = self.tmp_path / "stack-logs"
        self.trace_file = self.tmp_path / "telemetry" / trace_file_name
        self.storage_dir = self.tmp_path / "collector-storage"

        (
            self.otlp_grpc_port,
            self.otlp_http_port,
            self.health_port,
            self.metrics_port,
            self.jaeger_otlp_grpc_port,
            self.jaeger_otlp_http_port,
            self.jaeger_query_port,
            self.jaeger_query_grpc_port,
            self.jaeger_health_port,
            self.jaeger_metrics_port,
            self.collector_prometheus_port,
            self.prometheus_port,
        ) = free_ports(12)
        self.with_prometheus = with_prometheus
        self.jaeger_data_dir = self.tmp_path / "jaeger-data"
        self.prometheus_url = f"http://{HOST}:{self.prometheus_port}"
        self.collector_prometheus_endpoint = f"{HOST}:{self.collector_prometheus_port}"

        self.otlp_grpc_endpoint = f"{HOST}:{self.otlp_grpc_port}"
        self.otlp_http_endpoint = f"http://{HOST}:{self.otlp_http_port}"
        self.otlp_http_traces_url = f"{self.otlp_http_endpoint}/v1/traces"
        self.health_url = f"http://{HOST}:{self.health_port}/"
        self.jaeger_query_url = f"http://{HOST}:{self.jaeger_query_port}" if with_jaeger else None
        self.jaeger_otlp_grpc_endpoint = f"{HOST}:{self.jaeger_otlp_grpc_port}"

        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHATRACE_", "JAEGER_", "OTEL_"))}
        cenv = dict(base_env)
        cenv.update(
            {
                "ALPHATRACE_OTLP_GRPC_ENDPOINT": self.otlp_grpc_endpoint,
                "ALPHATRACE_OTLP_HTTP_ENDPOINT": f"{HOST}:{self.otlp_http_port}",
                "ALPHATRACE_COLLECTOR_HEALTH_ENDPOINT": f"{HOST}:{self.health_port}",
                "ALPHATRACE_COLLECTOR_METRICS_HOST": HOST,
                "ALPHATRACE_COLLECTOR_METRICS_PORT": str(self.metrics_port),
                "ALPHATRACE_TRACE_FILE": str(self.trace_file),
                "ALPHATRACE_COLLECTOR_METRICS_FILE": str(self.trace_file.parent / "metrics" / "metrics.jsonl"),
                "ALPHATRACE_COLLECTOR_STORAGE": str(self.storage_dir),
                "ALPHATRACE_BATCH_TIMEOUT": batch_timeout,
                "ALPHATRACE_TRACE_FILE_FLUSH_INTERVAL": flush_interval,
                "JAEGER_OTLP_ENDPOINT": self.jaeger_otlp_grpc_endpoint,
                "ALPHATRACE_COLLECTOR_PROMETHEUS_ENDPOINT": self.collector_prometheus_endpoint,
                "ALPHATRACE_SPANMETRICS_FLUSH_INTERVAL": spanmetrics_flush_interval,
            }
        )
        if not with_jaeger:
            cenv["ALPHATRACE_COLLECTOR_TRACE_EXPORTERS"] = "[file]"
        cenv.update(env or {})
        self.collector = _Proc(
            "collector",
            [str(collector_bin()), f"--config={self.collector_config}", *collector_args],
            cenv,
            self.tmp_path,
            self.log_dir / "collector.log",
            self.health_url,
        )

        self.jaeger: _Proc | None = None
        if with_jaeger:
            jenv = dict(base_env)
            jenv.update(
                {
                    "ALPHATRACE_JAEGER_OTLP_GRPC_ENDPOINT": self.jaeger_otlp_grpc_endpoint,
                    "ALPHATRACE_JAEGER_OTLP_HTTP_ENDPOINT": f"{HOST}:{self.jaeger_otlp_http_port}",
                    "ALPHATRACE_JAEGER_QUERY_HTTP_ENDPOINT": f"{HOST}:{self.jaeger_query_port}",
                    "ALPHATRACE_JAEGER_QUERY_GRPC_ENDPOINT": f"{HOST}:{self.jaeger_query_grpc_port}",
                    "ALPHATRACE_JAEGER_HEALTH_ENDPOINT": f"{HOST}:{self.jaeger_health_port}",
                    "ALPHATRACE_JAEGER_METRICS_HOST": HOST,
                    "ALPHATRACE_JAEGER_METRICS_PORT": str(self.jaeger_metrics_port),
                    "ALPHATRACE_JAEGER_DATA_DIR": str(self.jaeger_data_dir),
                    "ALPHATRACE_PROMETHEUS_URL": self.prometheus_url,
                }
            )
            self.jaeger = _Proc(
                "jaeger",
                [str(jaeger_bin()), f"--config={JAEGER_CONFIG}"],
                jenv,
                self.tmp_path,
                self.log_dir / "jaeger.log",
                f"http://{HOST}:{self.jaeger_health_port}/status",
                ready_urls=[f"{self.jaeger_query_url}/api/v3/services"],
            )

        self.prometheus: _Proc | None = None
        if with_prometheus:
            prometheus_config = self.tmp_path / "prometheus.yml"
            self.prometheus_config = prometheus_config
            self.prometheus = _Proc(
                "prometheus",
                [
                    str(prometheus_bin()),
                    f"--config.file={prometheus_config}",
                    f"--storage.tsdb.path={self.tmp_path / 'prometheus-data'}",
                    f"--web.listen-address={HOST}:{self.prometheus_port}",
                ],
                base_env,
                self.tmp_path,
                self.log_dir / "prometheus.log",
                f"{self.prometheus_url}/-/ready",
            )

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def start(self) -> LocalStack:
        for p in (collector_bin(),) + ((jaeger_bin(),) if self.with_jaeger else ()) + ((prometheus_bin(),) if self.with_prometheus else ()):
            if not os.access(p, os.X_OK):
                raise StackError(f"{p} is missing: call tests.stack.ensure_built() first")
        self.trace_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.prometheus is not None:
                # The repository's scrape config, pointed at this collector and scraped every second.
                config = (REPO_ROOT / "collector" / "prometheus.yml").read_text()
                config = config.replace("127.0.0.1:8889", self.collector_prometheus_endpoint).replace("10s", "1s")
                self.prometheus_config.write_text(config)
                self.prometheus.start(self.startup_timeout)
            if self.jaeger is not None:
                self.jaeger.start(self.startup_timeout)
            self.collector.start(self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the collector first (it drains to Jaeger/file), then Jaeger."""
        self.collector.stop()
        if self.jaeger is not None:
            self.jaeger.stop()
        if self.prometheus is not None:
            self.prometheus.stop()

    def restart_jaeger(self) -> None:
        """Stop Jaeger gracefully and start it again on the same ports and Badger directory."""
        if self.jaeger is None:
            raise StackError("this LocalStack runs without Jaeger")
        self.jaeger.stop()
        self.jaeger.start(self.startup_timeout)

    def start_collector(self) -> None:
        self.collector.start(self.startup_timeout)

    def stop_collector(self, timeout: float = 30.0) -> int | None:
        """Graceful stop (SIGTERM): the collector flushes its batch and file before exiting."""
        return self.collector.stop(signal.SIGTERM, timeout)

    def kill_collector(self) -> int | None:
        """SIGKILL: no flush, no shutdown hooks."""
        return self.collector.stop(signal.SIGKILL, 10.0)

    def restart_collector(self) -> None:
        self.stop_collector()
        self.start_collector()

    @property
    def collector_pid(self) -> int | None:
        return self.collector.popen.pid if self.collector.running else None

    def collector_log_tail(self, lines: int = 40) -> str:
        return self.collector.log_tail(lines)

    def jaeger_log_tail(self, lines: int = 40) -> str:
        return self.jaeger.log_tail(lines) if self.jaeger is not None else ""

    def log_tails(self, lines: int = 40) -> str:
        """Both logs' last lines, for assertion messages."""
        out = f"--- collector log ({self.collector.log}) ---\n{self.collector_log_tail(lines)}"
        if self.jaeger is not None:
            out += f"\n--- jaeger log ({self.jaeger.log}) ---\n{self.jaeger_log_tail(lines)}"
        if self.prometheus is not None:
            out += f"\n--- prometheus log ({self.prometheus.log}) ---\n{self.prometheus.log_tail(lines)}"
        return out

    # -- the file exporter's output -----------------------------------------------------------
    def trace_lines(self) -> list[str]:
        """Complete (newline-terminated) lines of the active trace file (json format only)."""
        return complete_lines(self.trace_file)

    def trace_files(self) -> list[Path]:
        """The active trace file and its rotated backups (``<stem>-<timestamp>-<reason><ext>``)."""
        d = self.trace_file.parent
        stem, suffix = self.trace_file.stem, self.trace_file.suffix
        return sorted(p for p in d.glob(f"{stem}*{suffix}") if p.is_file())

    def wait_for_trace_lines(self, predicate: Callable[[list[str]], bool], timeout: float = 20.0) -> list[str]:
        """Poll :meth:`trace_lines` until ``predicate(lines)`` is true; raises with log tails."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.trace_lines()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"trace file {self.trace_file} did not reach the expected state in {timeout}s ({len(lines)} lines)\n{self.log_tails()}"
                )
            time.sleep(0.1)

    # -- Jaeger's v3 query API ----------------------------------------------------------------
    def jaeger_get(self, path: str, params: Mapping[str, str] | None = None):
        """GET ``path`` from Jaeger's query service; returns ``(status, parsed_json_or_None)``."""
        if self.jaeger_query_url is None:
            raise StackError("this LocalStack runs without Jaeger")
        url = self.jaeger_query_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url)
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, None

    def jaeger_services(self) -> list[str]:
        status, data = self.jaeger_get("/api/v3/services")
        return list((data or {}).get("services") or []) if status == 200 else []

    def jaeger_find_traces(self, service: str, start_min: datetime | None = None, start_max: datetime | None = None, **extra: str):
        """``/api/v3/traces`` for ``service``; returns ``(status, json)``.

        Default window: the last hour up to one minute from now.  Extra query parameters may be
        given without the ``query.`` prefix, e.g. ``operation_name="invoke_agent momentum"``,
        ``duration_min="1ms"``.  ``query.num_traces`` defaults to 20: Jaeger 2.12's v3 search
        answers 500 ("search depth must be greater than 0") without it.  Jaeger answers 404 when
        nothing matches.  Attribute (tag) search is not offered by the v3 HTTP API.
        """
        now = datetime.now(UTC)
        start_min = start_min or now - timedelta(hours=1)
        start_max = start_max or now + timedelta(minutes=1)
        params: dict[str, str] = {
            "query.service_name": service,
            "query.start_time_min": _rfc3339(start_min),
            "query.start_time_max": _rfc3339(start_max),
            "query.num_traces": "20",
        }
        params.update({f"query.{k}": v for k, v in extra.items()})
        return self.jaeger_get("/api/v3/traces", params)

    def jaeger_get_trace(self, trace_id_hex: str):
        """``/api/v3/traces/{trace_id}``; returns ``(status, json)`` (OTLP JSON under ``result``)."""
        return self.jaeger_get(f"/api/v3/traces/{trace_id_hex}")

    def wait_for_jaeger_trace(self, trace_id_hex: str, predicate: Callable[[dict], bool] = lambda d: True, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, data = self.jaeger_get_trace(trace_id_hex)
            if status == 200 and data and predicate(data):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"trace {trace_id_hex} not in Jaeger after {timeout}s (last status {status})\n{self.log_tails()}")
            time.sleep(0.2)

    # -- Prometheus and Jaeger's Monitor tab ---------------------------------------------------
    def prometheus_query(self, promql: str) -> list[dict]:
        """An instant query; returns the result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        if self.prometheus is None:
            raise StackError("this LocalStack runs without Prometheus")
        status, body = http_get(f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        if status != 200:
            raise AssertionError(f"Prometheus answered {status} to {promql!r}: {body[:300]!r}")
        return json.loads(body)["data"]["result"]

    def jaeger_metrics(self, kind: str, service: str, **params: str):
        """Jaeger's metrics API behind the Monitor tab: ``kind`` is ``calls``, ``errors`` or
        ``latencies``; the window is the last 10 minutes in 5 s steps unless ``params`` say otherwise.
        Returns ``(status, json)``."""
        query = {
            "service": service,
            "endTs": str(int(time.time() * 1000)),
            "lookback": "600000",
            "step": "5000",
            "ratePer": "60000",
        }
        query.update(params)
        return self.jaeger_get(f"/api/metrics/{kind}", query)


def _rfc3339(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class MultiHost:
    """Gateways and one agent collector per shard, each a :class:`LocalStack` under ``tmp_path``.

    Start order: gateways, then agent collectors; stop order the reverse, so an agent collector can
    still deliver while it stops.  A shard's scheduler exports over OTLP/HTTP to its agent collector.
    """

    def __init__(self, tmp_path, shards: Sequence[str], gateways: int = 2, startup_timeout: float = 60.0):
        self.tmp_path = Path(tmp_path).resolve()
        self.gateways = [
            LocalStack(self.tmp_path / f"gateway-{i + 1}", with_jaeger=False, startup_timeout=startup_timeout) for i in range(gateways)
        ]
        ring = "[" + ", ".join(g.otlp_grpc_endpoint for g in self.gateways) + "]"
        self.agent_collectors = {
            shard: LocalStack(
                self.tmp_path / f"agent-{shard}",
                with_jaeger=False,
                collector_config=AGENT_CONFIG,
                env={"ALPHATRACE_GATEWAYS": ring, "ALPHATRACE_GATEWAY_RETRY_MAX_INTERVAL": "1s"},
                startup_timeout=startup_timeout,
            )
            for shard in shards
        }

    def __enter__(self) -> MultiHost:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def start(self) -> MultiHost:
        try:
            for part in (*self.gateways, *self.agent_collectors.values()):
                part.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for part in (*self.agent_collectors.values(), *self.gateways):
            part.stop()

    def start_shard(self, shard: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.Popen:
        """``scheduler.py --shard SHARD *argv`` in its own process, exporting to its agent collector;
        its output goes to ``tmp_path/shard-SHARD.log``."""
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        child_env.update(env or {})
        child_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.agent_collectors[shard].otlp_http_endpoint
        child_env.pop("ALPHATRACE_TRACE_FILE", None)
        log = open(self.tmp_path / f"shard-{shard}.log", "ab")
        try:
            return subprocess.Popen(
                [os.environ.get("ALPHATRACE_PYTHON") or sys.executable, "scheduler.py", "--shard", shard, *argv],
                cwd=REPO_ROOT,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def shard_log(self, shard: str) -> str:
        return _tail(self.tmp_path / f"shard-{shard}.log", 40)

    def trace_files(self) -> list[Path]:
        """Every gateway's trace files (active and rotated), gateway by gateway."""
        return [path for gateway in self.gateways for path in gateway.trace_files()]

    def log_tails(self, lines: int = 20) -> str:
        parts = [f"=== {g.tmp_path.name}\n{g.log_tails(lines)}" for g in self.gateways]
        parts += [f"=== agent {shard}\n{a.log_tails(lines)}" for shard, a in self.agent_collectors.items()]
        return "\n".join(parts)
