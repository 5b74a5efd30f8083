"""Reading: bytes on disk -> typed OTLP requests.

Which files (``inputs``), what shape each has and how its records are cut out of the bytes
(``shapes``: JSON lines, framed JSON/protobuf, zstd), and the typed request they decode to
(``otlp_schema``, ``otlp_proto``). Nothing here counts anything: records go to a sink (the
aggregator of ``tally``). Imports nothing else of ``meta_supervisor`` but its leaves.
"""
