"""Images and video at the edge: its asset store and the gateway to the hub's diffusion models."""
