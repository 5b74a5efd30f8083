"""The supervisor: the policy (``policy``, ``policy_file``), what ``--apply`` does (``actions``),
and the record of it (``audit``: the audit log file; ``decision_spans``: ``alphatrace.supervisor.decide``
spans). The command is ``python -m meta_supervisor.supervise`` (``cli.supervise``).
"""
