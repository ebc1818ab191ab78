"""The table of bases and motion-module families: its entries agree with their configs, and a second base
registered through the public functions runs the whole path (build, detect, train, export, reload)."""
from __future__ import annotations

import pytest
import torch

from sma.errors import SMAInputError
from sma.lora import adapter_names, apply_motion_lora, enable_lora, export_motion_lora, load_motion_lora
from sma.lora import save_motion_lora
from sma.models.build import motion_module_state_dict, tiny_motion_unet
from sma.models.config import find_base, load_config, motion_adapter_config, unet_config
from sma.models.detect import detect_motion_module
from sma.models.families import (
    BaseSpec,
    Detection,
    FamilySpec,
    bases,
    families,
    register_base,
    register_family,
)
from sma.models.norms import FrameGroupNorm
from sma.preview import latents_to_rgb
from sma.training import TrainConfig, Trainer, TrainingClip

TOY_UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 2, "block_out_channels": [16, 32],
    "center_input_sample": False, "cross_attention_dim": 24, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 6, "layers_per_block": 1,
    "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 8, "out_channels": 6, "sample_size": 8,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}
TOY_MOTION = {
    "_class_name": "MotionAdapter", "block_out_channels": [16, 32], "motion_layers_per_block": 1,
    "motion_transformer_layers_per_block": 1, "motion_mid_block_layers_per_block": 1,
    "motion_transformer_layers_per_mid_block": 1, "motion_num_attention_heads": 2, "motion_norm_num_groups": 8,
    "motion_max_seq_length": 16, "use_motion_mid_block": False, "conv_in_channels": None,
}
TOY_FACTORS = ((0.5, 0.0, 0.0), (0.0, 0.5, 0.0), (0.0, 0.0, 0.5), (0.2, 0.2, 0.2), (-0.2, 0.1, 0.0), (0.0, -0.1, 0.3))


def unregister_base(name: str) -> None:
    """Remove a base registered for a test, and every family made for it, from the pack's tables."""
    from sma.models import families as table

    table._BASES.pop(name, None)
    for family in [f for f in table._FAMILIES.values() if f.base == name]:
        del table._FAMILIES[family.name]


@pytest.fixture
def toy_base():
    """A made-up base: 2 down blocks, 1 motion module per block, 6 latent channels, 24-wide prompts,
    4 pixels per latent; one family with 16 positions and GroupNorms across frames."""
    base = register_base(BaseSpec(
        name="Toy", unet={"full": TOY_UNET, "tiny": TOY_UNET}, tiny_motion=TOY_MOTION, vae=None, text_encoder=None,
        noise_schedule="scheduler_animatediff", context_dim=24, latent_channels=6, latent_scaling=0.5,
        pixels_per_latent=4, latent_rgb_factors=TOY_FACTORS, down_blocks=2, motion_layers_per_block=1))
    family = register_family(FamilySpec("toy-v1", "Toy", TOY_MOTION, pe_length=16, group_norms="across_frames",
                                        detect=Detection(mid_block=False)))
    yield base, family
    unregister_base("Toy")


def test_base_specs_agree_with_their_configs():
    from transformers import CLIPTextConfig

    for base in bases():
        for size in base.unet:
            config = unet_config(size, base.name)
            assert config["in_channels"] == config["out_channels"] == base.latent_channels
            assert len(config["block_out_channels"]) == base.down_blocks
            assert config["layers_per_block"] == base.motion_layers_per_block
        assert unet_config("full", base.name)["cross_attention_dim"] == base.context_dim
        assert find_base(base.context_dim, unet_config("full", base.name)["block_out_channels"][0]) is base
        vae = load_config(base.vae)
        assert (vae["latent_channels"], vae["scaling_factor"]) == (base.latent_channels, base.latent_scaling)
        assert 2 ** (len(vae["block_out_channels"]) - 1) == base.pixels_per_latent
        assert CLIPTextConfig(**load_config(base.text_encoder)).hidden_size == base.context_dim
    assert find_base(1024, 320) is None and find_base(768, 640) is None  # SD2.x width, other channels


def test_family_specs_agree_with_their_configs_and_detection():
    for family in families():
        config = motion_adapter_config(family.name)
        base_channels = unet_config("full", family.base)["block_out_channels"]
        assert config["block_out_channels"] == base_channels
        if family.pe_length is not None:
            assert config["motion_max_seq_length"] == family.pe_length
        if family.detect.mid_block is not None:
            assert config["use_motion_mid_block"] == family.detect.mid_block
        info = detect_motion_module(motion_module_state_dict(family.name, "tiny", torch.float16))
        assert (info.family, info.base, info.pe_length) == (family.name, family.base, family.pe_length)
    assert [f.name for f in families() if f.group_norms == "across_frames"] == ["v1"]


def test_register_refuses_inconsistent_entries():
    toy = BaseSpec(name="Odd", unet={"full": TOY_UNET}, tiny_motion=None, vae=None, text_encoder=None,
                   noise_schedule="scheduler_animatediff", context_dim=24, latent_channels=6, latent_scaling=1.0,
                   pixels_per_latent=4, latent_rgb_factors=TOY_FACTORS[:4], down_blocks=2, motion_layers_per_block=1)
    with pytest.raises(SMAInputError, match="4 latent->RGB rows for 6 latent channels"):
        register_base(toy)
    with pytest.raises(SMAInputError, match="register its base 'Odd' first"):
        register_family(FamilySpec("odd-v1", "Odd", TOY_MOTION, pe_length=16))
    with pytest.raises(SMAInputError, match="already registered"):
        register_family(FamilySpec("v3", "SD1.5", "motion_adapter_v3", pe_length=32))


def _toy_clip(frames: int = 8, size: int = 8) -> TrainingClip:
    """Latents ``[F, 6, size, size]``: a bright 3x3 square moving one latent pixel per frame."""
    z = torch.full((frames, 6, size, size), -0.5)
    for f in range(frames):
        z[f, :, 2:5, 1:4] = 1.0
        z[f] = torch.roll(z[f], shifts=f, dims=-1)
    return TrainingClip(z, torch.zeros(1, 77, 24), "toy")


def test_second_base_runs_the_whole_path(toy_base, tmp_path):
    """Only table entries: build from a generated file, train with the pack's Trainer, export, reload."""
    base, family = toy_base
    motion = motion_module_state_dict("toy-v1", "tiny", torch.float32, seed=1)
    assert max(int(k.split(".")[1]) for k in motion if k.startswith("down_blocks.")) == 1
    assert detect_motion_module(motion).family == "toy-v1"
    assert find_base(24, 16) is base
    unet = tiny_motion_unet("toy-v1", seed=0)
    assert (unet.motion_info.family, unet.motion_info.base, unet.motion_info.pe_length) == ("toy-v1", "Toy", 16)
    norms = [m for m in unet.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(isinstance(m, FrameGroupNorm) and m.mode == "across_frames" for m in norms)

    clip = _toy_clip()
    result = Trainer(unet, [clip], config=TrainConfig.from_flat(steps=3, rank=4, gradient_checkpointing=False,
                                                      preview_every=1)).run()
    assert result.step == 3 and all(torch.isfinite(torch.tensor(list(l.values()))).all() for l in result.losses)
    meta = result.metadata
    assert (meta["base"], meta["family"], meta["frames"], meta["width"], meta["height"]) == ("Toy", "toy-v1", 8, 32, 32)
    assert result.last_preview.shape == (8, 3, 8, 8)
    assert latents_to_rgb(clip.latents, base="Toy").shape == (8, 3, 8, 8)

    path = save_motion_lora(tmp_path / "toy.safetensors", result.lora_state, meta)
    loaded, read_meta = load_motion_lora(path)
    assert read_meta["base"] == "Toy"
    assert loaded.keys() == result.lora_state.keys() and all(torch.equal(loaded[k], result.lora_state[k]) for k in loaded)
    assert sum(v.abs().sum().item() for k, v in loaded.items() if "up" in k) > 0  # the LoRA learned something
    fresh = tiny_motion_unet("toy-v1", seed=0)
    assert apply_motion_lora(fresh, loaded) == []
    exported = export_motion_lora(fresh)
    assert all(torch.equal(exported[k], loaded[k]) for k in loaded)

    if "spatial" in adapter_names(unet):
        enable_lora(unet, "spatial", False)  # the trained model, with its motion LoRA only
    sample = torch.randn(1, 6, 8, 8, 8, generator=torch.Generator().manual_seed(0))  # [B, C, F, H, W]
    text = torch.zeros(8, 77, 24)
    with torch.no_grad():
        out_trained = unet(sample, torch.tensor([500]), text).sample
        out_fresh = fresh(sample, torch.tensor([500]), text).sample
        enable_lora(fresh, "motion", False)
        out_plain = fresh(sample, torch.tensor([500]), text).sample
    gap_lora = (out_trained - out_fresh).abs().max().item()
    gap_plain = (out_trained - out_plain).abs().max().item()
    assert gap_lora < gap_plain / 10, (gap_lora, gap_plain)

    unregister_base("Toy")
    with pytest.raises(SMAInputError, match="highest down_blocks index is 1"):
        detect_motion_module(motion)
