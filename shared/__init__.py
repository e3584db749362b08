"""What both the edge agent and the cloud hub need: wire types, codec, taxonomy, config models.

Nothing here imports ``edge_agent`` or ``cloud_hub``; both import this package.
"""

PROTOCOL_VERSION = 1
