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
from cloud_hub.images.diffusers_backend import _to_u8, default_threads, latent_fingerprint
from cloud_hub.images.schedules import FlowSchedule, begin_at


class WanVideoBackend:
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
        if pipe.device.type == "cpu":
            torch.set_num_threads(threads or default_threads())
        if step_cache is not None:
            sc.apply_step_cache(pipe.transformer, step_cache)
        pipe.set_progress_bar_config(disable=True)
        self._pipe = pipe
        self._name = name if step_cache is None else f"{name}+{step_cache.label()}"
        self._default_steps = default_steps
        self._max_len = max_sequence_length
        self._schedule = FlowSchedule()
        self._latent_space = latent_fingerprint(pipe.vae, pipe.scheduler, "flow")
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

    @property
    def name(self) -> str:
        return self._name

    @property
    def latent_space(self) -> str:
        return self._latent_space

    @property
    def default_steps(self) -> int:
        return self._default_steps

    @property
    def pipeline(self) -> Any:
        return self._pipe

    def levels(self, steps: int) -> list[float]:
        self._pipe.scheduler.set_timesteps(steps, device=self._pipe.device)
        return self._schedule.levels(self._pipe.scheduler)

    def fresh(self, spec: RenderSpec) -> Rendered:
        began = time.perf_counter()
        levels = self.levels(spec.steps)
        harvested: list[Latent] = []

        def keep(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if i + 1 in spec.harvest:
                data: F32 = kwargs["latents"].detach().to("cpu", torch.float32).numpy().copy()
                harvested.append(Latent(i + 1, spec.steps, levels[i + 1], data))
            return kwargs

        with torch.inference_mode():
            out = self._pipe(
                spec.prompt,
                negative_prompt=spec.negative_prompt or None,
                height=spec.height,
                width=spec.width,
                num_frames=spec.frames,
                num_inference_steps=spec.steps,
                guidance_scale=spec.guidance_scale,
                generator=torch.Generator("cpu").manual_seed(spec.seed),
                output_type="np",
                callback_on_step_end=keep,
                callback_on_step_end_tensor_inputs=["latents"],
                max_sequence_length=self._max_len,
            )
        return Rendered(_to_u8(out.frames[0]), tuple(harvested), spec.steps, time.perf_counter() - began)

    def resume(self, spec: RenderSpec, source: Latent, start: int) -> Rendered:
        return self._loop(spec, source, start, None, None)

    def recompose(self, spec: RenderSpec, source: Latent, known: Latent, keep: F32, start: int) -> Rendered:
        return self._loop(spec, source, start, known, keep)

    def _loop(
        self, spec: RenderSpec, source: Latent, start: int, known: Latent | None, keep: F32 | None
    ) -> Rendered:
        if not 0 <= start < spec.steps:
            raise ValueError(f"start {start} outside 0..{spec.steps - 1}")
        began = time.perf_counter()
        pipe, device = self._pipe, self._pipe.device
        levels = self.levels(spec.steps)
        sched = pipe.scheduler
        begin_at(sched, start)
        gen = torch.Generator("cpu").manual_seed(spec.seed)
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
            x = torch.from_numpy(source.data).to(device, torch.float32)
            x = self._schedule.renoise(
                x, source.level, levels[start], torch.randn(x.shape, generator=gen).to(device)
            )
            pin = None if keep is None else torch.from_numpy(keep).to(device, torch.float32)
            clean = None if known is None else torch.from_numpy(known.data).to(device, torch.float32)
            pin_noise = torch.randn(x.shape, generator=gen).to(device)
            if pin is not None and clean is not None:
                x = pin * self._schedule.noised(clean, levels[start], pin_noise) + (1 - pin) * x
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
                if pin is not None and clean is not None:
                    x = pin * self._schedule.noised(clean, levels[i + 1], pin_noise) + (1 - pin) * x
                if i + 1 in spec.harvest:
                    harvested.append(
                        Latent(i + 1, spec.steps, levels[i + 1], x.to("cpu", torch.float32).numpy().copy())
                    )
            sc.reset(model)
            frames = self._decode(x)
        return Rendered(_to_u8(frames), tuple(harvested), spec.steps - start, time.perf_counter() - began)

    def _decode(self, x: torch.Tensor) -> np.ndarray:
        vae = self._pipe.vae
        z = x.to(vae.dtype)
        mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(z)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(z)
        video = vae.decode(z / inv_std + mean, return_dict=False)[0]
        out: np.ndarray = self._pipe.video_processor.postprocess_video(video, output_type="np")[0]
        return out

    def close(self) -> None:
        self._pipe = None
