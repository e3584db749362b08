"""The edge agent: OpenAI-compatible API that answers each request on the cheapest adequate path."""
