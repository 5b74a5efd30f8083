"""The supervisor as a job of the scheduler (opt-in: ``[supervisor]`` in ``agents/agents.toml``).

Every ``every_seconds`` the scheduler calls ``supervise_once``: the report is built incrementally
(``meta_supervisor.cli.report``, the same files and state as ``make report``), then the policy decides
(``meta_supervisor.cli.supervise``, ``--dry-run`` or ``--apply`` as ``mode`` says) with the scheduler's
own telemetry, so the ``alphatrace.supervisor.run`` spans land beside the agents' (in the same file or collector,
and in Jaeger), and an ``--apply`` alerts through the webhook (``docs/alerts.md``). What either command
prints goes to the log. A failure is the caller's to log: the scheduler logs it and keeps its agents
running. Environment: whatever the two commands read (``ALPHATRACE_TRACE_FILE``, ``ALPHATRACE_REPORT_DIR``,
``ALPHATRACE_POLICY_FILE``, ...).
"""

from __future__ import annotations

import contextlib
import io
import logging

from meta_supervisor.cli import report as report_cli
from meta_supervisor.cli import supervise as supervise_cli
from otel.provider import Telemetry
from services.fleet_config import SupervisorSchedule

logger = logging.getLogger("alphatrace.supervisor.scheduled")


class SupervisorJobError(RuntimeError):
    """A command of the scheduled supervisor exited non-zero (its output is in the message)."""


def supervise_once(schedule: SupervisorSchedule, telemetry: Telemetry, fleet_config: str) -> None:
    """One report build (when ``schedule.report``) and one policy pass."""
    if schedule.report:
        _run("report", lambda: report_cli.main(["--quiet"]))
    mode = "--apply" if schedule.mode == "apply" else "--dry-run"
    out = io.StringIO()
    _run("supervisor", lambda: supervise_cli.main([mode, "--fleet-config", fleet_config], telemetry=telemetry, out=out))
    for line in out.getvalue().splitlines():
        if line.strip():
            logger.info("%s", line)


def _run(what: str, command) -> None:
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = command()
    if code != 0:
        raise SupervisorJobError(f"the scheduled {what} exited {code}: {errors.getvalue().strip() or 'no message'}")
