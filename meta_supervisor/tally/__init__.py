"""Tally: typed spans -> mergeable per-agent state.

``span_aggregator.SpanAggregator`` is the hot loop: deduplication (``fingerprints``), what each span is
(``genai_spans``), per-agent tallies (``aggregates``, ``tool_tallies``, ``agent_counts``), the
consistency check of run totals (``consistency``, bounded by ``open_runs``), and alpha signals
(``alpha_events``, kept in ``signal_store``). Every tally merges exactly, so a build may read its
inputs in parts, in other processes or in the native core. Imports ``reading`` (the typed spans),
never ``build`` and above.
"""
