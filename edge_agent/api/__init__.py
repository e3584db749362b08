"""HTTP handlers of the OpenAI-compatible API."""
