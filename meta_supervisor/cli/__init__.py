"""The two commands: ``report`` (``python meta_supervisor/build_meta_report.py``) and ``supervise``
(``python -m meta_supervisor.supervise``), with the terminal's progress bar (``progress``). Options,
environment variables and exit codes live here; everything below is handed its arguments.
"""
