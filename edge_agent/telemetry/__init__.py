"""Telemetry on the edge: event recording, metrics, durable spool and delivery to the hub."""
