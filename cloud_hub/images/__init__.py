"""Image and video generation on the hub: diffusers backends, asset reuse with guaranteed variation,
split and cascade policies (see docs/images-video.md)."""
