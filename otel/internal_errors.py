"""How alphatrace's telemetry code treats its own failures: log them and carry on, never break the
agent run, except under pytest, where they re-raise so bugs show (as logfire does).

Environment: ``PYTEST_CURRENT_TEST`` (set by pytest; tests of the forgiving path delete it).
"""

from __future__ import annotations

import logging
import os


def raise_internal_errors() -> bool:
    return "PYTEST_CURRENT_TEST" in os.environ


def report_internal_error(logger: logging.Logger, message: str) -> None:
    """Call from an ``except`` block: logs ``message`` with the traceback, re-raises under pytest."""
    if raise_internal_errors():
        raise
    logger.exception("alphatrace telemetry: %s (the agent run continues)", message)
