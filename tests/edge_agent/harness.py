"""The agent under test runs in a background thread (see ``edge_agent.serving``)."""

from edge_agent.serving import BackgroundAgent as ThreadedAgent

__all__ = ["ThreadedAgent"]
