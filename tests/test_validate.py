"""Files are validated before use: every bad motion LoRA, motion module or checkpoint gets one clear error that
names the file and the first bad key, from the library and from ``python -m sma inspect`` (exit 2), and a
LoRA that does not fit is never half-applied.

LoRAs are made on the tiny v3 model (channels 16/32/64/64) and written with ``safetensors`` directly, so
the files hold exactly the defect under test.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sma.cli import main
from sma.errors import SMAInputError
from sma.integrity import CHECKSUM_KEY, with_checksums
from sma.lora import (
    LoRAConfig,
    adapter_names,
    add_motion_lora,
    apply_motion_lora,
    export_motion_lora,
    load_motion_lora,
    lora_layers,
    save_motion_lora,
)
from sma.lora.validate import MAX_METADATA_BYTES, check_sd15_lora, motion_lora_layers
from sma.models.build import motion_module_state_dict, tiny_motion_unet
from sma.models.files import load_motion_module
from sma.training import load_checkpoint
from sma.training.checkpoint import save_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
Q = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.to_q_lora"
K = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.to_k_lora"
LAST = "up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.1.processor.to_out_lora"


@pytest.fixture(scope="module")
def lora() -> dict[str, torch.Tensor]:
    """A rank-4 attention motion LoRA of the tiny v3 model with non-zero ``up`` (fp16, ADE layout, 160 pairs)."""
    model = tiny_motion_unet("v3", seed=0)
    add_motion_lora(model, LoRAConfig(rank=4, targets=("attention",)))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(model, "motion").values():
            layer.up.copy_(torch.randn(layer.up.shape, generator=generator) * 0.1)
    return export_motion_lora(model)


def write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def refused(path: Path, *needles: str) -> str:
    """``load_motion_lora`` and ``python -m sma inspect`` (in-process) both refuse ``path`` naming it."""
    with pytest.raises(SMAInputError) as info:
        load_motion_lora(path)
    message = str(info.value)
    for needle in (path.name, *needles):
        assert needle in message, message
    return message


def inspect_refuses(capsys, path: Path, *needles: str) -> None:
    assert main(["inspect", str(path)]) == 2
    out = capsys.readouterr()
    assert out.err.startswith("error: ") and "Traceback" not in out.err and out.out == ""
    for needle in (path.name, *needles):
        assert needle in out.err, out.err


# --- the two files the issue found ------------------------------------------------------------------------

def test_all_nan_lora_is_refused_by_library_and_cli_subprocess(tmp_path, lora):
    path = write(tmp_path / "nan.safetensors", {k: torch.full_like(v, float("nan")) for k, v in lora.items()})
    first = next(iter(load_file(str(path))))  # the file's first tensor is the one named
    message = refused(path, "NaN/inf", first)
    assert re.search(r"holds \d+ NaN/inf value", message)
    result = subprocess.run([sys.executable, "-m", "sma", "inspect", str(path)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 2, result
    assert result.stderr.startswith("error: nan.safetensors: ") and "NaN/inf" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_pair_that_does_not_chain_to_its_layer_is_refused(tmp_path, capsys, lora):
    bad = dict(lora)
    bad[f"{Q}.down.weight"] = torch.randn(8, 321, dtype=torch.float16) * 0.1
    bad[f"{Q}.up.weight"] = torch.randn(7, 8, dtype=torch.float16) * 0.1
    path = write(tmp_path / "chain.safetensors", bad)
    message = refused(path, Q.replace(".processor.to_q_lora", ".to_q"), "7 x 321")
    assert "attention/proj: C x C" in message
    inspect_refuses(capsys, path, "7 x 321")


# --- shapes, ranks, dtypes, values, sizes -------------------------------------------------------------------

def test_rank_differs_between_down_and_up(tmp_path, capsys, lora):
    bad = dict(lora)
    bad[f"{K}.up.weight"] = torch.zeros(16, 8, dtype=torch.float16)
    path = write(tmp_path / "rank.safetensors", bad)
    refused(path, "rank mismatch", "down (4, 16) has rank 4", "up (16, 8) has rank 8")
    inspect_refuses(capsys, path, "rank mismatch")


def test_widths_must_agree_within_a_block_and_with_its_mirror(tmp_path, lora):
    """Every layer square, but down_blocks.0 at 16 channels and one of its layers at 32."""
    bad = dict(lora)
    bad[f"{K}.down.weight"] = torch.zeros(4, 32, dtype=torch.float16)
    bad[f"{K}.up.weight"] = torch.zeros(32, 4, dtype=torch.float16)
    refused(write(tmp_path / "block.safetensors", bad), "is 16 channels wide", "to_k' is 32", "must agree")
    bad = dict(lora)
    for key in [k for k in bad if k.startswith("up_blocks.3.")]:
        shape = (4, 32) if key.endswith("down.weight") else (32, 4)
        bad[key] = torch.zeros(shape, dtype=torch.float16)
    message = refused(write(tmp_path / "mirror.safetensors", bad), "mirrored down/up blocks")
    assert re.search(r"layer 'up_blocks\.3\.[^']+' is 32 channels wide but 'down_blocks\.0\.", message)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int8, torch.bool])
def test_non_float_weights_are_refused(tmp_path, capsys, lora, dtype):
    bad = dict(lora)
    bad[f"{Q}.down.weight"] = torch.ones(4, 16, dtype=dtype)
    path = write(tmp_path / "int.safetensors", bad)
    refused(path, f"{Q}.down.weight", f"dtype {str(dtype).removeprefix('torch.')}", "LoRA weights are float")
    inspect_refuses(capsys, path, "LoRA weights are float")


def test_inf_and_absurd_values_and_sizes_are_refused(tmp_path, lora):
    bad = dict(lora)
    bad[f"{K}.up.weight"] = bad[f"{K}.up.weight"].clone()
    bad[f"{K}.up.weight"][3, 1] = float("inf")
    refused(write(tmp_path / "inf.safetensors", bad), f"{K}.up.weight", "1 NaN/inf value(s) of 64")
    bad = dict(lora)
    bad[f"{K}.down.weight"] = torch.full((4, 16), 3.0e4, dtype=torch.float16)
    refused(write(tmp_path / "huge.safetensors", bad), f"{K}.down.weight", "magnitude 3e+04")
    bad = dict(lora)
    bad[f"{K}.down.weight"] = torch.zeros(2048, 16, dtype=torch.float16)
    bad[f"{K}.up.weight"] = torch.zeros(16, 2048, dtype=torch.float16)
    refused(write(tmp_path / "rank2048.safetensors", bad), f"{K}.down.weight", "rank at most 1024")
    bad = dict(lora)
    bad[f"{K}.down.weight"] = torch.zeros(0, 16, dtype=torch.float16)
    refused(write(tmp_path / "empty.safetensors", bad), f"{K}.down.weight", "is empty")
    many = {f"junk.{i}": torch.zeros(1) for i in range(20_001)}
    path = write(tmp_path / "many.safetensors", {**lora, **many})
    refused(path, "20,321 tensors (at most 20,000)")


def test_alpha_must_be_one_positive_number(tmp_path, lora):
    kohya = {k.replace(".processor.", ".").replace("_lora.", ".lora_"): v for k, v in lora.items()}
    alpha = next(k for k in kohya if k.endswith("lora_down.weight")).replace("lora_down.weight", "alpha")
    refused(write(tmp_path / "alpha0.safetensors", {**kohya, alpha: torch.tensor(0.0)}), alpha, "alpha must be a positive number")
    refused(write(tmp_path / "alpha2.safetensors", {**kohya, alpha: torch.ones(2)}), alpha, "must hold one number")
    state, _ = load_motion_lora(write(tmp_path / "alpha8.safetensors", {**kohya, alpha: torch.tensor(8)}))
    assert len(state) == len(lora)  # an integer alpha is fine


def test_two_keys_naming_one_layer_after_normalisation(tmp_path, capsys, lora):
    cloneofsimo = Q.replace(".processor.to_q_lora", ".to_q") + ".lora_down.weight"
    path = write(tmp_path / "dup.safetensors", {**lora, cloneofsimo: lora[f"{Q}.down.weight"]})
    refused(path, cloneofsimo, f"{Q}.down.weight", "once their names are normalised")
    inspect_refuses(capsys, path, "once their names are normalised")


# --- metadata -------------------------------------------------------------------------------------------------

def test_metadata_that_is_not_json_or_huge_is_refused(tmp_path, capsys, lora):
    good = save_motion_lora(tmp_path / "good.safetensors", lora, {"steps": 40, "targets": ["attention"]})
    from safetensors import safe_open

    with safe_open(str(good), "pt") as handle:
        header = dict(handle.metadata())
    assert json.loads(header["sma_json_keys"]) == ["steps", "targets"]
    broken = {**header, "targets": "['attention'"}
    path = write(tmp_path / "json.safetensors", lora, {k: v for k, v in broken.items() if k != CHECKSUM_KEY})
    refused(path, "'targets'", "not valid JSON (listed in 'sma_json_keys')")
    inspect_refuses(capsys, path, "not valid JSON")
    path = write(tmp_path / "list.safetensors", lora, {"sma_json_keys": "{not json"})
    refused(path, "'sma_json_keys'", "not valid JSON")
    path = write(tmp_path / "peft.safetensors", lora, {"lora_adapter_metadata": "{\"r\": 4,"})
    refused(path, "'lora_adapter_metadata'", "not valid JSON")
    path = write(tmp_path / "huge.safetensors", lora, {"notes": "x" * (MAX_METADATA_BYTES + 1)})
    refused(path, "'notes'", "at most 1,048,576 are read")


# --- checksums of the pack's own files ---------------------------------------------------------------------------

def test_a_changed_byte_in_a_pack_lora_is_caught_by_its_checksum(tmp_path, capsys, lora):
    path = save_motion_lora(tmp_path / "ok.safetensors", lora, {"steps": 3})
    state, metadata = load_motion_lora(path)
    assert CHECKSUM_KEY not in metadata and metadata["steps"] == 3
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # the lowest mantissa bit of a value of the last tensor: still finite and small
    path.write_bytes(bytes(data))
    message = refused(path, "is damaged", "was changed")
    assert re.search(r"tensor '[^']+' was changed", message)
    inspect_refuses(capsys, path, "is damaged")
    unchecked = write(tmp_path / "unchecked.safetensors", lora, {"sma_format": "ade-motion-lora/1"})
    refused(unchecked, "is damaged", "'sma_checksums' entry is missing")  # the pack's marker, no checksum
    assert len(load_motion_lora(write(tmp_path / "other.safetensors", lora, {"ss_network_dim": "4"}))[0]) == 320


# --- layers the chosen motion module lacks, or has with another width; never half-applied -------------------------

def _model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_lora_for_another_width_is_refused_and_the_model_is_untouched(lora):
    """down_blocks.3 and its mirror up_blocks.0 are for 32 channels (the model has 64): consistent in
    itself, so only the model tells; the layers before them in file order would fit."""
    model = tiny_motion_unet("v3", seed=0)
    before = _model_state(model)
    bad = dict(lora)
    for key in [k for k in bad if k.startswith(("down_blocks.3.", "up_blocks.0."))]:
        bad[key] = torch.zeros((4, 32) if key.endswith("down.weight") else (32, 4), dtype=torch.float16)
    with pytest.raises(SMAInputError, match=r"layer 'down_blocks\.3\..* is 32 x 32 but 64 x 64 in this model"):
        apply_motion_lora(model, bad)
    assert adapter_names(model) == []
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_lora_with_layers_the_model_lacks_is_refused_and_the_model_is_untouched(lora):
    model = tiny_motion_unet("v3", seed=0)
    before = _model_state(model)
    mid = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.to_q_lora"
    extra = {f"{mid}.down.weight": torch.zeros(4, 64, dtype=torch.float16),
             f"{mid}.up.weight": torch.zeros(64, 4, dtype=torch.float16)}
    with pytest.raises(SMAInputError, match=r"1 of the LoRA's 161 layers are not in this model .*mid block"):
        apply_motion_lora(model, {**lora, **extra})
    assert adapter_names(model) == []
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert apply_motion_lora(model, lora) == [] and len(lora_layers(model, "motion")) == 160  # the good one applies


def test_existing_adapter_with_other_rank_is_refused_before_any_layer_changes(lora):
    model = tiny_motion_unet("v3", seed=0)
    assert apply_motion_lora(model, lora) == []
    weights = {n: (a.down.clone(), a.up.clone()) for n, a in lora_layers(model, "motion").items()}
    other = dict(lora)
    other[f"{LAST}.down.weight"] = torch.zeros(8, 16, dtype=torch.float16)
    other[f"{LAST}.up.weight"] = torch.zeros(16, 8, dtype=torch.float16)
    other = {k: (v if k.startswith(LAST) else v * 2) for k, v in other.items()}
    with pytest.raises(SMAInputError, match="rank mismatch on 'up_blocks.3.motion_modules.2"):
        apply_motion_lora(model, other)
    for name, adapter in lora_layers(model, "motion").items():
        assert torch.equal(adapter.down, weights[name][0]) and torch.equal(adapter.up, weights[name][1])


def test_sd15_check_of_the_node_knows_every_sd15_layer_width(lora):
    layers = motion_lora_layers()
    assert len(layers) == 21 * 12  # v2 layout: 21 motion modules x (8 attention + 2 ff + 2 proj)
    q = "down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q"
    assert layers[q] == (640, 640)
    assert layers["up_blocks.0.motion_modules.2.temporal_transformer.transformer_blocks.0.ff.net.0.proj"] == (10240, 1280)
    assert layers["mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.ff.net.2"] == (1280, 5120)
    with pytest.raises(SMAInputError, match=r"tiny\.safetensors: layer 'down_blocks\.0.* is 16 x 16 but 320 x 320"):
        check_sd15_lora(lora, "tiny.safetensors")


def test_apply_node_reader_refuses_a_non_sd15_lora_before_writing_any_copy(tmp_path, lora):
    from sma.lora.ade_files import converted_path, read_for_ade

    foreign = write(tmp_path / "tiny.safetensors", {"unet." + k: v for k, v in lora.items()})  # needs a copy
    with pytest.raises(SMAInputError, match=r"tiny\.safetensors: layer 'down_blocks\.0.* but 320 x 320 in SD1\.5"):
        read_for_ade("tiny.safetensors", foreign, sd15_only=True)
    assert not converted_path(foreign).exists()
    assert read_for_ade("tiny.safetensors", foreign)[0] == "tiny.ade.safetensors"  # the library alone reads it


# --- motion modules and checkpoints -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def motion() -> dict[str, torch.Tensor]:
    return motion_module_state_dict("v3", "tiny", torch.float16, seed=3)


PROJ = "up_blocks.1.motion_modules.1.temporal_transformer.proj_in.weight"


@pytest.mark.parametrize("change, needle", [
    (lambda s: s[PROJ].fill_(float("nan")), f"{PROJ}' holds NaN/inf values"),
    (lambda s: s.__setitem__(PROJ, torch.zeros(64, 65, dtype=torch.float16)), "is [64, 65], expected [64, 64]"),
    (lambda s: s.__setitem__(PROJ, torch.zeros(64, 64, dtype=torch.int16)), "has dtype torch.int16"),
    (lambda s: s.pop(PROJ), f"1 key(s) of a v3 motion module are missing, e.g. '{PROJ}'"),
    (lambda s: s.__setitem__(PROJ.replace("proj_in", "proj_sideways"), s[PROJ]), "unexpected key"),
])
def test_damaged_motion_modules_are_refused_naming_the_key(tmp_path, motion, change, needle):
    state = {k: v.clone() for k, v in motion.items()}
    change(state)
    path = write(tmp_path / "mm.safetensors", state)
    with pytest.raises(SMAInputError) as info:
        load_motion_module(path)
    assert str(info.value).startswith("mm.safetensors: ") and needle in str(info.value), str(info.value)
    loaded, found = load_motion_module(write(tmp_path / "ok.safetensors", motion))
    assert found.family == "v3" and len(loaded) == len(motion)


def test_damaged_checkpoints_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "checkpoint-000002.safetensors",
                           {"lora.a": torch.randn(4, 16), "rng.torch": torch.arange(8, dtype=torch.uint8)},
                           {"step": 2, "history": [{"loss": 1.0}]})
    tensors, state = load_checkpoint(path)
    assert state["step"] == 2 and tensors["lora.a"].shape == (4, 16)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SMAInputError, match=r"checkpoint-000002\.safetensors is damaged .*tensor 'lora.a' was changed"):
        load_checkpoint(path)
    unchecked = {"lora.a": torch.zeros(2)}
    save_file(unchecked, str(tmp_path / "u.safetensors"), metadata={"sma_checkpoint": json.dumps({"format_version": 2})})
    with pytest.raises(SMAInputError, match=r"u\.safetensors is damaged .*'sma_checksums' entry is missing"):
        load_checkpoint(tmp_path / "u.safetensors")
    save_file(unchecked, str(tmp_path / "v1.safetensors"), metadata={"sma_checkpoint": json.dumps({"format_version": 1})})
    assert load_checkpoint(tmp_path / "v1.safetensors")[1]["format_version"] == 1  # written before checksums
    nan = {"lora.a": torch.full((2, 2), float("nan"))}  # checksums match: a diverged run's state, as written
    save_file(nan, str(tmp_path / "n.safetensors"),
              metadata=with_checksums(nan, {"sma_checkpoint": json.dumps({"format_version": 1})}))
    with pytest.raises(SMAInputError, match=r"'lora.a' holds NaN/inf values; resume from an earlier checkpoint"):
        load_checkpoint(tmp_path / "n.safetensors")
    save_file(unchecked, str(tmp_path / "j.safetensors"), metadata=with_checksums(unchecked, {"sma_checkpoint": "{step"}))
    with pytest.raises(SMAInputError, match="is not valid JSON; the checkpoint is damaged"):
        load_checkpoint(tmp_path / "j.safetensors")


def test_spectral_operators_first_built_in_inference_mode_still_train():
    """ComfyUI runs nodes under ``torch.inference_mode``: operators cached there must not break autograd."""
    from sma.loss import SMAConfig, SMALoss

    loss = SMALoss(SMAConfig(sma_mode="plus"))
    with torch.inference_mode():
        loss(torch.zeros(1, 7, 4, 8, 8), torch.zeros(1, 7, 4, 8, 8))  # builds and caches the 7-frame operators
    pred = torch.randn(1, 7, 4, 8, 8, requires_grad=True)
    loss(pred, torch.randn(1, 7, 4, 8, 8)).total.backward()
    assert pred.grad is not None and bool(torch.isfinite(pred.grad).all()) and float(pred.grad.abs().sum()) > 0
