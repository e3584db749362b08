"""edgeroute cloud hub: vLLM and other backends, global cache, telemetry, evaluation."""
