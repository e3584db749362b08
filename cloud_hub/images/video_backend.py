"""Wan-shaped video backend on diffusers: UMT5 text encoder, WanTransformer3DModel (a DiT),
AutoencoderKLWan (a causal 3D VAE: 4× in time, 8× in space), flow-matching Euler.

Meant for ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` (480p, 81 frames, 50 steps on one GPU) loaded
with ``WanVideoBackend.from_pretrained(model_id_or_path, device="cuda", dtype=torch.bfloat16)``;
the tests and the benchmark build the same classes with tiny dimensions and random weights.

Video latents are B×16×T×H×W with T = (frames - 1) / 4 + 1 latent frames, the first of which
encodes the first frame alone. That is what segment reuse builds on: ``recompose`` with a mask
over the time axis pins the first latent frames (the keyframe and the opening motion) of a
cached video and regenerates the rest for the new prompt.

Being a transformer, the Wan denoiser takes diffusers' step caches (``step_cache``):
FirstBlockCache or TaylorSeer, applied in our own loop through ``cache_context`` as in the
pipeline.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from cloud_hub.images import step_cache as sc
from cloud_hub.images import tiny
from cloud_hub.images.base import F32, Latent, Rendered, RenderSpec, lib
from cloud_hub.images.diffusers_common import DiffusersBackend, latent_of, to_u8
from cloud_hub.images.schedules import FlowSchedule


class WanVideoBackend(DiffusersBackend):
    def __init__(
        self,
        pipe: Any,
        *,
        name: str,
        default_steps: int = 30,
        max_sequence_length: int = 512,
        threads: int | None = None,
        step_cache: sc.StepCacheConfig | None = None,
    ) -> None:
        super().__init__(
            pipe,
            name=name if step_cache is None else f"{name}+{step_cache.label()}",
            kind="flow",
            schedule=FlowSchedule(),
            denoiser=pipe.transformer,
            default_steps=default_steps,
            threads=threads,
            step_cache=step_cache,
        )
        self._max_len = max_sequence_length
        self.step_cache = step_cache

    @classmethod
    def tiny(
        cls,
        *,
        weights_seed: int = 0,
        default_steps: int = 20,
        threads: int | None = None,
        step_cache: sc.StepCacheConfig | None = None,
    ) -> WanVideoBackend:
        WanPipeline = lib("diffusers").WanPipeline

        pipe = WanPipeline(**tiny.wan_components(weights_seed=weights_seed))
        return cls(
            pipe,
            name="tiny-wan",
            default_steps=default_steps,
            max_sequence_length=tiny.MAX_TOKENS,
            threads=threads,
            step_cache=step_cache,
        )

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        device: str = "cuda",
        dtype: torch.dtype = torch.bfloat16,
        default_steps: int = 50,
        step_cache: sc.StepCacheConfig | None = None,
    ) -> WanVideoBackend:
        mod = lib("diffusers")
        AutoencoderKLWan, WanPipeline = mod.AutoencoderKLWan, mod.WanPipeline

        # Wan's VAE stays in float32, as its model card asks
        vae = AutoencoderKLWan.from_pretrained(model, subfolder="vae", dtype=torch.float32)
        pipe = WanPipeline.from_pretrained(model, vae=vae, dtype=dtype).to(device)
        return cls(pipe, name=model, default_steps=default_steps, step_cache=step_cache)

    def fresh(self, spec: RenderSpec) -> Rendered:
        began = time.perf_counter()
        levels = self.levels(spec.steps)
        extra = {"num_frames": spec.frames, "output_type": "np", "max_sequence_length": self._max_len}
        out, harvested = self._run_pipeline(spec, levels, 0, **extra)
        return Rendered(to_u8(out.frames[0]), tuple(harvested), spec.steps, time.perf_counter() - began)

    def _loop(
        self, spec: RenderSpec, source: Latent, start: int, known: Latent | None, keep: F32 | None
    ) -> Rendered:
        began = time.perf_counter()
        pipe, device = self._pipe, self._pipe.device
        levels, gen = self._begin(spec, start)
        sched = pipe.scheduler
        model = pipe.transformer
        dtype = model.dtype
        cfg = spec.guidance_scale > 1.0
        with torch.inference_mode():
            cond, uncond = pipe.encode_prompt(
                spec.prompt,
                spec.negative_prompt or None,
                cfg,
                1,
                max_sequence_length=self._max_len,
                device=device,
            )
            x, pin = self._start_latent(source, levels[start], gen, known, keep)
            harvested: list[Latent] = []
            for i in range(start, spec.steps):
                t = sched.timesteps[i]
                ts = t.expand(x.shape[0])
                with sc.denoiser_call(model, "cond", i, levels[i], spec.steps):
                    v = model(
                        hidden_states=x.to(dtype), timestep=ts, encoder_hidden_states=cond, return_dict=False
                    )[0]
                if cfg:
                    with sc.denoiser_call(model, "uncond", i, levels[i], spec.steps):
                        v_u = model(
                            hidden_states=x.to(dtype),
                            timestep=ts,
                            encoder_hidden_states=uncond,
                            return_dict=False,
                        )[0]
                    v = v_u + spec.guidance_scale * (v - v_u)
                x = sched.step(v, t, x, return_dict=False)[0]
                x = pin(x, levels[i + 1])
                if i + 1 in spec.harvest:
                    harvested.append(latent_of(x, i + 1, spec.steps, levels[i + 1]))
            sc.reset(model)
            frames = self._decode(x)
        return Rendered(to_u8(frames), tuple(harvested), spec.steps - start, time.perf_counter() - began)

    def _decode(self, x: torch.Tensor) -> np.ndarray:
        vae = self._pipe.vae
        z = x.to(vae.dtype)
        mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(z)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(z)
        video = vae.decode(z / inv_std + mean, return_dict=False)[0]
        out: np.ndarray = self._pipe.video_processor.postprocess_video(video, output_type="np")[0]
        return out
