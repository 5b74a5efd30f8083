"""OpenTelemetry set-up for alphatrace: provider, exporters, run context and the names it writes."""
