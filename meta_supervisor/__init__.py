"""The meta-supervisor: reads the agents' traces and writes the fleet report (json, md, html).

Entry point: ``python meta_supervisor/build_meta_report.py`` (or ``python -m
meta_supervisor.build_meta_report``); see ``meta_supervisor.cli.report``.
"""
