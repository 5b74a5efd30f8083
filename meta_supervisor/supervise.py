"""The supervisor's command: ``python -m meta_supervisor.supervise [--dry-run | --apply] [--json]``.

The seed's name for ``meta_supervisor.cli.supervise`` (options, environment variables and exit codes
are documented there and in ``docs/policy.md``).
"""

from __future__ import annotations

import sys

from meta_supervisor.cli.supervise import main

if __name__ == "__main__":
    sys.exit(main())
