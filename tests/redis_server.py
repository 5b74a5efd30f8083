"""A real redis-server for tests (Debian's package, installed by ``collector/stack.sh build redis``).

This module holds no tests. ``RedisServer`` runs one on a free loopback port with its own temp dir
(no persistence: a restart loses the data, the harder case for the kill switch), optionally with a
password; ``kill()`` SIGKILLs it, ``start()`` starts it again on the same port. ``ensure_redis`` installs
the package when missing (as root via apt) and returns a reason to skip when it cannot; with ``CI=true``
a missing server raises instead, so CI fails loudly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.stack import HOST, REPO_ROOT, STACK_SH, free_ports

START_TIMEOUT_S = 30.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def redis_bin() -> Path:
    return Path(os.environ.get("ALPHATRACE_REDIS_BIN") or shutil.which("redis-server") or "/usr/bin/redis-server")


def ensure_redis() -> str | None:
    """``None`` when redis-server is installed (installing it if it can), else a reason to skip."""
    if os.access(redis_bin(), os.X_OK):
        return None
    proc = subprocess.run(["bash", str(STACK_SH), "build", "redis"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode == 0 and os.access(redis_bin(), os.X_OK):
        return None
    reason = f"redis-server is not installed and `collector/stack.sh build redis` failed: {proc.stderr.strip()[-400:]}"
    if _in_ci():
        raise RuntimeError(f"CI=true: {reason}")
    return reason


class RedisServer:
    def __init__(self, tmp_path: Path, password: str | None = None) -> None:
        self.dir = tmp_path / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self.password = password
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "redis.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    def start(self) -> None:
        args = [str(redis_bin()), "--port", str(self.port), "--bind", HOST, "--dir", str(self.dir), "--save", "", "--appendonly", "no"]
        args += ["--logfile", str(self.log), "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}): {self.log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64):  # +PONG, or -NOAUTH with a password: it answers
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on {HOST}:{self.port} within {START_TIMEOUT_S:g} s")

    def kill(self) -> None:
        """SIGKILL: the store disappears mid-flight, as on a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
