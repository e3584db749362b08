"""Small random-weight builds of the production architectures, for tests and benchmarks.

No diffusion or CLIP weights can be installed on the CPU machines this project is developed on,
so tests and the benchmark build the real classes (CLIPTextModel, UNet2DConditionModel,
AutoencoderKL; UMT5EncoderModel, WanTransformer3DModel, AutoencoderKLWan) from configs with tiny
dimensions. Every code path, step count and tensor shape is the production one; only the
pictures are meaningless, which is why quality can only be measured with real weights.

The tokenizer is a byte-level CLIP BPE without merges: every byte is a token, so it needs no
vocabulary file and accepts any text.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from cloud_hub.images.base import lib

UnetSize = Literal["small", "large"]

# channels per UNet block: "large" costs about 2.2× "small" per step on a CPU core, which is what
# the split and cascade policies need to show; both share one VAE and text encoder
UNET_CHANNELS: dict[UnetSize, tuple[int, int]] = {"small": (8, 16), "large": (64, 128)}
TEXT_DIM = 32
MAX_TOKENS = 77


def byte_tokenizer() -> Any:
    CLIPTokenizer = lib("transformers").CLIPTokenizer
    mod = lib("transformers.convert_slow_tokenizer")
    bytes_to_unicode = mod.bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in chars:
            vocab[ch + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def clip_text_encoder(vocab_size: int) -> Any:
    mod = lib("transformers")
    CLIPTextConfig, CLIPTextModel = mod.CLIPTextConfig, mod.CLIPTextModel

    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        max_position_embeddings=MAX_TOKENS,
    )
    return CLIPTextModel(config)


def unet(size: UnetSize) -> Any:
    UNet2DConditionModel = lib("diffusers").UNet2DConditionModel

    channels = UNET_CHANNELS[size]
    return UNet2DConditionModel(
        block_out_channels=channels,
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        norm_num_groups=channels[0] // 2,
        attention_head_dim=2,
    )


def vae() -> Any:
    AutoencoderKL = lib("diffusers").AutoencoderKL

    # four blocks: the production 8× spatial factor with minimal channels
    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )


def scheduler(kind: str) -> Any:
    """SD 2.x's schedule and its v-prediction parametrisation.

    A random-weight denoiser outputs nearly zero. Under v-prediction that is the exact posterior
    mean for unit-Gaussian latents, so latents keep the production scale (std ≈ 1) at every step;
    under ε-prediction the same output leaves the noise in and the "clean" latent ends near
    std 11, far outside anything a trained model produces, and re-noising it then barely moves
    the picture. Variation distances measured on the tiny model are only meaningful with the
    former.
    """
    mod = lib("diffusers")
    DDIMScheduler, EulerDiscreteScheduler = mod.DDIMScheduler, mod.EulerDiscreteScheduler

    common: dict[str, Any] = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
    }
    if kind == "ddim":
        return DDIMScheduler(
            clip_sample=False, set_alpha_to_one=False, prediction_type="v_prediction", **common
        )
    if kind == "euler":
        return EulerDiscreteScheduler(prediction_type="v_prediction", **common)
    raise ValueError(f"unknown image scheduler {kind!r}: ddim or euler")


def sd_components(
    *, unet_size: UnetSize = "small", scheduler_kind: str = "ddim", weights_seed: int = 0
) -> dict[str, Any]:
    """The ``StableDiffusionPipeline`` components; ``weights_seed`` fixes the random weights."""
    torch.manual_seed(weights_seed)
    tokenizer = byte_tokenizer()
    text_encoder = clip_text_encoder(len(tokenizer))
    auto = vae()
    # the UNet is drawn last so that a small and a large pipeline of one seed share text encoder
    # and VAE weights exactly: one latent space
    denoiser = unet(unet_size)
    for module in (text_encoder, auto, denoiser):
        module.eval()
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": auto,
        "unet": denoiser,
        "scheduler": scheduler(scheduler_kind),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def wan_components(*, weights_seed: int = 0) -> dict[str, Any]:
    """``WanPipeline`` components: UMT5 text encoder, Wan DiT, Wan 3D VAE, flow-matching Euler."""
    mod = lib("diffusers")
    AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel = (
        mod.AutoencoderKLWan,
        mod.FlowMatchEulerDiscreteScheduler,
        mod.WanTransformer3DModel,
    )
    mod = lib("transformers")
    UMT5Config, UMT5EncoderModel = mod.UMT5Config, mod.UMT5EncoderModel

    torch.manual_seed(weights_seed)
    tokenizer = byte_tokenizer()
    text_encoder = UMT5EncoderModel(
        UMT5Config(d_model=TEXT_DIM, num_layers=2, num_heads=2, d_kv=16, d_ff=37, vocab_size=len(tokenizer))
    )
    auto = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    for module in (text_encoder, auto, transformer):
        module.eval()
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": auto,
        "transformer": transformer,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
    }
