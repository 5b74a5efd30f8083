"""Assemble: tallies + prices + kill switch + clock -> the report dict (pure functions, no I/O).

``report.build_report`` is the whole report; ``agents``, ``attention``, ``alpha`` and
``decisions`` its sections. What it returns is ``meta_report.json`` (``docs/report-schema.md``).
"""
