"""The cloud hub: answers escalations from edge agents over an authenticated ZeroMQ link."""

HUB_VERSION = "0.1.0"
