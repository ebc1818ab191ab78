"""sma.models: key mapping, detection, files, building UNetMotionModels, ADE-matching GroupNorms.

Independent references used here: diffusers' own AnimateDiff converter and ``MotionAdapter`` (key
layout), a UNet diffusers->LDM key map written below from the LDM layout (checkpoint conversion), a
plain-torch re-implementation of the original temporal module (motion-module semantics) and hand-computed
group statistics (per-frame / across-frame norms). ADE-side equality is checked by the LoRA host tests.
"""

from __future__ import annotations

import math
import os
import re
import socket

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

from sma.errors import SMAInputError
from sma.models.build import (
    build_motion_unet,
    make_noise_scheduler,
    motion_module_from_model,
    motion_module_state_dict,
    tiny_motion_unet,
)
from sma.models.config import SD15_FAMILIES, load_config, motion_adapter_config, unet_config
from sma.models.detect import detect_motion_module
from sma.models.files import load_motion_module, load_state_dict_file
from sma.models.keys import (
    motion_key_to_diffusers,
    motion_key_to_original,
    motion_state_dict_to_diffusers,
    motion_state_dict_to_original,
    strip_wrapper_prefix,
)
from sma.models.layout import original_motion_layout
from sma.models.norms import FrameGroupNorm, use_ade_group_norms
from sma.models.sd15 import load_sd15_text_encoder, load_sd15_vae

os.environ["HF_HUB_OFFLINE"] = "1"
FAMILY_FACTS = {  # family: (pe length in the file, mid block) -- docs/model-loading.md / ADE
    "v1": (24, False), "v2": (32, True), "v3": (32, False), "AnimateLCM": (None, True),
}


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection during the test fails it."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _meta_layout(channels, mid: bool, pe_length: int | None) -> dict[str, torch.Tensor]:
    """Shape-only (meta) tensors of an original-naming file: what detection reads, without memory."""
    return {k: torch.empty(s, device="meta") for k, s in original_motion_layout(channels, 2, mid, pe_length).items()}


# --- diffusers UNet key -> LDM key, written from the LDM UNet layout (independent of diffusers' table) ---
_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def ldm_unet_key(key: str, config: dict) -> str:
    layers = config["layers_per_block"]
    if (m := re.match(r"^(.*)\.(weight|bias)$", key)) and m.group(1) in _TOP:
        return f"{_TOP[m.group(1)]}.{m.group(2)}"
    if m := re.match(r"^down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(.*)$", key):
        i, j = int(m.group(1)), int(m.group(2))
        return f"input_blocks.{(layers + 1) * i + j + 1}.0.{_RESNET[m.group(3)]}.{m.group(4)}"
    if m := re.match(r"^down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$", key):
        i, j = int(m.group(1)), int(m.group(2))
        return f"input_blocks.{(layers + 1) * i + j + 1}.1.{m.group(3)}"
    if m := re.match(r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$", key):
        return f"input_blocks.{(layers + 1) * (int(m.group(1)) + 1)}.0.op.{m.group(2)}"
    if m := re.match(r"^mid_block\.resnets\.(\d+)\.(\w+)\.(.*)$", key):
        return f"middle_block.{2 * int(m.group(1))}.{_RESNET[m.group(2)]}.{m.group(3)}"
    if m := re.match(r"^mid_block\.attentions\.0\.(.*)$", key):
        return f"middle_block.1.{m.group(1)}"
    if m := re.match(r"^up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(.*)$", key):
        i, j = int(m.group(1)), int(m.group(2))
        return f"output_blocks.{(layers + 1) * i + j}.0.{_RESNET[m.group(3)]}.{m.group(4)}"
    if m := re.match(r"^up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$", key):
        i, j = int(m.group(1)), int(m.group(2))
        return f"output_blocks.{(layers + 1) * i + j}.1.{m.group(3)}"
    if m := re.match(r"^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$", key):
        i = int(m.group(1))
        slot = 2 if "CrossAttn" in config["up_block_types"][i] else 1
        return f"output_blocks.{(layers + 1) * i + layers}.{slot}.conv.{m.group(2)}"
    raise KeyError(key)


def ldm_unet_state_dict(size: str, dtype: torch.dtype, fill: str = "randn") -> tuple[dict, dict]:
    """(LDM-named UNet state dict with ``model.diffusion_model.``, diffusers-named view of the same tensors)."""
    config = unet_config(size)
    with init_empty_weights():
        meta = UNet2DConditionModel.from_config(config)
    generator = torch.Generator().manual_seed(7)
    diffusers_sd = {}
    for key, value in meta.state_dict().items():
        if fill == "empty":  # structure only: values are never read
            diffusers_sd[key] = torch.empty(value.shape, dtype=dtype)
        else:
            diffusers_sd[key] = torch.randn(value.shape, generator=generator).to(dtype)
    ldm = {"model.diffusion_model." + ldm_unet_key(k, config): v for k, v in diffusers_sd.items()}
    return ldm, diffusers_sd


# ------------------------------------------------------------------------------------------- keys


def test_key_mapping_examples_and_inverse():
    original = ("down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0"
                ".attention_blocks.1.to_out.0.bias")
    diffusers = "down_blocks.1.motion_modules.0.transformer_blocks.0.attn2.to_out.0.bias"
    assert motion_key_to_diffusers(original) == diffusers
    pairs = {
        "mid_block.motion_modules.0.temporal_transformer.norm.weight": "mid_block.motion_modules.0.norm.weight",
        "up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.norms.0.bias":
            "up_blocks.3.motion_modules.2.transformer_blocks.0.norm1.bias",
        "up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.ff_norm.weight":
            "up_blocks.3.motion_modules.2.transformer_blocks.0.norm3.weight",
        "down_blocks.0.motion_modules.1.temporal_transformer.transformer_blocks.0.ff.net.0.proj.weight":
            "down_blocks.0.motion_modules.1.transformer_blocks.0.ff.net.0.proj.weight",
        # module paths (what LoRA code maps)
        "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q":
            "down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q",
        "down_blocks.0.motion_modules.0.temporal_transformer.proj_in": "down_blocks.0.motion_modules.0.proj_in",
    }
    for orig, diff in pairs.items():
        assert motion_key_to_diffusers(orig) == diff
        assert motion_key_to_original(diff) == orig
    pe0 = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
    pe1 = pe0.replace("attention_blocks.0", "attention_blocks.1")
    pe = "down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe"
    assert motion_key_to_diffusers(pe0) == motion_key_to_diffusers(pe1) == pe
    assert motion_key_to_original("down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe") == pe0
    with pytest.raises(SMAInputError, match="original naming"):
        motion_key_to_diffusers("down_blocks.0.resnets.0.conv1.weight")
    with pytest.raises(SMAInputError, match="diffusers naming"):
        motion_key_to_original(original)


@pytest.mark.parametrize("family", ["v2", "v3", "AnimateLCM"])
def test_layout_matches_diffusers_converter_and_motion_adapter(family):
    """Generated full-size layout == what diffusers' converter + MotionAdapter expect (an independent mapping)."""
    config = motion_adapter_config(family)
    pe_length, mid = FAMILY_FACTS[family]
    layout = _meta_layout(config["block_out_channels"], mid, pe_length)
    with init_empty_weights():
        adapter = MotionAdapter.from_config(config)
    expected = {k: v.shape for k, v in adapter.state_dict().items() if not k.endswith("pos_embed.pe")}
    converted = convert_animatediff_checkpoint_to_diffusers(layout)  # drops pos_encoder
    assert {k: v.shape for k, v in converted.items()} == expected
    mine = motion_state_dict_to_diffusers(layout)
    assert {k: mine[k] for k in converted} == converted  # same key -> same tensor object
    pe_keys = {k for k in mine if k.endswith("pos_embed.pe")}
    adapter_pe = {k: v.shape for k, v in adapter.state_dict().items() if k.endswith("pos_embed.pe")}
    if pe_length is None:
        assert not pe_keys
    else:
        assert {k: mine[k].shape for k in pe_keys} == adapter_pe
        assert len(layout) == len(mine) + len(pe_keys)  # two original encodings per diffusers one
    back = motion_state_dict_to_original(mine, with_pe=pe_length is not None)
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in layout.items()}


def test_state_dict_renames_refuse_unequal_encodings():
    state = motion_module_state_dict("v3", "tiny", torch.float32)
    key = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    state[key] = state[key] + 1.0
    with pytest.raises(SMAInputError, match="positional encodings .* differ"):
        motion_state_dict_to_diffusers(state)


def test_strip_wrapper_prefix():
    state = {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": torch.ones(2)}
    wrapped = {"module." + k: v for k, v in state.items()}
    assert strip_wrapper_prefix(wrapped) == state
    assert strip_wrapper_prefix({"module._orig_mod." + k: v for k, v in state.items()}) == state
    for prefix in ("unet.", "model.diffusion_model.", "motion_module."):
        with pytest.raises(SMAInputError, match=re.escape(repr(prefix))):
            strip_wrapper_prefix({prefix + k: v for k, v in state.items()})


# -------------------------------------------------------------------------------------- detection


@pytest.mark.parametrize("family", SD15_FAMILIES)
def test_detect_every_sd15_family_full_size(family):
    pe_length, mid = FAMILY_FACTS[family]
    info = detect_motion_module(_meta_layout((320, 640, 1280, 1280), mid, pe_length))
    assert (info.family, info.base, info.pe_length, info.has_mid_block) == (family, "SD1.5", pe_length, mid)
    assert info.group_norms_across_frames == (family == "v1")


def test_detect_reads_pe_length_and_generated_files_match_facts():
    """Detection uses the tensors' length: a v1-style file with 16-frame encodings is v1 with L=16."""
    assert detect_motion_module(_meta_layout((320, 640, 1280, 1280), False, 16)).pe_length == 16
    for family in SD15_FAMILIES:
        state = motion_module_state_dict(family, "tiny", torch.float16)
        info = detect_motion_module(state)
        assert (info.family, info.pe_length, info.has_mid_block) == (family, *FAMILY_FACTS[family])


def test_detect_sdxl_and_hotshot_and_refuse_loading_them():
    sdxl = _meta_layout((320, 640, 1280), False, 32)
    assert detect_motion_module(sdxl).family == "SDXL"
    hotshot = {k.replace(".motion_modules.", ".temporal_attentions.").replace(".temporal_transformer", "")
               .replace("pos_encoder.pe", "pos_encoder.positional_encoding"): v for k, v in sdxl.items()}
    info = detect_motion_module(hotshot)
    assert (info.family, info.base) == ("HotshotXL", "SDXL")
    for state in (sdxl, hotshot):
        with pytest.raises(SMAInputError, match="SDXL motion modules are not supported yet"):
            load_motion_module(state)


def test_detect_refuses_other_files_precisely():
    lora = {"down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0"
            ".processor.to_q_lora.down.weight": torch.zeros(4, 320)}
    with pytest.raises(SMAInputError, match="looks like a LoRA file"):
        detect_motion_module(lora)
    checkpoint = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1),
                  "first_stage_model.encoder.conv_in.weight": torch.zeros(1)}
    with pytest.raises(SMAInputError, match="full Stable Diffusion checkpoint"):
        detect_motion_module(checkpoint)
    with pytest.raises(SMAInputError, match="diffusers UNet"):
        detect_motion_module({"down_blocks.0.resnets.0.conv1.weight": torch.zeros(1)})
    diffusers_named = motion_state_dict_to_diffusers(motion_module_state_dict("v3", "tiny"))
    with pytest.raises(SMAInputError, match="diffusers MotionAdapter naming"):
        detect_motion_module(diffusers_named)
    with pytest.raises(SMAInputError, match="down_blocks index is 1"):
        detect_motion_module({k: v for k, v in _meta_layout((320, 640), False, 32).items() if k.startswith("down")})


# ------------------------------------------------------------------------------------------ files


class NotATensor:
    pass


def test_files_round_trip_and_containers(tmp_path):
    state = motion_module_state_dict("v2", "tiny", torch.float16, seed=3)
    safetensors.torch.save_file(state, str(tmp_path / "mm.safetensors"))
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "global_step": 5}, tmp_path / "mm.ckpt")
    torch.save(state, tmp_path / "mm.pth")
    for name in ("mm.safetensors", "mm.ckpt", "mm.pth"):
        loaded, info = load_motion_module(tmp_path / name)
        assert info.family == "v2"
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    loaded, _ = load_motion_module(tmp_path / "mm.ckpt", dtype=torch.float32)
    assert all(v.dtype == torch.float32 for v in loaded.values())


def test_files_errors(tmp_path):
    state = motion_module_state_dict("v3", "tiny", torch.float16)
    good = tmp_path / "mm.safetensors"
    safetensors.torch.save_file(state, str(good))
    data = good.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    torch.save(state, tmp_path / "mm.ckpt")
    pickled = (tmp_path / "mm.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(pickled[: len(pickled) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"weights": state, "obj": NotATensor()}, tmp_path / "objects.ckpt")
    (tmp_path / "mm.gguf").write_bytes(b"GGUF")
    cases = {
        "missing.safetensors": "file not found",
        "cut.safetensors": "truncated or corrupt: cut.safetensors .*re-download",
        "cut.ckpt": "truncated or corrupt: cut.ckpt",
        "empty.pt": "truncated or corrupt: empty.pt",
        "objects.ckpt": "other than tensors, which are refused",
        "mm.gguf": "unknown file type '.gguf'",
    }
    for name, message in cases.items():
        with pytest.raises(SMAInputError, match=message):
            load_state_dict_file(tmp_path / name)
    prefixed = {"unet." + k: v for k, v in state.items()}
    safetensors.torch.save_file(prefixed, str(tmp_path / "prefixed.safetensors"))
    with pytest.raises(SMAInputError, match="prefix 'unet.'"):
        load_motion_module(tmp_path / "prefixed.safetensors")
    lora = {"down_blocks.0.motion_modules.0.temporal_transformer.proj_in_lora.up.weight": torch.zeros(16, 4)}
    safetensors.torch.save_file(lora, str(tmp_path / "lora.safetensors"))
    with pytest.raises(SMAInputError, match="LoRA file"):
        load_motion_module(tmp_path / "lora.safetensors")


# ---------------------------------------------------------------------------------------- configs


def test_shipped_configs_match_known_facts():
    from transformers import CLIPTextConfig

    clip = CLIPTextConfig(**load_config("text_encoder_sd15"))
    facts = (clip.hidden_size, clip.num_hidden_layers, clip.vocab_size, clip.max_position_embeddings)
    assert facts == (768, 12, 49408, 77)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(unet_config("full"))
        tiny = UNet2DConditionModel.from_config(unet_config("tiny"))
    assert len(unet.state_dict()) == 686  # docs/model-loading.md: 686 keys, 859.5M params
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 1) == 859.5
    assert {re.sub(r"\d+", "#", k) for k in unet.state_dict()} == {re.sub(r"\d+", "#", k) for k in tiny.state_dict()}
    for family, (pe_length, mid) in FAMILY_FACTS.items():
        config = motion_adapter_config(family)
        assert config["use_motion_mid_block"] == mid
        assert config["motion_max_seq_length"] == (pe_length or 64)  # ADE assumes 64 for AnimateLCM
        assert (config["motion_num_attention_heads"], config["motion_norm_num_groups"]) == (8, 32)


def test_noise_scheduler_is_linear_animatediff_schedule():
    scheduler = make_noise_scheduler()
    np.testing.assert_allclose(scheduler.betas.numpy(), np.linspace(0.00085, 0.012, 1000), rtol=1e-6)
    assert scheduler.config.prediction_type == "epsilon"
    assert make_noise_scheduler("v_prediction").config.prediction_type == "v_prediction"
    with pytest.raises(SMAInputError, match="prediction_type"):
        make_noise_scheduler("sample")


# ------------------------------------------------------------------------------------- GroupNorms


def _groups_by_hand(x: torch.Tensor, groups: int, weight, bias, eps: float) -> torch.Tensor:
    """GroupNorm of one sample [C, ...] with mean / variance computed explicitly."""
    c = x.shape[0]
    g = x.reshape(groups, -1).double()
    out = (g - g.mean(1, keepdim=True)) / torch.sqrt(g.var(1, unbiased=False, keepdim=True) + eps)
    shape = (c,) + (1,) * (x.ndim - 1)
    return (out.reshape(x.shape) * weight.double().reshape(shape) + bias.double().reshape(shape)).float()


def test_per_frame_temporal_norm_equals_hand_computed_statistics():
    model = tiny_motion_unet("v3")
    norm = model.down_blocks[1].motion_modules[0].norm
    assert isinstance(norm, FrameGroupNorm) and norm.mode == "per_frame"
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.2)
        norm.bias.normal_(0.0, 0.2)
    x = torch.randn(2, 32, 5, 4, 4) * torch.linspace(0.5, 3.0, 5).reshape(1, 1, 5, 1, 1)  # [B, C, F, H, W]
    expected = torch.stack([torch.stack([_groups_by_hand(x[b, :, f], 8, norm.weight, norm.bias, norm.eps)
                                         for f in range(5)], 1) for b in range(2)])
    with torch.no_grad():
        got = norm(x)
        across = F.group_norm(x, 8, norm.weight, norm.bias, norm.eps)  # diffusers' own statistics
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (across - expected).abs().max() > 0.1


def test_norm_switch_is_idempotent_and_keeps_names():
    model = tiny_motion_unet("v2")
    names = list(model.state_dict())
    hooks = len(model._forward_pre_hooks)
    use_ade_group_norms(model, "v2")
    use_ade_group_norms(model, "v2")
    assert list(model.state_dict()) == names and len(model._forward_pre_hooks) == hooks
    frame_norms = [n for n, m in model.named_modules() if isinstance(m, FrameGroupNorm)]
    assert frame_norms and all(".motion_modules." in f".{n}" for n in frame_norms)
    assert len(frame_norms) == 2 * 4 + 1 + 3 * 4  # one per motion module: down, mid, up


def _reference_temporal_module(x: torch.Tensor, w: dict, prefix: str, frames: int, heads: int, groups: int):
    """Original AnimateDiff temporal module, written from the original architecture; x [(B F), C, H, W]."""
    t, blk = f"{prefix}.temporal_transformer.", f"{prefix}.temporal_transformer.transformer_blocks.0."
    bf, c, h, wd = x.shape
    b, d = bf // frames, h * wd
    hs = F.group_norm(x, groups, w[t + "norm.weight"], w[t + "norm.bias"], 1e-6)  # each (b f) sample alone
    hs = F.linear(hs.permute(0, 2, 3, 1).reshape(bf, d, c), w[t + "proj_in.weight"], w[t + "proj_in.bias"])
    for a in (0, 1):
        att = f"{blk}attention_blocks.{a}."
        n = F.layer_norm(hs, (c,), w[f"{blk}norms.{a}.weight"], w[f"{blk}norms.{a}.bias"])
        n = n.reshape(b, frames, d, c).permute(0, 2, 1, 3).reshape(b * d, frames, c)
        n = n + w[att + "pos_encoder.pe"][:, :frames]
        q, k, v = (F.linear(n, w[att + p + ".weight"]).reshape(b * d, frames, heads, c // heads).transpose(1, 2)
                   for p in ("to_q", "to_k", "to_v"))
        scores = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
        out = (scores @ v).transpose(1, 2).reshape(b * d, frames, c)
        out = F.linear(out, w[att + "to_out.0.weight"], w[att + "to_out.0.bias"])
        hs = out.reshape(b, d, frames, c).permute(0, 2, 1, 3).reshape(bf, d, c) + hs
    n = F.layer_norm(hs, (c,), w[blk + "ff_norm.weight"], w[blk + "ff_norm.bias"])
    value, gate = F.linear(n, w[blk + "ff.net.0.proj.weight"], w[blk + "ff.net.0.proj.bias"]).chunk(2, dim=-1)
    hs = F.linear(value * F.gelu(gate), w[blk + "ff.net.2.weight"], w[blk + "ff.net.2.bias"]) + hs
    hs = F.linear(hs, w[t + "proj_out.weight"], w[t + "proj_out.bias"])
    return hs.reshape(bf, h, wd, c).permute(0, 3, 1, 2) + x


@pytest.mark.parametrize(
    "block", ["down_blocks.1.motion_modules.0", "mid_block.motion_modules.0", "up_blocks.0.motion_modules.2"]
)
def test_motion_module_matches_original_architecture(block):
    """The loaded diffusers motion module computes what the original module computes from the file."""
    weights = motion_module_state_dict("v2", "tiny", torch.float32, seed=5)
    pe = f"{block}.temporal_transformer.transformer_blocks.0.attention_blocks.{{}}.pos_encoder.pe"
    trained = torch.randn_like(weights[pe.format(0)])  # non-sinusoid encodings must be honoured
    weights[pe.format(0)], weights[pe.format(1)] = trained, trained.clone()
    model = build_motion_unet(UNet2DConditionModel.from_config(unet_config("tiny")), weights)
    module = model.get_submodule(block)
    channels = weights[f"{block}.temporal_transformer.norm.weight"].shape[0]
    frames = 6
    x = torch.randn(2 * frames, channels, 3, 3) * 2 + 0.5
    with torch.no_grad():
        got = module(x, num_frames=frames)
        expected = _reference_temporal_module(x, weights, block, frames, heads=2, groups=8)
        module.norm.mode = "across_frames"  # what diffusers computes by default
        across = module(x, num_frames=frames)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
    assert (across - expected).abs().max() > 1e-2


def test_v1_normalises_every_group_norm_across_frames():
    """ADE's v1 patch: statistics over all frames of each video, temporal and spatial; videos independent."""
    v1, v3 = tiny_motion_unet("v1"), tiny_motion_unet("v3")
    spatial = v1.down_blocks[0].resnets[0].norm1
    assert isinstance(spatial, FrameGroupNorm) and spatial.mode == "across_frames"
    assert type(v3.down_blocks[0].resnets[0].norm1) is torch.nn.GroupNorm
    assert v1.down_blocks[0].motion_modules[0].norm.mode == "across_frames"
    sample = torch.randn(2, 4, 5, 8, 8)
    context = torch.randn(10, 77, 32)
    captured = {}
    spatial.register_forward_hook(lambda m, args, out: captured.update(x=args[0], y=out))
    with torch.no_grad():
        both = v1(sample, 50, context).sample
        first = v1(sample[:1], 50, context[:5]).sample
    torch.testing.assert_close(both[:1], first, atol=1e-4, rtol=1e-4)
    x = captured["x"]  # last call: [(1 * 5), C, H, W]
    video = x.transpose(0, 1)  # [C, F, H, W]: one sample, statistics over frames too
    expected = _groups_by_hand(video, 8, spatial.weight, spatial.bias, spatial.eps).transpose(0, 1)
    torch.testing.assert_close(captured["y"], expected, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------- building


@pytest.mark.parametrize("family", SD15_FAMILIES)
def test_tiny_models_forward(family, no_network):
    model = tiny_motion_unet(family, seed=1)
    assert model.motion_info.family == family
    sample = torch.randn(1, 4, 8, 8, 8)  # [B, C, F, H, W]
    with torch.no_grad():
        out = model(sample, torch.tensor([10]), torch.randn(8, 77, 32)).sample
    assert out.shape == sample.shape and torch.isfinite(out).all()
    again = tiny_motion_unet(family, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_build_from_ldm_checkpoint_with_and_without_prefix(no_network):
    """A checkpoint in LDM naming converts onto the UNet keys exactly (independent LDM key map)."""
    ldm, diffusers_sd = ldm_unet_state_dict("tiny", torch.float32)
    motion = motion_module_state_dict("v3", "tiny", torch.float32, seed=2)
    bare = {k.removeprefix("model.diffusion_model."): v for k, v in ldm.items()}
    for checkpoint in (ldm, bare, {"first_stage_model.x": torch.zeros(1), **ldm}):
        model = build_motion_unet(checkpoint, motion, unet_config=unet_config("tiny"))
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in diffusers_sd.items())
        assert motion_module_from_model(model).keys() == motion.keys()


def test_base_and_motion_module_mismatch_errors():
    tiny_unet = UNet2DConditionModel.from_config(unet_config("tiny"))
    full_motion = _meta_layout((320, 640, 1280, 1280), False, 32)
    numbers = r"channel mismatch: the UNet's blocks have \[16, 32, 64, 64\].*\[320, 640, 1280, 1280\]"
    with pytest.raises(SMAInputError, match=numbers):
        build_motion_unet(tiny_unet, full_motion)
    ldm, _ = ldm_unet_state_dict("tiny", torch.float32)
    sdxl = {**ldm, "model.diffusion_model.label_emb.0.0.weight": torch.zeros(1)}
    with pytest.raises(SMAInputError, match="SDXL UNet"):
        build_motion_unet(sdxl, motion_module_state_dict("v3", "tiny"), unet_config=unet_config("tiny"))
    sd2 = dict(ldm)
    sd2["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = torch.zeros(16, 1024)
    with pytest.raises(SMAInputError, match="cross-attention dim is 1024 .SD2.x., SD1.5 has 32"):
        build_motion_unet(sd2, motion_module_state_dict("v3", "tiny"), unet_config=unet_config("tiny"))
    with pytest.raises(SMAInputError, match="no Stable Diffusion UNet"):
        build_motion_unet({"foo.weight": torch.zeros(1)}, motion_module_state_dict("v3", "tiny"))


def _full_family_from_v2(v2: dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """A full-size ``family`` file cut from a generated v2 one (no mid block / shorter or no encodings)."""
    pe_length, mid = FAMILY_FACTS[family]
    out = {}
    for key, value in v2.items():
        if key.startswith("mid_block.") and not mid:
            continue
        if key.endswith("pos_encoder.pe"):
            if pe_length is None:
                continue
            value = value[:, :pe_length].clone()
        out[key] = value
    return out


def test_full_size_every_family_lands_and_exports_bit_exact(no_network):
    """Full SD1.5 layouts: strict load of every motion tensor, values kept (file pe included), exact export.

    One uninitialised fp16 UNet checkpoint (LDM naming) and one generated v2 module are shared; the other
    families are cut from it and checked against their layout; one model exists at a time.
    """
    ldm, _ = ldm_unet_state_dict("full", torch.float16, fill="empty")
    v2 = motion_module_state_dict("v2", "full", torch.float16, seed=11)
    for family in SD15_FAMILIES:
        pe_length, mid = FAMILY_FACTS[family]
        motion = _full_family_from_v2(v2, family)
        layout = original_motion_layout((320, 640, 1280, 1280), 2, mid, pe_length)
        assert {k: tuple(v.shape) for k, v in motion.items()} == layout
        model = build_motion_unet(ldm, motion, dtype=torch.float16)
        state = model.state_dict()
        converted = motion_state_dict_to_diffusers(motion)
        assert all(state[k].data_ptr() == v.data_ptr() for k, v in converted.items())  # assigned, not copied
        exported = motion_module_from_model(model)
        assert exported.keys() == motion.keys()
        for key, value in motion.items():  # the same storage, or (second encodings) an equal copy
            assert exported[key].dtype == value.dtype
            assert exported[key].data_ptr() == value.data_ptr() or torch.equal(exported[key], value), key
        assert model.motion_info.family == family
        assert model.config.use_motion_mid_block == mid
        assert model.config.motion_max_seq_length == (pe_length or 64)
        del model, state, converted, exported, motion


# ------------------------------------------------------------------- VAE / text encoder (for the CLI)

_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def ldm_vae_key(key: str) -> str:
    """LDM name of a diffusers AutoencoderKL key (SD KL-f8 layout, 4 levels), written from the LDM layout."""
    key = re.sub(r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out.", key)
    if m := re.match(r"^encoder\.down_blocks\.(\d)\.resnets\.(\d)\.(\w+)\.(.*)$", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_VAE_RESNET.get(m[3], m[3])}.{m[4]}"
    if m := re.match(r"^encoder\.down_blocks\.(\d)\.downsamplers\.0\.conv\.(.*)$", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.match(r"^decoder\.up_blocks\.(\d)\.resnets\.(\d)\.(\w+)\.(.*)$", key):
        return f"decoder.up.{3 - int(m[1])}.block.{m[2]}.{_VAE_RESNET.get(m[3], m[3])}.{m[4]}"
    if m := re.match(r"^decoder\.up_blocks\.(\d)\.upsamplers\.0\.conv\.(.*)$", key):
        return f"decoder.up.{3 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.match(r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)$", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
    if m := re.match(r"^(encoder|decoder)\.mid_block\.attentions\.0\.(to_out\.0|\w+)\.(.*)$", key):
        return f"{m[1]}.mid.attn_1.{_VAE_ATTN[m[2]]}.{m[3]}"
    return key


def test_vae_and_text_encoder_from_a_full_checkpoint(tmp_path, no_network):
    from transformers import CLIPTextConfig, CLIPTextModel

    generator = torch.Generator().manual_seed(3)
    with init_empty_weights():
        vae_keys = AutoencoderKL.from_config(load_config("vae_sd15")).state_dict()
        clip_keys = CLIPTextModel(CLIPTextConfig(**load_config("text_encoder_sd15"))).state_dict()
    vae_sd = {k: torch.randn(v.shape, generator=generator, dtype=torch.float16) for k, v in vae_keys.items()}
    clip_sd = {k: torch.randn(v.shape, generator=generator, dtype=torch.float16) for k, v in clip_keys.items()}
    checkpoint = {}
    for key, value in vae_sd.items():
        ldm = ldm_vae_key(key)
        conv_1x1 = ".mid.attn_1." in ldm and value.ndim == 2  # LDM attention uses 1x1 convolutions
        checkpoint["first_stage_model." + ldm] = value[:, :, None, None] if conv_1x1 else value
    for key, value in clip_sd.items():
        checkpoint["cond_stage_model.transformer.text_model." + key] = value
    checkpoint["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]

    vae = load_sd15_vae(checkpoint, dtype=torch.float16)
    assert len(vae.state_dict()) == 248  # docs/model-loading.md
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in vae_sd.items())
    assert vae.config.scaling_factor == 0.18215
    text = load_sd15_text_encoder(checkpoint, dtype=torch.float16)
    assert all(torch.equal(text.state_dict()[k], v) for k, v in clip_sd.items())
    with torch.no_grad():
        tokens = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407] + [49407] * 70])  # "a photo of a cat"
        hidden = text.float()(tokens).last_hidden_state
    assert hidden.shape == (1, 77, 768) and torch.isfinite(hidden).all()

    unet_only = tmp_path / "unet_only.safetensors"
    safetensors.torch.save_file({"model.diffusion_model.out.2.bias": torch.zeros(4)}, str(unet_only))
    with pytest.raises(SMAInputError, match="no VAE"):
        load_sd15_vae(unet_only)
    with pytest.raises(SMAInputError, match="no CLIP text encoder"):
        load_sd15_text_encoder(unet_only)
