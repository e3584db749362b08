"""edgeroute cloud hub: vLLM and other backends, global cache, telemetry, evaluation."""

HUB_VERSION = "0.1.0"
