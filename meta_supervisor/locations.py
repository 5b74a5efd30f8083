"""Where the meta-supervisor's files are by default: the project root and the folders under it.

The one rule for these paths (each module that needs a default asks here, so a move of a module
never moves a default):

* ``meta_supervisor/reports/``: the report files (``meta_report.json``, ``.md``, ``.html``);
* ``meta_supervisor/state/``: the files people and the supervisor edit (``killed_agents.json``,
  ``agent_status.json``, ``supervisor_audit.jsonl``);
* ``meta_supervisor/cache/``: the report's own caches (its incremental state and the alpha-quality
  cache), which any build may delete and rebuild; before this folder existed they were kept in
  ``state/`` (``OLD_CACHE_DIR``), and a build using the default folder removes what is left there
  (``build.state_store.remove_old_location``).

Reads no environment variables (the commands read ``ALPHATRACE_REPORT_DIR``,
``ALPHATRACE_REPORT_STATE_DIR`` and the others, and fall back to these).
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = PROJECT_ROOT / "meta_supervisor"
DEFAULT_TRACE_FILE = PROJECT_ROOT / "telemetry" / "traces.jsonl"
DEFAULT_REPORT_DIR = PACKAGE_DIR / "reports"
STATE_DIR = PACKAGE_DIR / "state"
DEFAULT_CACHE_DIR = PACKAGE_DIR / "cache"
OLD_CACHE_DIR = STATE_DIR  # where the report's caches were kept before DEFAULT_CACHE_DIR
DEFAULT_POLICY_FILE = PACKAGE_DIR / "policy.yaml"
DEFAULT_AUDIT_FILE = STATE_DIR / "supervisor_audit.jsonl"
