"""Configuration models for both programs.

Precedence, highest first: explicit overrides (CLI flags) → environment (``EDGE_*`` / ``HUB_*``,
nested with ``__``) → a YAML file → the embedded defaults, which run hub and agent on loopback with
no set-up. Secrets are ``SecretStr`` so they never print; key material is referenced by file path.
The caches' settings are ``shared.cache_config``, re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from shared import paths
from shared.backends import EdgeBackendName, HubBackendName, ImageBackendName
from shared.cache_config import CacheSettings as CacheSettings
from shared.cache_config import GlobalCacheSettings as GlobalCacheSettings
from shared.cache_config import cache_endpoints as cache_endpoints
from shared.taxonomy import Tier


class CostModel(BaseModel):
    """Price of one call. Token prices for APIs, GPU-seconds for self-hosted, energy for the edge."""

    usd_per_1k_prompt: float = 0.0
    usd_per_1k_completion: float = 0.0
    usd_per_gpu_second: float = 0.0
    # edge: energy estimate, so local answers are never silently free
    joules_per_token: float = 0.0
    usd_per_kwh: float = 0.15

    def estimate(self, prompt_tokens: int, completion_tokens: int, seconds: float = 0.0) -> float:
        tokens = prompt_tokens + completion_tokens
        energy_usd = tokens * self.joules_per_token / 3.6e6 * self.usd_per_kwh
        return (
            prompt_tokens / 1000 * self.usd_per_1k_prompt
            + completion_tokens / 1000 * self.usd_per_1k_completion
            + seconds * self.usd_per_gpu_second
            + energy_usd
        )


class TenantConfig(BaseModel):
    name: str
    api_key: SecretStr
    quality_target: float | None = None
    # per content domain (a shared.taxonomy.Domain value) overrides of quality_target
    domain_quality_targets: dict[str, float] = {}
    # spend cap in USD per window of budget_window_s (None: no cap); each request reserves its
    # maximum cost against it before any route runs (edge_agent.budgets)
    budget_usd: float | None = Field(default=None, ge=0.0)
    budget_window_s: float = Field(default=24 * 3600.0, gt=0.0)  # windows start at multiples of it


class AdmissionSettings(BaseModel):
    """Overload protection at the edge: how much work each route takes on before it refuses.

    Beyond these bounds a request is refused at once (429 when the local model is saturated,
    503 when the hub link is and the local model cannot take the overflow), with ``Retry-After``.
    """

    enabled: bool = True
    # local runs waiting behind those the model runs at once; None: 4 per run it can run at once
    local_queue: int | None = Field(default=None, ge=0)
    hub_in_flight: int = Field(default=64, ge=1)  # escalations on the link at once
    # image requests and running video jobs on the hub at once (the hub's own default max_jobs)
    media_in_flight: int = Field(default=16, ge=1)


def enrolment_endpoint(endpoint: str) -> str:
    """Where ``edge-agent join`` redeems an invite next to a hub link endpoint: port+3 (``ipc://``:
    an ``.enrol`` suffix). Hub and edge derive it alike, so the link endpoint is all a user types."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        raise ValueError(f"not a ZeroMQ endpoint: {endpoint!r}")
    if scheme == "ipc":
        return f"{endpoint}.enrol"
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit() or int(port) == 0:
        raise ValueError(f"cannot derive the enrolment endpoint from {endpoint!r}: it needs a fixed port")
    return f"{scheme}://{host}:{int(port) + 3}"


class ImageModelConfig(BaseModel):
    """One diffusion model of the hub (``cloud_hub.images``): which class, which weights, its price.

    ``model`` is a hub id (``stabilityai/sd-turbo``, ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``), a folder
    written by ``save_pretrained``, or ``tiny``: the production architecture built from configs with
    random weights (pictures are noise; for tests, demos and CPU-only machines).
    """

    backend: ImageBackendName = "diffusers"  # a name of shared.backends.IMAGE_BACKENDS
    model: str = "tiny"
    device: str = "cuda"  # pretrained weights only; ``tiny`` always runs on the CPU
    default_steps: int = Field(default=20, ge=1, le=1000)  # a request's steps when it names none
    # the cost model: denoising steps actually run × this (a 512² SD 2.1 step with guidance is
    # 20-30 ms on an A100 at ~$2/h); reuse shows up as steps not run
    usd_per_step: float = Field(default=0.00001, ge=0.0)


class HubImageSettings(BaseModel):
    """Image and video generation on the hub. Off by default: building even the tiny pipelines
    imports torch and diffusers (tens of seconds on a small CPU), and a hub without a GPU and real
    weights can only serve noise. ``enabled: true`` alone serves the tiny random-weight models."""

    enabled: bool = False
    image: ImageModelConfig | None = ImageModelConfig()
    # a Wan 1.3B step at 480p and 81 frames takes seconds on the same GPU
    video: ImageModelConfig | None = ImageModelConfig(backend="wan", usd_per_step=0.002)
    store_path: Path | None = None  # the asset and latent store; default <home>/assets.db
    # a calibrated ReusePolicy (``ReusePolicy.save``); None or a missing file: the uncalibrated default
    policy_path: Path | None = None
    capacity: int = Field(default=10_000, ge=1)  # assets kept, evicted by popularity
    threads: int | None = Field(default=None, ge=1)  # torch CPU threads; None: all cores but one
    max_jobs: int = Field(default=16, ge=1)  # queued or running jobs at once; more are refused
    job_ttl_s: float = Field(default=3600.0, gt=0.0)  # a finished job's result stays fetchable this long
    video_fps: int = Field(default=16, ge=1, le=120)  # of the animated PNG a video is delivered as


class EdgeImageSettings(BaseModel):
    """The edge's image and video endpoints; generation itself runs on the hub."""

    enabled: bool = True
    path: Path | None = None  # delivered and cached assets, video jobs; default <home>/images.db
    max_assets: int = Field(default=2000, ge=1)  # cached assets kept, oldest dropped first
    timeout_s: float = Field(default=300.0, gt=0.0)  # one image request, or one video fetch, at most
    # what a tenant's budget reserves per hub job: steps (the request's, else these defaults) ×
    # usd_per_step; spend stays within the cap while these are at least the hub's own
    # (HubSettings.images.{image,video}.{default_steps,usd_per_step})
    image_usd_per_step: float = Field(default=0.00001, ge=0.0)
    image_default_steps: int = Field(default=20, ge=1, le=1000)
    video_usd_per_step: float = Field(default=0.002, ge=0.0)
    video_default_steps: int = Field(default=20, ge=1, le=1000)
    # a video job keeps its admission place and budget hold until the hub says it ended, this long at most
    video_hold_s: float = Field(default=3600.0, gt=0.0)


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or ``taskset``'s
    limit), not the machine's count, which ``os.cpu_count`` reports."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS)
        return max(1, os.cpu_count() or 1)


def default_threads(cores: int | None = None) -> int:
    """llama.cpp threads for a model sharing the host: half the available cores, at least one.

    A llama.cpp asking for every core thrashes against whatever else runs there (the hub's vLLM,
    the other program, the embedder): on a loaded 2-core box a 24-token draft took 29-60 s with
    2 threads and 0.5-4 s with 1.
    """
    return max(1, (available_cores() if cores is None else cores) // 2)


class LocalModelConfig(BaseModel):
    """The edge's GGUF model. ``path`` wins; else ``name`` is looked up in the models directory."""

    # a name of shared.backends.EDGE_BACKENDS
    backend: EdgeBackendName = "llamacpp"
    # smaller than the hub's open-source tier (Qwen2.5-Coder-0.5B), so escalating can buy quality
    name: str = "smollm2-135m-instruct"
    path: Path | None = None
    n_ctx: int = 4096
    n_threads: int = Field(default_factory=default_threads, ge=1)
    cost: CostModel = CostModel(joules_per_token=0.05)


class HubModelEntry(BaseModel):
    """One model the hub can serve. Adding a model is a config change, not a code change."""

    name: str
    backend: HubBackendName  # a name of shared.backends.HUB_BACKENDS
    tier: Tier = Tier.OSS
    path: Path | None = None  # vllm: HF folder; llamacpp: GGUF file (else from the models dir)
    served_model: str | None = None  # openai_http: upstream model id
    base_url: str | None = None  # openai_http only; never taken from a request
    api_key: SecretStr | None = None
    max_model_len: int = 4096
    n_threads: int = Field(default_factory=default_threads, ge=1)  # llamacpp only
    # the price model; a replayed answer with a recorded real cost is charged that cost instead
    cost: CostModel = CostModel()
    # replay only: files or folders of recorded outcomes, read in order (the first record of a
    # prompt wins); a relative path is under the data directory (shared.paths.data_dir())
    recorded: list[Path] = []
    # replay only: the names this model has in those files, the first one a file has wins
    # (empty: [served_model or name])
    recorded_models: list[str] = []


# Recorded outcomes under the data directory that hold real answers of Mixtral-8x7B and GPT-4:
# sources with answer text and real per-call costs first, since the first record of a prompt wins;
# the MMLU file last (it kept correctness only, no answer text).
RECORDED_OUTCOMES: tuple[Path, ...] = (
    Path("routing/routerbench/arc_challenge_train.csv"),
    Path("routing/routerbench/mbpp_train.csv"),
    Path("routing/routerbench/winograde_train.csv"),
    Path("routing/routellm/routellm/evals/gsm8k/gsm8k_responses.csv"),
    Path("routing/routellm/routellm/evals/mt_bench"),
    Path("routing/routellm/routellm_mmlu_with_gold.csv"),
)


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class _YamlSettings(BaseSettings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls), file_secret_settings)


def _default_home(kind: str) -> Path:
    return Path.home() / ".edgeroute" / kind


class EdgeSettings(_YamlSettings):
    model_config = SettingsConfigDict(env_prefix="EDGE_", env_nested_delimiter="__", extra="forbid")

    home: Path = Field(default_factory=lambda: _default_home("edge"))
    host: str = "127.0.0.1"
    port: int = 8080
    # Host names (besides IP literals and localhost) the API answers to, against DNS rebinding;
    # ".example.com" admits subdomains, "*" turns the check off (edge_agent.api.origin)
    allowed_hosts: list[str] = []
    models_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "edgeroute" / "models")
    local_model: LocalModelConfig = LocalModelConfig()
    hub_url: str | None = None
    hub_public_key_file: Path | None = None
    # below this mean token probability the spine escalates (the routing policy refines this)
    confidence_threshold: float = 0.75
    # "calibrated": shared.routing's cascade judge (heads + thresholds in models/routing) decides
    escalation_policy: Literal["threshold", "calibrated"] = "threshold"
    draft_tokens: int = 24  # how much local output the confidence check looks at before deciding
    hub_timeout_s: float = 60.0
    heartbeat_s: float = 2.0
    tenants: list[TenantConfig] = []
    max_body_bytes: int = 1024 * 1024
    # refused before anything reads them (a 25,000-message body took the model ~20 s to refuse)
    max_messages: int = Field(default=2048, ge=1)
    admission: AdmissionSettings = AdmissionSettings()
    # the dearest price any hub tier may charge (the default hub's frontier tier): tenant budgets
    # reserve a request's maximum cost at it, before the hub has said which tier answers
    hub_price_ceiling: CostModel = CostModel(usd_per_1k_prompt=0.01, usd_per_1k_completion=0.03)
    # telemetry: prompts/answers leave the device only with capture on (the hub's judge needs them);
    # the spool drops its oldest undelivered events (counted) beyond this many bytes
    telemetry_capture_content: bool = False
    telemetry_spool_max_bytes: int = 64 * 1024 * 1024
    cache: CacheSettings = CacheSettings()
    images: EdgeImageSettings = EdgeImageSettings()

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"


class HubSettings(_YamlSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", env_nested_delimiter="__", extra="forbid")

    home: Path = Field(default_factory=lambda: _default_home("hub"))
    bind: str = "tcp://127.0.0.1:5555"
    models_dir: Path = Field(default_factory=paths.models_dir)  # honours EDGEROUTE_MODELS_DIR
    heartbeat_s: float = 2.0
    max_frame_bytes: int = 4 * 1024 * 1024
    models: list[HubModelEntry] = [
        HubModelEntry(
            name="qwen2.5-coder-0.5b-instruct",
            backend="vllm",
            tier=Tier.OSS,
            # Priced per token as a shared-GPU open-model service would be, not by wall time: a CPU
            # test hub takes seconds a GPU takes milliseconds for, and would look dearer than frontier.
            cost=CostModel(usd_per_1k_prompt=0.0001, usd_per_1k_completion=0.0002),
        ),
        HubModelEntry(
            name="mixtral-8x7b-instruct",
            backend="replay",
            # Mixtral-8x7B's recorded real answers stand in for the large open model a GPU hub would
            # run on vLLM; the finetuned tier is the slot between oss and frontier. The price
            # ($0.60 per 1M tokens both ways) is for the planner's estimate: a replayed answer is
            # charged its recorded real cost where the source recorded one.
            tier=Tier.FINETUNED,
            recorded=list(RECORDED_OUTCOMES),
            recorded_models=["mistralai/mixtral-8x7b-chat", "mistralai/Mixtral-8x7B-Instruct-v0.1"],
            cost=CostModel(usd_per_1k_prompt=0.0006, usd_per_1k_completion=0.0006),
        ),
        HubModelEntry(
            name="gpt-4-1106-preview",
            backend="replay",
            # GPT-4's recorded real answers as the frontier tier, priced at its API rates ($10 / $30
            # per 1M tokens) for the estimate. A live deployment replaces this entry with an
            # openai_http one (base_url, api_key) for the frontier API.
            tier=Tier.FRONTIER,
            recorded=list(RECORDED_OUTCOMES),
            cost=CostModel(usd_per_1k_prompt=0.01, usd_per_1k_completion=0.03),
        ),
    ]
    default_model: str = "qwen2.5-coder-0.5b-instruct"
    # telemetry: Prometheus scrape port on 127.0.0.1 (None: off) and an optional OTLP/HTTP traces
    # endpoint (e.g. http://collector:4318/v1/traces; needs the ``otel`` extra)
    metrics_port: int | None = None
    otlp_endpoint: str | None = None
    global_cache: GlobalCacheSettings = GlobalCacheSettings()
    # where `edge-agent join` redeems `cloud-hub invite` tokens: None is the link's port+3, "off"
    # serves no enrolment socket (edges are then enrolled with `cloud-hub enroll` only)
    enrolment_bind: str | None = None
    images: HubImageSettings = HubImageSettings()

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def enrolled_dir(self) -> Path:
        return self.home / "enrolled"


def load_settings(cls: type[SettingsT], yaml_file: Path | None = None, **overrides: Any) -> SettingsT:
    """Build settings from defaults, an optional YAML file, the environment and ``overrides``."""
    bound = type(cls.__name__, (cls,), {"model_config": {**cls.model_config, "yaml_file": yaml_file}})
    clean = {k: v for k, v in overrides.items() if v is not None}
    return bound(**clean)  # type: ignore[no-any-return]
