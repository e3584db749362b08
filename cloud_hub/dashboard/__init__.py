"""The operator dashboard: one page and its JSON (``/api/summary``), served beside the hub."""
