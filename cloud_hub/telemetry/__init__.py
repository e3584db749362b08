"""Hub telemetry: the store behind the link's sink, aggregates, Prometheus metrics, OTLP export."""
