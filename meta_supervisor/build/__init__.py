"""Build: files -> the tallies of a whole build, read fully, incrementally or in parallel.

``full`` reads every file; ``incremental`` reads only what changed since the saved state
(``state_store``, checked by ``state_checks``); ``file_reader`` reads one file from a cursor;
``parts`` is the one seam for reading a part of a JSON-lines file (``python_part`` and
``native_reader`` its two implementations, ``native_answers`` the rulebook the native core asks),
``merge`` the rules that add a part read apart, ``parallel`` the forking. ``run_records`` is the
supervisor's reader of the same files; ``alpha_cache`` keeps the alpha section beside the state.
"""
