"""Motion LoRA: injection, ADE-format export / import, other trainers' layouts, merge, atomic writes.

Tiny random models with the real SD1.5 + AnimateDiff key structure (``sma.models.build.tiny_motion_unet``).
"""
from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

import sma
import sma.lora.files as lora_files
from sma.errors import SMAInputError
from sma.lora import (
    FORMAT,
    LoRAConfig,
    adapter_names,
    add_motion_lora,
    add_spatial_lora,
    apply_motion_lora,
    enable_lora,
    export_motion_lora,
    load_motion_lora,
    lora_layers,
    lora_parameters,
    merge_lora,
    merged_lora,
    remove_lora,
    save_motion_lora,
    set_lora_scale,
    unmerge_lora,
)
from sma.lora.keys import parse_lora_key
from sma.models.build import motion_module_state_dict, tiny_motion_unet
from sma.models.keys import motion_key_to_diffusers

FRAMES = 4
ALL_TARGETS = ("attention", "ff", "proj")


def randomize(model: torch.nn.Module, adapter: str = "motion", seed: int = 1) -> None:
    """Give every ``up`` of an adapter non-zero values (fresh adapters start with up = 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in lora_layers(model, adapter).values():
            a.up.copy_(torch.randn(a.up.shape, generator=generator) * 0.2)


def lora_model(family: str = "v3", targets=("attention",), rank: int = 4, alpha: float | None = 8.0):
    model = tiny_motion_unet(family)
    names = add_motion_lora(model, LoRAConfig(rank=rank, alpha=alpha, targets=targets))
    randomize(model)
    return model, names


def forward(model: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    """Tiny UNet noise prediction for a fixed random input ``[1, 4, F, 8, 8]``."""
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 4, FRAMES, 8, 8, generator=generator)
    context = torch.randn(FRAMES, 77, 32, generator=generator)
    with torch.no_grad():
        return model(sample, torch.tensor([500]), encoder_hidden_states=context).sample


def ade_model_key(lora_key: str) -> str:
    """The motion-module key ADE patches for a LoRA ``.down`` key (its documented renaming, docs/lora-format.md)."""
    key = lora_key.replace("processor.", "").replace("_lora", "").replace("down.", "").replace("up.", "")
    return key if "to_out.0." in key else key.replace("to_out.", "to_out.0.")


# ---------------------------------------------------------------------------------------------- injection

@pytest.mark.parametrize(("family", "targets", "expected"), [
    ("v3", ("attention",), 160), ("v2", ("attention",), 168), ("v3", ALL_TARGETS, 240), ("v2", ("attention", "ff"), 210),
])
def test_motion_lora_wraps_the_documented_layer_counts(family, targets, expected):
    model = tiny_motion_unet(family)
    names = add_motion_lora(model, LoRAConfig(rank=2, targets=targets))
    assert len(names) == expected
    assert all(".motion_modules." in n for n in names)
    assert len(lora_parameters(model, "motion")) == 2 * expected


def test_config_refuses_bad_values():
    for bad in (dict(rank=0), dict(alpha=-1.0), dict(targets=("ff",)), dict(targets=("attention", "conv")),
                dict(dropout=1.0)):
        with pytest.raises(SMAInputError):
            LoRAConfig(**bad)


def test_adapter_starts_as_identity_and_trains_only_lora_weights():
    model = tiny_motion_unet("v3")
    base = forward(model)
    add_motion_lora(model, LoRAConfig(rank=4))
    assert torch.equal(forward(model), base)  # up = 0 at start
    randomize(model)
    model.requires_grad_(False)
    params = lora_parameters(model, "motion")
    for p in params:
        p.requires_grad_(True)
    sample = torch.randn(1, 4, FRAMES, 8, 8)
    model(sample, torch.tensor([10]), encoder_hidden_states=torch.randn(FRAMES, 77, 32)).sample.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert all(p.grad is None for n, p in model.named_parameters() if ".sma_lora." not in n)


def test_fp32_adapter_on_fp16_layer():
    layer = torch.nn.Linear(8, 6).half()
    model = torch.nn.Sequential()
    model.add_module("motion_modules", torch.nn.ModuleList([torch.nn.Module()]))
    block = model.motion_modules[0]
    block.add_module("proj_in", layer)
    add_motion_lora(model, LoRAConfig(rank=2, targets=("attention", "proj")))
    adapter = lora_layers(model, "motion")["motion_modules.0.proj_in"]
    assert adapter.down.dtype == torch.float32 and layer.weight.dtype == torch.float16
    randomize(model)
    x = torch.randn(3, 8).half()
    out = layer(x)
    assert out.dtype == torch.float16
    reference = (x.float() @ layer.weight.float().T + layer.bias.float()
                 + 1.0 * (x.float() @ adapter.down.T) @ adapter.up.T)
    assert torch.allclose(out.float(), reference, atol=1e-2), (out.float() - reference).abs().max()


# ------------------------------------------------------------------------------------------------- export

def test_export_layout_alpha_baked_fp16_every_layer():
    model, names = lora_model(targets=ALL_TARGETS, rank=4, alpha=8.0)
    state = export_motion_lora(model)
    assert len(state) == 2 * len(names) == 480
    assert not any(k.endswith("alpha") for k in state)
    assert all(t.ndim == 2 and t.dtype == torch.float16 for t in state.values())
    assert sum(".ff.net.0.proj_lora." in k for k in state) == 40 and sum(".ff.net.2_lora." in k for k in state) == 40
    assert sum(".proj_in_lora." in k for k in state) == 40 and sum(".proj_out_lora." in k for k in state) == 40
    motion_keys = set(motion_module_state_dict("v3", "tiny", torch.float32))
    layers = lora_layers(model, "motion")
    for key in (k for k in state if k.endswith(".down.weight")):
        up_key = key.replace(".down.", ".up.")
        model_key = ade_model_key(key)
        assert model_key in motion_keys, key  # ADE finds the layer this pair patches
        adapter = layers[motion_key_to_diffusers(model_key[: -len(".weight")])]
        assert torch.equal(state[key], adapter.down.detach().half())
        assert torch.equal(state[up_key], (adapter.up.detach() * (8.0 / 4)).half())  # up = B * alpha / r
        assert state[key].shape == (4, adapter.down.shape[1]) and state[up_key].shape == (adapter.up.shape[0], 4)
    assert sorted(ade_model_key(k) for k in state if ".down." in k) == sorted(
        k for k in motion_keys if k.endswith(".weight") and any(
            s in k for s in (".to_q.", ".to_k.", ".to_v.", ".to_out.0.", ".ff.net.0.proj.", ".ff.net.2.",
                             ".proj_in.", ".proj_out.")))


def test_spatial_adapter_is_separate_and_never_exported():
    model, motion_names = lora_model()
    spatial_names = add_spatial_lora(model, LoRAConfig(rank=2))
    randomize(model, "spatial", seed=5)
    assert len(spatial_names) == 128 and not set(spatial_names) & set(motion_names)
    assert all(".attentions." in n for n in spatial_names)
    motion_ids = {id(p) for p in lora_parameters(model, "motion")}
    assert not motion_ids & {id(p) for p in lora_parameters(model, "spatial")}
    state = export_motion_lora(model)
    assert len(state) == 2 * len(motion_names) and all(".motion_modules." in k for k in state)
    with pytest.raises(SMAInputError, match="motion module"):
        export_motion_lora(model, "spatial")
    with_spatial = forward(model)
    remove_lora(model, "spatial")
    assert adapter_names(model) == ["motion"]
    assert not (forward(model) - with_spatial).abs().max() < 1e-6  # the spatial path did something
    assert torch.equal(export_motion_lora(model)[next(iter(state))], next(iter(state.values())))


# -------------------------------------------------------------------------------------- round trip + files

@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_export_save_load_apply_export_is_bit_exact(tmp_path, dtype):
    model, names = lora_model(targets=ALL_TARGETS, alpha=2.0)
    first = export_motion_lora(model, dtype=dtype)
    path = save_motion_lora(tmp_path / "a.safetensors", first, {"family": "v3"})
    loaded, _ = load_motion_lora(path)
    assert loaded.keys() == first.keys() and all(torch.equal(loaded[k], first[k]) for k in first)
    fresh = tiny_motion_unet("v3", seed=3)
    assert apply_motion_lora(fresh, loaded) == []
    assert len(lora_layers(fresh, "motion")) == len(names)
    second = export_motion_lora(fresh, dtype=dtype)
    assert second.keys() == first.keys() and all(torch.equal(second[k], first[k]) for k in first)
    # resume into an adapter with alpha != rank: the file's up is divided by alpha / r and exported back
    resume = tiny_motion_unet("v3", seed=4)
    add_motion_lora(resume, LoRAConfig(rank=4, alpha=16.0, targets=ALL_TARGETS))
    apply_motion_lora(resume, loaded)
    third = export_motion_lora(resume, dtype=dtype)
    assert all(torch.equal(third[k], first[k]) for k in first)


def test_metadata_round_trip(tmp_path):
    model, _ = lora_model()
    meta = {"base_motion_module": "v3_sd15_mm.ckpt", "family": "v3", "frames": 16, "resolution": [384, 256],
            "sma": {"mode": "paper", "lambda_global": 1.0, "lambda_local": 0.5, "wavelet": "haar"},
            "steps": 300, "rank": 4, "alpha": 8.0, "seed": None}
    path = save_motion_lora(tmp_path / "m.safetensors", export_motion_lora(model), meta)
    _, loaded = load_motion_lora(path)
    assert {k: loaded[k] for k in meta} == meta
    assert loaded[lora_files.FORMAT_KEY] == FORMAT and loaded[lora_files.VERSION_KEY] == sma.__version__
    assert loaded[lora_files.LAYERS_KEY] == "160"
    raw = lora_files.read_lora_file(path)[1]
    assert all(isinstance(v, str) for v in raw.values()) and raw["family"] == "v3" and raw["frames"] == "16"


def test_writer_refuses_alpha_and_foreign_keys(tmp_path):
    model, _ = lora_model()
    state = export_motion_lora(model)
    down = next(k for k in state if k.endswith(".down.weight"))
    with pytest.raises(SMAInputError, match="alpha|layout"):
        save_motion_lora(tmp_path / "x.safetensors", {**state, down.replace(".down.weight", ".alpha"): torch.tensor(8.0)})
    with pytest.raises(SMAInputError, match="layout"):
        save_motion_lora(tmp_path / "x.safetensors", {"unet." + k: v for k, v in state.items()})
    with pytest.raises(SMAInputError, match=".safetensors"):
        save_motion_lora(tmp_path / "x.ckpt", state)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    # what safetensors 0.4+ really raises on a full disk (seen on a 64 KiB tmpfs)
    SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
])
def test_full_disk_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch, failure):
    model, _ = lora_model()
    path = save_motion_lora(tmp_path / "lora.safetensors", export_motion_lora(model), {"steps": 100})
    before = path.read_bytes()
    randomize(model, seed=9)

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial header")  # something was written before the disk filled up
        raise failure

    monkeypatch.setattr(lora_files, "save_file", disk_full)
    with pytest.raises(SMAInputError, match="not enough disk space") as info:
        save_motion_lora(path, export_motion_lora(model), {"steps": 200})
    assert str(path) in str(info.value) and "No space left on device" in str(info.value)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["lora.safetensors"]


# --------------------------------------------------------------------------------- other layouts + errors

def _foreign(state: dict[str, torch.Tensor], key_of, scale_up: float = 1.0) -> dict[str, torch.Tensor]:
    """Rewrite an ADE-layout state dict (fp32) with ``key_of(original module, role)``; ``up / scale_up``."""
    out = {}
    for key, tensor in state.items():
        parsed = parse_lora_key(key)
        out[key_of(parsed.module, parsed.role)] = tensor / scale_up if parsed.role == "up" else tensor
    return out


def _kijai(module: str, role: str) -> str:
    # kijai/ComfyUI-ADMotionDirector and ExponentialML/AnimateDiff-MotionDirector,
    # animatediff/utils/lora.py convert_to_motion_lora_key: "<parent>.<leaf>.lora_<role>.weight" becomes
    # "<parent>.processor.<leaf>_lora.<role>.weight" with leaf = the LAST name part (so "to_out.processor.0_lora").
    parent, leaf = module.rsplit(".", 1)
    return f"{parent}.processor.{leaf}_lora.{role}.weight"


def _cloneofsimo(module: str, role: str) -> str:
    # The same trainers without use_motion_lora_format: LoraInjectedLinear's state dict (lora_down / lora_up).
    return f"{module}.lora_{role}.weight"


def _peft_unet(module: str, role: str) -> str:
    # diffusers save_lora_weights of a peft adapter (loaders/lora_base.py _pack_dict_with_prefix "unet."):
    # diffusers naming, lora_A = down, lora_B = up.
    return f"unet.{motion_key_to_diffusers(module)}.lora_{'A' if role == 'down' else 'B'}.weight"


def _diffusers_old(module: str, role: str) -> str:
    # diffusers' old attention-processor LoRA naming (state_dict_utils.py UNET_TO_DIFFUSERS: ".to_q_lora.down").
    name = motion_key_to_diffusers(module)
    parent, leaf = name.rsplit(".", 1) if not name.endswith("to_out.0") else (name[: -len(".to_out.0")], "to_out")
    return f"{parent}.processor.{leaf}_lora.{role}.weight"


def _kohya(module: str, role: str) -> str:
    # kohya sd-scripts style: "lora_unet_" + the dotted path with "_" + ".lora_down.weight" / ".alpha".
    return "lora_unet_" + module.replace(".", "_") + (f".lora_{role}.weight" if role != "alpha" else ".alpha")


@pytest.mark.parametrize("layout", ["ours_with_unet_prefix", "kijai", "cloneofsimo", "diffusers_old"])
def test_other_layouts_convert_to_ours(tmp_path, layout):
    targets = ("attention", "ff") if layout in ("kijai", "cloneofsimo") else ("attention",)
    model, _ = lora_model(targets=targets)
    ours = export_motion_lora(model, dtype=torch.float32)
    if layout == "ours_with_unet_prefix":
        foreign = {"unet." + k: v for k, v in ours.items()}
    else:
        foreign = _foreign(ours, {"kijai": _kijai, "cloneofsimo": _cloneofsimo, "diffusers_old": _diffusers_old}[layout])
    assert set(foreign) != set(ours)  # kijai's to_q/k/v keys equal ours; its to_out and ff keys differ
    save_file(foreign, str(tmp_path / "f.safetensors"), metadata={"model_type": "motion_director", "rank": "4"})
    loaded, meta = load_motion_lora(tmp_path / "f.safetensors")
    assert loaded.keys() == ours.keys() and all(torch.equal(loaded[k], ours[k]) for k in ours)
    assert meta == {"model_type": "motion_director", "rank": "4"}


def test_peft_file_with_alpha_metadata_and_kohya_file_with_alpha_keys(tmp_path):
    model, _ = lora_model(alpha=4.0)  # scale 1, so the exported up is B itself
    ours = export_motion_lora(model, dtype=torch.float32)
    # peft: lora_alpha / r = 8 / 4 = 2 lives in the metadata, not in the tensors
    peft = _foreign(ours, _peft_unet, scale_up=2.0)
    meta = {"format": "pt", "lora_adapter_metadata": '{"unet.lora_alpha": 8, "unet.r": 4, "unet.use_rslora": false}'}
    save_file(peft, str(tmp_path / "peft.safetensors"), metadata=meta)
    loaded, _ = load_motion_lora(tmp_path / "peft.safetensors")
    assert loaded.keys() == ours.keys() and all(torch.equal(loaded[k], ours[k]) for k in ours)
    # kohya: an alpha key per layer (alpha 2 at rank 4: up is multiplied by 0.5)
    kohya = _foreign(ours, _kohya, scale_up=0.5)
    kohya.update({_kohya(parse_lora_key(k).module, "alpha"): torch.tensor(2.0) for k in ours if ".down." in k})
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    loaded, _ = load_motion_lora(tmp_path / "kohya.safetensors")
    assert loaded.keys() == ours.keys() and all(torch.equal(loaded[k], ours[k]) for k in ours)


def test_files_that_are_not_motion_loras_are_refused(tmp_path):
    motion = tmp_path / "mm.safetensors"
    save_file(motion_module_state_dict("v3", "tiny", torch.float16), str(motion))
    with pytest.raises(SMAInputError, match="motion module"):
        load_motion_lora(motion)
    ckpt = tmp_path / "ckpt.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
               "first_stage_model.encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}, str(ckpt))
    with pytest.raises(SMAInputError, match="checkpoint"):
        load_motion_lora(ckpt)
    spatial = tmp_path / "image_lora.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": torch.zeros(4, 320),
               "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight": torch.zeros(320, 4),
               "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha": torch.tensor(4.0)},
              str(spatial))
    with pytest.raises(SMAInputError, match="no AnimateDiff motion-module LoRA pair.*lora_unet_down_blocks_0_attentions"):
        load_motion_lora(spatial)
    # showlab/MotionDirector saves an unnamed list of up/down tensors (utils/lora.py save_lora_weight)
    showlab = tmp_path / "temporal.pt"
    torch.save([torch.zeros(320, 4), torch.zeros(4, 320)], showlab)
    with pytest.raises(SMAInputError, match="list"):
        load_motion_lora(showlab)


def test_broken_pairs_are_refused(tmp_path):
    model, _ = lora_model()
    state = export_motion_lora(model, dtype=torch.float32)
    down = next(k for k in state if k.endswith(".down.weight"))
    up = down.replace(".down.", ".up.")
    cases = {
        "rank mismatch": {**state, up: state[up][:, :3].contiguous()},
        "2-D": {**state, down: state[down][..., None, None].contiguous()},
        "no up": {k: v for k, v in state.items() if k != up},
        "not motion-module LoRA pairs": {**state, "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 8)},
    }
    for message, broken in cases.items():
        save_file(broken, str(tmp_path / "b.safetensors"))
        with pytest.raises(SMAInputError, match=message):
            load_motion_lora(tmp_path / "b.safetensors")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded, _ = load_motion_lora(tmp_path / "b.safetensors", strict=False)
    assert loaded.keys() == state.keys() and "ignored 1 key" in str(caught[0].message)


def test_v2_lora_on_v3_model_reports_the_mid_block_layers():
    v2, names = lora_model("v2")
    state = export_motion_lora(v2)
    mid = sorted({parse_lora_key(k).module for k in state if k.startswith("mid_block.")})
    assert len(mid) == 8 and len(names) == 168
    v3 = tiny_motion_unet("v3")
    with pytest.raises(SMAInputError, match=r"8 of the LoRA's 168 layers .*mid-block"):
        apply_motion_lora(v3, state)
    assert adapter_names(v3) == []
    assert apply_motion_lora(v3, state, strict=False) == mid
    assert len(lora_layers(v3, "motion")) == 160


def test_apply_refuses_rank_and_size_mismatches():
    model, _ = lora_model(rank=4)
    state = export_motion_lora(model)
    other_rank = tiny_motion_unet("v3")
    add_motion_lora(other_rank, LoRAConfig(rank=8))
    with pytest.raises(SMAInputError, match="rank mismatch"):
        apply_motion_lora(other_rank, state)
    other_targets = tiny_motion_unet("v3")
    add_motion_lora(other_targets, LoRAConfig(rank=4, targets=ALL_TARGETS))
    with pytest.raises(SMAInputError, match="different layers"):
        apply_motion_lora(other_targets, state)
    wide = {k: torch.cat([v, v], dim=1 if ".down." in k else 0) for k, v in state.items()}  # a bigger model's LoRA
    with pytest.raises(SMAInputError, match="different model size"):
        apply_motion_lora(tiny_motion_unet("v3"), wide)


# ---------------------------------------------------------------------------------------- merge + scale

def test_merged_output_equals_active_adapter_output_and_unmerge_is_exact():
    model, _ = lora_model(targets=ALL_TARGETS)
    add_spatial_lora(model, LoRAConfig(rank=2))
    randomize(model, "spatial", seed=3)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    for strength in (1.0, 0.5):
        set_lora_scale(model, "motion", strength)
        active = forward(model)
        with merged_lora(model, "motion", "spatial"):
            merged = forward(model)
            assert not torch.equal(model.state_dict()[next(k for k in weights if k.endswith("attn1.to_q.weight"))],
                                   weights[next(k for k in weights if k.endswith("attn1.to_q.weight"))])
        assert torch.allclose(merged, active, atol=1e-5), (merged - active).abs().max()
        assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    enable_lora(model, "motion", False)
    enable_lora(model, "spatial", False)
    off = forward(model)
    remove_lora(model, "motion")
    remove_lora(model, "spatial")
    assert torch.equal(forward(model), off)


def test_scale_change_while_merged_follows_and_apply_sets_strength():
    model, _ = lora_model()
    state = export_motion_lora(model, dtype=torch.float32)
    merge_lora(model, "motion")
    set_lora_scale(model, "motion", 0.0)
    merged_off = forward(model)
    unmerge_lora(model, "motion")
    remove_lora(model, "motion")
    assert torch.allclose(forward(model), merged_off, atol=1e-6)
    apply_motion_lora(model, state, strength=0.5)
    assert {a.multiplier for a in lora_layers(model, "motion").values()} == {0.5}
    half = forward(model)
    set_lora_scale(model, "motion", 1.0)
    assert not torch.allclose(forward(model), half, atol=1e-4)
    set_lora_scale(model, "motion", 0.5)
    assert torch.equal(forward(model), half)


def test_ade_reads_our_files_as_they_are_and_other_layouts_through_a_cached_copy(tmp_path):
    from sma.lora.ade_files import converted_path, describe, read_for_ade

    model, _ = lora_model()
    ours = export_motion_lora(model, dtype=torch.float16)
    save_motion_lora(tmp_path / "ours.safetensors", ours, {"family": "v3", "steps": 7})
    name, state, metadata = read_for_ade("sub/ours.safetensors", tmp_path / "ours.safetensors")
    assert name == "sub/ours.safetensors" and not converted_path(tmp_path / "ours.safetensors").exists()
    assert describe("ours", state, metadata) == "ours: 160 layers, rank 4\nfamily: v3\nsteps: 7"
    foreign = tmp_path / "kijai.safetensors"
    save_file({"unet." + k: v for k, v in ours.items()}, str(foreign))
    name, state, _ = read_for_ade("sub/kijai.safetensors", foreign)
    copy = converted_path(foreign)
    assert name == "sub/kijai.ade.safetensors" and copy.name == "kijai.ade.safetensors"
    loaded, meta = load_motion_lora(copy)
    assert all(torch.equal(loaded[k], ours[k]) for k in ours) and meta["converted_from"] == "kijai.safetensors"
    written = copy.stat().st_mtime_ns
    read_for_ade("sub/kijai.safetensors", foreign)  # cached: not written again
    assert copy.stat().st_mtime_ns == written
    os.utime(foreign, ns=(written + 10**9, written + 10**9))  # the original changed: converted again
    read_for_ade("sub/kijai.safetensors", foreign)
    assert copy.stat().st_mtime_ns > written
