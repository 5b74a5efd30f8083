"""Render: the report dict -> ``meta_report.json``, ``.md`` and ``.html`` (``outputs`` writes them).

``markdown`` (kept under GitHub's comment limit by ``md_budget``), ``html`` (inline SVG from
``svg_charts``), ``numbers`` (the one way numbers are written), ``paths`` (paths as the pages show
them) and ``decisions`` (the supervisor's decisions as tables).
"""
