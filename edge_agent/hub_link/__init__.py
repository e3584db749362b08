"""The edge's client end of the edge ↔ hub link (CURVE-secured ZeroMQ DEALER)."""

from edge_agent.hub_link.errors import HubError, HubLinkError, HubRefused, HubTimeout, HubUnavailable
from edge_agent.hub_link.link import HubLink

__all__ = ["HubError", "HubLink", "HubLinkError", "HubRefused", "HubTimeout", "HubUnavailable"]
