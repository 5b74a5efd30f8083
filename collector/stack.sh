#!/usr/bin/env bash
# The Docker-less alphatrace stack: an OpenTelemetry Collector built with the Collector Builder
# (collector/builder-config.yaml) and Jaeger v2 built from its Go module (collector/jaeger/).
#
#   collector/stack.sh build [collector|jaeger|compose-spec|prometheus|redis]...
#                               build bin/otelcol-alphatrace, bin/jaeger and bin/compose-spec (the
#                               Compose file validator) only if missing or if the pinned versions
#                               changed, and install Debian's `prometheus` and `redis-server`
#                               packages if they are missing (as root; apt) -- all five by default
#   collector/stack.sh up       start Prometheus, Jaeger and the collector in the background on
#                               127.0.0.1, wait until healthy
#   collector/stack.sh down     stop exactly the processes `up` started (pid files)
#   collector/stack.sh status   show what runs and whether it is healthy
#   collector/stack.sh clean    remove the built binaries and build stamps (not telemetry/)
#
# Ports and paths come from collector-config.yaml / collector/jaeger-config.yaml and can be changed
# with the ALPHATRACE_* variables documented in docs/stack.md.  State (pid files, logs) goes to
# $ALPHATRACE_STACK_DIR (default: telemetry/stack).
set -euo pipefail

# ---- pinned versions -----------------------------------------------------------------------
# The collector's component versions live in collector/builder-config.yaml; the builder must have
# the same v0.N.  Jaeger's module version lives in collector/jaeger/go.mod.
OCB_VERSION="v0.161.0"
JAEGER_MODULE_VERSION="v1.75.0"   # module github.com/jaegertracing/jaeger v1.75.0 == Jaeger 2.12.0
JAEGER_VERSION="v2.12.0"
JAEGER_PKG="github.com/jaegertracing/jaeger/cmd/jaeger"
# Our Compose-file validator (collector/compose-spec/main.go) on compose-go, the library Docker
# Compose v2 loads files with; version pinned in collector/compose-spec/go.mod.  The tests use it
# to validate docker-compose.yml without a Docker engine.
COMPOSE_SPEC_PKG="."

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/bin"
TOOLS_DIR="$BIN_DIR/tools"
BUILD_DIR="$BIN_DIR/build"
MANIFEST="$ROOT/collector/builder-config.yaml"
JAEGER_MOD_DIR="$ROOT/collector/jaeger"
COMPOSE_SPEC_MOD_DIR="$ROOT/collector/compose-spec"
COMPOSE_SPEC_BIN="$BIN_DIR/compose-spec"
COLLECTOR_BIN="$BIN_DIR/otelcol-alphatrace"
JAEGER_BIN="$BIN_DIR/jaeger"
COLLECTOR_CONFIG="${ALPHATRACE_COLLECTOR_CONFIG:-$ROOT/collector-config.yaml}"
# An overlay merged over it, e.g. collector/clickhouse-config.yaml (the ClickHouse path, docs/clickhouse.md).
COLLECTOR_EXTRA_CONFIG="${ALPHATRACE_COLLECTOR_EXTRA_CONFIG:-}"
JAEGER_CONFIG="${ALPHATRACE_JAEGER_CONFIG:-$ROOT/collector/jaeger-config.yaml}"
# Prometheus: Debian's package (2.42), the server the Monitor tab and the metrics tests query.
PROMETHEUS_BIN="${ALPHATRACE_PROMETHEUS_BIN:-$(command -v prometheus || echo /usr/bin/prometheus)}"
PROMETHEUS_CONFIG="$ROOT/collector/prometheus.yml"
PROMETHEUS_LISTEN="${ALPHATRACE_PROMETHEUS_LISTEN:-127.0.0.1:9090}"
PROMETHEUS_DATA="${ALPHATRACE_PROMETHEUS_DATA_DIR:-$ROOT/telemetry/prometheus}"
PROMETHEUS_RETENTION="${ALPHATRACE_PROMETHEUS_RETENTION:-15d}"
# Redis: Debian's package (7.0), the shared store of the kill switch (docs/several-hosts.md).
REDIS_BIN="${ALPHATRACE_REDIS_BIN:-$(command -v redis-server || echo /usr/bin/redis-server)}"
STATE_DIR="${ALPHATRACE_STACK_DIR:-$ROOT/telemetry/stack}"
START_TIMEOUT="${ALPHATRACE_STACK_START_TIMEOUT:-60}"

# Same defaults as in the two config files.
COLLECTOR_HEALTH="${ALPHATRACE_COLLECTOR_HEALTH_ENDPOINT:-127.0.0.1:13133}"
JAEGER_HEALTH="${ALPHATRACE_JAEGER_HEALTH_ENDPOINT:-127.0.0.1:14133}"
JAEGER_QUERY="${ALPHATRACE_JAEGER_QUERY_HTTP_ENDPOINT:-127.0.0.1:16686}"
# The collector exports to wherever Jaeger's OTLP gRPC receiver listens.
export JAEGER_OTLP_ENDPOINT="${JAEGER_OTLP_ENDPOINT:-${ALPHATRACE_JAEGER_OTLP_GRPC_ENDPOINT:-127.0.0.1:14317}}"

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

hash_of() { # hash_of STRING FILE... -> sha256 of the string and the files' contents
  local s="$1"; shift
  { printf '%s\n' "$s"; cat "$@"; } | sha256sum | cut -d' ' -f1
}

require_go() {
  command -v go >/dev/null 2>&1 || die "the Go toolchain ('go') is not on PATH. Install Go 1.24 or newer (https://go.dev/doc/install), then run '$0 build' again."
}

with_lock() { # serialise concurrent builds (e.g. parallel test workers)
  mkdir -p "$BUILD_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$BUILD_DIR/.lock"
    flock 9
  fi
  "$@"
}

# ---- build ---------------------------------------------------------------------------------
collector_stamp() { hash_of "ocb=$OCB_VERSION cgo=0" "$MANIFEST"; }
jaeger_stamp() { hash_of "jaeger=$JAEGER_VERSION pkg=$JAEGER_PKG cgo=0" "$JAEGER_MOD_DIR/go.mod" "$JAEGER_MOD_DIR/go.sum"; }

up_to_date() { # up_to_date BINARY STAMP_FILE EXPECTED
  [[ -x "$1" && -f "$2" && "$(cat "$2")" == "$3" ]]
}

install_builder() {
  local want="$OCB_VERSION"
  if [[ -x "$TOOLS_DIR/builder" && -f "$TOOLS_DIR/builder.version" && "$(cat "$TOOLS_DIR/builder.version")" == "$want" ]]; then
    return 0
  fi
  say "installing the OpenTelemetry Collector Builder $want into bin/tools"
  mkdir -p "$TOOLS_DIR"
  GOBIN="$TOOLS_DIR" go install "go.opentelemetry.io/collector/cmd/builder@$want"
  printf '%s\n' "$want" >"$TOOLS_DIR/builder.version"
}

build_collector() {
  local stamp; stamp="$(collector_stamp)"
  if up_to_date "$COLLECTOR_BIN" "$BUILD_DIR/otelcol-alphatrace.stamp" "$stamp"; then
    say "bin/otelcol-alphatrace is up to date"
    return 0
  fi
  require_go
  install_builder
  local ver
  ver="$(awk '/^ *- gomod: go.opentelemetry.io\/collector\/receiver\/otlpreceiver /{print $4}' "$MANIFEST")"
  [[ "$ver" == "$OCB_VERSION" ]] || die "collector/builder-config.yaml pins otlpreceiver $ver but stack.sh's OCB_VERSION is $OCB_VERSION; keep them equal"
  say "building bin/otelcol-alphatrace (collector $OCB_VERSION; the first build of the collector and Jaeger together takes 12 to 16 minutes on a busy 2-core machine)"
  local t0=$SECONDS
  rm -rf "$BUILD_DIR/otelcol-alphatrace"
  mkdir -p "$BUILD_DIR/otelcol-alphatrace"
  # `go mod tidy`, which the builder runs, also resolves the imports of the components' *tests*;
  # fileexporter's tests import a contrib module version the module proxy does not serve.  `-e`
  # (passed through GOFLAGS, which only reaches the go commands that know the flag) lets tidy go
  # on; the binary itself does not need that module.
  (cd "$ROOT" && GOFLAGS="$(go env GOFLAGS) -e" "$TOOLS_DIR/builder" --config "$MANIFEST") \
    || die "the collector build failed (see the builder output above)"
  install -m 0755 "$BUILD_DIR/otelcol-alphatrace/otelcol-alphatrace" "$COLLECTOR_BIN.tmp"
  mv -f "$COLLECTOR_BIN.tmp" "$COLLECTOR_BIN"
  printf '%s\n' "$stamp" >"$BUILD_DIR/otelcol-alphatrace.stamp"
  say "built bin/otelcol-alphatrace in $((SECONDS - t0))s ($(du -h "$COLLECTOR_BIN" | cut -f1))"
}

build_jaeger() {
  local stamp; stamp="$(jaeger_stamp)"
  if up_to_date "$JAEGER_BIN" "$BUILD_DIR/jaeger.stamp" "$stamp"; then
    say "bin/jaeger is up to date"
    return 0
  fi
  require_go
  grep -q "github.com/jaegertracing/jaeger $JAEGER_MODULE_VERSION" "$JAEGER_MOD_DIR/go.mod" \
    || die "collector/jaeger/go.mod does not require github.com/jaegertracing/jaeger $JAEGER_MODULE_VERSION (stack.sh's JAEGER_MODULE_VERSION); keep them equal"
  say "building bin/jaeger (Jaeger $JAEGER_VERSION from module $JAEGER_MODULE_VERSION; the first build takes several minutes)"
  local t0=$SECONDS
  (cd "$JAEGER_MOD_DIR" && CGO_ENABLED=0 go build -mod=readonly -trimpath \
      -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" \
      -o "$JAEGER_BIN.tmp" "$JAEGER_PKG") \
    || die "the Jaeger build failed (see the go output above)"
  mv -f "$JAEGER_BIN.tmp" "$JAEGER_BIN"
  printf '%s\n' "$stamp" >"$BUILD_DIR/jaeger.stamp"
  say "built bin/jaeger in $((SECONDS - t0))s ($(du -h "$JAEGER_BIN" | cut -f1))"
}

build_compose_spec() {
  local stamp; stamp="$(hash_of "pkg=$COMPOSE_SPEC_PKG cgo=0" "$COMPOSE_SPEC_MOD_DIR/go.mod" "$COMPOSE_SPEC_MOD_DIR/go.sum" "$COMPOSE_SPEC_MOD_DIR/main.go")"
  if up_to_date "$COMPOSE_SPEC_BIN" "$BUILD_DIR/compose-spec.stamp" "$stamp"; then
    say "bin/compose-spec is up to date"
    return 0
  fi
  require_go
  say "building bin/compose-spec (Compose file validator from compose-go)"
  (cd "$COMPOSE_SPEC_MOD_DIR" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" \
      -o "$COMPOSE_SPEC_BIN.tmp" "$COMPOSE_SPEC_PKG") \
    || die "the compose-spec build failed (see the go output above)"
  mv -f "$COMPOSE_SPEC_BIN.tmp" "$COMPOSE_SPEC_BIN"
  printf '%s\n' "$stamp" >"$BUILD_DIR/compose-spec.stamp"
  say "built bin/compose-spec"
}

# install_debian_package PACKAGE VAR VERSION -- the package's program is at ${!VAR}; installed with
# apt (as root) when missing.  The package's own service is never what the project runs: policy-rc.d
# or the lack of systemd refuses to start it, and stack.sh and the tests start their own instances
# on loopback with their own configs.
install_debian_package() {
  local package="$1" var="$2" version="$3" program
  program="${!var}"
  if [[ -x "$program" ]]; then
    say "$package is installed ($("$program" --version 2>&1 | head -n 1))"
    return 0
  fi
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "$package is not installed: as root, 'apt-get install $package' (Debian's $version), or set ALPHATRACE_${var} to its program"
  fi
  say "installing Debian's $package package with apt (about a minute)"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
    || die "apt-get install $package failed"
  program="$(command -v "$(basename "$program")")" || die "apt-get installed $package but $(basename "$program") is not on PATH"
  printf -v "$var" '%s' "$program"
  say "installed $("$program" --version 2>&1 | head -n 1)"
}

install_prometheus() { install_debian_package prometheus PROMETHEUS_BIN 2.42; }

install_redis() { install_debian_package redis-server REDIS_BIN 7.0; }

cmd_build() {
  local what
  (($#)) || set -- collector jaeger compose-spec prometheus redis
  for what in "$@"; do
    case "$what" in
      collector) with_lock build_collector ;;
      jaeger) with_lock build_jaeger ;;
      compose-spec) with_lock build_compose_spec ;;
      prometheus) with_lock install_prometheus ;;
      redis) with_lock install_redis ;;
      *) die "unknown build target '$what' (collector, jaeger, compose-spec, prometheus, redis)" ;;
    esac
  done
}

# ---- run -----------------------------------------------------------------------------------
http_ok() { # http_ok URL -> success when it answers 200
  if command -v curl >/dev/null 2>&1; then
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true)" == "200" ]]
  else
    python3 - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
PY
  fi
}

pid_of() { # pid_of NAME -> prints the pid if NAME's pid file points at our live process
  local pf="$STATE_DIR/$1.pid" pid bin
  [[ -f "$pf" ]] || return 1
  pid="$(cat "$pf")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  case "$1" in collector) bin="$COLLECTOR_BIN" ;; jaeger) bin="$JAEGER_BIN" ;; prometheus) bin="$PROMETHEUS_BIN" ;; esac
  # Guard against a recycled pid: the process must be running our binary.
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$bin" || return 1
  printf '%s\n' "$pid"
}

health_url() {
  case "$1" in
    collector) printf 'http://%s/\n' "$COLLECTOR_HEALTH" ;;
    jaeger) printf 'http://%s/status\n' "$JAEGER_HEALTH" ;;
    prometheus) printf 'http://%s/-/ready\n' "$PROMETHEUS_LISTEN" ;;
  esac
}

start_one() { # start_one NAME BINARY ARG...
  local name="$1" bin="$2" log="$STATE_DIR/$1.log" pid
  shift 2
  if pid="$(pid_of "$name")"; then
    say "$name already running (pid $pid)"
    return 0
  fi
  if http_ok "$(health_url "$name")"; then
    die "something else already answers on $(health_url "$name"); stop it or set the ALPHATRACE_* port variables (docs/stack.md)"
  fi
  printf '\n=== %s: %s %s\n' "$(date -u +%FT%TZ)" "$bin" "$*" >>"$log"
  # setsid: own session, so closing the terminal or make's shell does not stop it.
  (cd "$ROOT" && exec setsid "$bin" "$@" </dev/null >>"$log" 2>&1) &
  pid=$!
  printf '%s\n' "$pid" >"$STATE_DIR/$name.pid"
}

run_log_tail() { # run_log_tail NAME -> the last lines logged since the latest start marker
  local log="$STATE_DIR/$1.log"
  [[ -f "$log" ]] || return 0
  awk '/^=== /{buf=""} {buf = buf $0 "\n"} END{printf "%s", buf}' "$log" | tail -n 30 >&2
}

wait_healthy() { # wait_healthy NAME URL...
  local name="$1"; shift
  local deadline=$((SECONDS + START_TIMEOUT)) url
  for url in "$@"; do
    until http_ok "$url"; do
      if ! pid_of "$name" >/dev/null; then
        printf 'stack: error: %s exited during start-up; last lines of %s:\n' "$name" "$STATE_DIR/$name.log" >&2
        run_log_tail "$name"
        return 1
      fi
      if ((SECONDS >= deadline)); then
        printf 'stack: error: %s not healthy after %ss (%s); last lines of %s:\n' "$name" "$START_TIMEOUT" "$url" "$STATE_DIR/$name.log" >&2
        run_log_tail "$name"
        return 1
      fi
      sleep 0.2
    done
  done
}

cmd_up() {
  local b
  for b in "$COLLECTOR_BIN" "$JAEGER_BIN"; do
    [[ -x "$b" ]] || die "$b is missing: run '$0 build' (make stack) first"
  done
  [[ -x "$PROMETHEUS_BIN" ]] || die "prometheus is missing: run '$0 build prometheus' (make stack) first"
  mkdir -p "$STATE_DIR" "$PROMETHEUS_DATA"
  # The scrape target follows the collector's exporter address when it is moved.
  sed "s/127\.0\.0\.1:8889/${ALPHATRACE_COLLECTOR_PROMETHEUS_ENDPOINT:-127.0.0.1:8889}/" "$PROMETHEUS_CONFIG" >"$STATE_DIR/prometheus.yml"
  start_one prometheus "$PROMETHEUS_BIN" "--config.file=$STATE_DIR/prometheus.yml" \
    "--storage.tsdb.path=$PROMETHEUS_DATA" "--storage.tsdb.retention.time=$PROMETHEUS_RETENTION" \
    "--web.listen-address=$PROMETHEUS_LISTEN"
  if ! wait_healthy prometheus "$(health_url prometheus)"; then
    cmd_down >/dev/null 2>&1 || true
    exit 1
  fi
  start_one jaeger "$JAEGER_BIN" "--config=$JAEGER_CONFIG"
  if ! wait_healthy jaeger "$(health_url jaeger)" "http://$JAEGER_QUERY/api/v3/services"; then
    cmd_down >/dev/null 2>&1 || true
    exit 1
  fi
  if [[ -n "$COLLECTOR_EXTRA_CONFIG" ]]; then
    [[ -f "$COLLECTOR_EXTRA_CONFIG" ]] || die "ALPHATRACE_COLLECTOR_EXTRA_CONFIG=$COLLECTOR_EXTRA_CONFIG is not a file"
    start_one collector "$COLLECTOR_BIN" "--config=$COLLECTOR_CONFIG" "--config=$(realpath "$COLLECTOR_EXTRA_CONFIG")"
  else
    start_one collector "$COLLECTOR_BIN" "--config=$COLLECTOR_CONFIG"
  fi
  if ! wait_healthy collector "$(health_url collector)"; then
    cmd_down >/dev/null 2>&1 || true
    exit 1
  fi
  say "collector healthy (pid $(pid_of collector)): OTLP gRPC ${ALPHATRACE_OTLP_GRPC_ENDPOINT:-127.0.0.1:4317}, OTLP HTTP http://${ALPHATRACE_OTLP_HTTP_ENDPOINT:-127.0.0.1:4318}, traces file ${ALPHATRACE_TRACE_FILE:-./telemetry/traces.jsonl}"
  say "jaeger healthy (pid $(pid_of jaeger)): query API/UI http://$JAEGER_QUERY (e.g. http://$JAEGER_QUERY/api/v3/services; Monitor tab: http://$JAEGER_QUERY/api/metrics/calls?service=alphatrace)"
  say "prometheus healthy (pid $(pid_of prometheus)): http://$PROMETHEUS_LISTEN (e.g. http://$PROMETHEUS_LISTEN/api/v1/query?query=traces_span_metrics_calls_total)"
  say "logs and pid files in $STATE_DIR; stop with '$0 down'"
}

stop_one() { # stop_one NAME
  local name="$1" pid i
  if ! pid="$(pid_of "$name")"; then
    if [[ -f "$STATE_DIR/$name.pid" ]]; then
      say "$name not running (removing stale pid file)"
      rm -f "$STATE_DIR/$name.pid"
    else
      say "$name not running"
    fi
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) did not stop within 30s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE_DIR/$name.pid"
  say "stopped $name (pid $pid)"
}

cmd_down() {
  stop_one collector   # first, so it can flush its batch to Jaeger and the file
  stop_one jaeger
  stop_one prometheus
}

cmd_status() {
  local name pid rc=0 health
  for name in collector jaeger prometheus; do
    if pid="$(pid_of "$name")"; then
      if http_ok "$(health_url "$name")"; then health="healthy"; else health="NOT healthy"; rc=1; fi
      say "$name: running (pid $pid), $health ($(health_url "$name"))"
    else
      say "$name: not running"
      rc=1
    fi
  done
  return $rc
}

cmd_clean() {
  rm -rf "$BUILD_DIR" "$COLLECTOR_BIN" "$JAEGER_BIN" "$COMPOSE_SPEC_BIN"
  say "removed bin/otelcol-alphatrace, bin/jaeger, bin/compose-spec and bin/build (bin/tools and Go caches kept)"
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  clean) cmd_clean ;;
  *) printf 'usage: %s {build|up|down|status|clean}\n' "$0" >&2; exit 2 ;;
esac
