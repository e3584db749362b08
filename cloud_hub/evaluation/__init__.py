"""The evaluation loop: scoring sampled traffic, weakness reports, exports, canary recalibration."""
