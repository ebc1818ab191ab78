"""Property tests (hypothesis): any user input either validates or raises the pack's ``SMAInputError``.

- output names -> paths: every accepted name lands directly inside its folder, also when the folder holds
  symlinks that point elsewhere (a name that would follow one is refused);
- ``VideoOptions``, ``SMAConfig`` and ``TrainConfig``: hostile values (NaN, inf, negative, huge, wrong
  types, unknown choices) of every field; an accepted config holds only values in their documented range.

Seeded (``derandomize``) and bounded, so CI runs the same examples every time in a few seconds.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sma.errors import SMAInputError
from sma.loss import SMAConfig
from sma.paths import MAX_NAME_LENGTH, safe_output_path, sanitize_file_stem
from sma.training import TrainConfig
from sma.video import VideoOptions

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HOSTILE_NAMES = st.sampled_from([
    "../evil", "..", ".", "/etc/passwd", "..\\..\\win", "a/../../b", "~/x", "CON", "nul.safetensors", "\x00",
    "link", "link.safetensors", "dirlink/x", "dirlink", " .hidden", "a" * 500, "motion\u202e.txt", "\u2215etc",
    "ｃｏｎ", "x.safetensors.safetensors", "-", "_", "..safetensors"])
NAMES = st.one_of(HOSTILE_NAMES, st.text(max_size=80), st.text(alphabet="./\\_ -.~:abcCONnul0", max_size=24))

NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.floats(-1e3, 1e3), st.just(10**30), st.just(1e308))
ANY_SCALAR = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(max_size=6), st.sampled_from(["1", "nan", "0x10"]))


@pytest.fixture(scope="module")
def output_folder(tmp_path_factory) -> Path:
    """A folder whose entries point outside it: a symlinked file, a symlinked folder, a dangling link."""
    base = tmp_path_factory.mktemp("names")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.safetensors").write_bytes(b"keep")
    folder = base / "loras"
    folder.mkdir()
    (folder / "link.safetensors").symlink_to(outside / "secret.safetensors")
    (folder / "dirlink").symlink_to(outside, target_is_directory=True)
    (folder / "dangling.safetensors").symlink_to(base / "nowhere.safetensors")
    return folder


@SETTINGS
@given(name=NAMES)
def test_output_names_never_leave_the_folder(output_folder, name):
    root = output_folder.resolve()
    try:
        path = safe_output_path(output_folder, name)
    except SMAInputError:
        return
    assert path.parent == root and path.suffix == ".safetensors"
    assert path.name == sanitize_file_stem(name) + ".safetensors"
    assert not path.name.startswith(".") and len(path.stem) <= MAX_NAME_LENGTH
    assert os.path.realpath(path) == str(path)  # never through a symlink
    assert not path.is_symlink()


def test_symlinked_names_are_refused(output_folder):
    for name in ("link", "link.safetensors", "dangling"):
        with pytest.raises(SMAInputError, match="would leave the folder"):
            safe_output_path(output_folder, name)
    assert safe_output_path(output_folder, "dirlink/x") == output_folder.resolve() / "x.safetensors"


@SETTINGS
@given(values=st.fixed_dictionaries({}, optional={name: ANY_SCALAR for name in (
    "frame_load_cap", "skip_first_frames", "select_every_nth", "force_rate", "width", "height")}))
def test_video_options_validate_or_refuse(values):
    try:
        options = VideoOptions(**values)
    except SMAInputError:
        return
    for name in ("frame_load_cap", "skip_first_frames", "select_every_nth", "width", "height"):
        value = getattr(options, name)
        assert type(value) is int and value >= (1 if name == "select_every_nth" else 0)
    assert type(options.force_rate) is float and math.isfinite(options.force_rate) and options.force_rate >= 0


SMA_FIELDS = {
    "sma_mode": st.one_of(st.sampled_from(["paper", "plus", "off", "PLUS", ""]), ANY_SCALAR),
    "lambda_global": ANY_SCALAR, "lambda_local": ANY_SCALAR, "wavelet_levels": ANY_SCALAR,
    "level_weights": st.one_of(st.none(), st.lists(ANY_SCALAR, max_size=6)),
    "wavelet": st.one_of(st.sampled_from(["haar", "db2", "sym4", "morl", "cmor1.5-1.0", "Haar"]), ANY_SCALAR),
    "wavelet_mode": st.one_of(st.sampled_from(["zero", "symmetric", "periodization", "reflect", "bogus"]), ANY_SCALAR),
    "weight_delta": ANY_SCALAR, "weight_base": ANY_SCALAR, "weight_sharpness": ANY_SCALAR, "snr_gamma": ANY_SCALAR,
    "phase_loss": st.one_of(st.sampled_from(["wrap", "raw", "cos"]), ANY_SCALAR),
}


def finite_number(value, low: float, strict: bool = False) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (value > low if strict else value >= low))


@SETTINGS
@given(values=st.fixed_dictionaries({}, optional=SMA_FIELDS))
def test_sma_config_validates_or_refuses(values):
    try:
        config = SMAConfig(**values)
    except SMAInputError:
        return
    assert config.sma_mode in ("paper", "plus", "off")
    assert finite_number(config.lambda_global, 0) and finite_number(config.lambda_local, 0)
    assert config.wavelet_levels is None or (type(config.wavelet_levels) is int and config.wavelet_levels >= 1)
    if config.level_weights is not None:
        assert all(finite_number(w, 0) for w in config.level_weights)
    assert finite_number(config.weight_delta, 0, strict=True) and finite_number(config.weight_base, 0)
    assert config.snr_gamma is None or finite_number(config.snr_gamma, 0, strict=True)


TRAIN_FIELDS = {
    **{name: ANY_SCALAR for name in (
        "steps", "learning_rate", "spatial_learning_rate", "rank", "alpha", "spatial_rank", "spatial_skip_prob",
        "lambda_global", "lambda_local", "wavelet_levels", "debias_weight", "debias_beta", "seed", "timestep_min",
        "timestep_max", "window", "clips_per_step", "grad_accum", "max_grad_norm", "weight_decay", "warmup_steps",
        "attention_slice", "checkpoint_every", "keep_checkpoints", "preview_every", "weight_delta", "snr_gamma",
        "validation_every", "validation_steps", "validation_guidance", "validation_seed")},
    "targets": st.lists(st.one_of(st.sampled_from(["attention", "ff", "proj", "spatial"]), ANY_SCALAR), max_size=4),
    "sma_mode": st.one_of(st.sampled_from(["paper", "plus", "off", "fast"]), ANY_SCALAR),
    "optimizer": st.one_of(st.sampled_from(["adamw", "adamw8bit", "sgd"]), ANY_SCALAR),
    "lr_schedule": st.one_of(st.sampled_from(["constant", "cosine", "linear"]), ANY_SCALAR),
    "precision": st.one_of(st.sampled_from(["auto", "fp32", "fp16", "bf16", "fp8"]), ANY_SCALAR),
    "checkpoint_dir": st.one_of(st.none(), st.just("ckpt"), ANY_SCALAR),
    "spatial_path": st.one_of(st.booleans(), ANY_SCALAR),
    "keep_spatial": st.one_of(st.booleans(), ANY_SCALAR),
    "gradient_checkpointing": st.one_of(st.booleans(), ANY_SCALAR),
}


@SETTINGS
@given(values=st.fixed_dictionaries({}, optional=TRAIN_FIELDS))
def test_train_config_validates_or_refuses(values):
    try:
        config = TrainConfig.from_flat(**values)
    except SMAInputError:
        return
    flat = config.flat()
    for name in ("steps", "clips_per_step", "grad_accum", "keep_checkpoints", "validation_steps"):
        assert type(flat[name]) is int and flat[name] >= 1
    assert type(flat["rank"]) is int and 1 <= flat["rank"] <= 1024
    assert finite_number(flat["learning_rate"], 0, strict=True)
    assert finite_number(flat["spatial_learning_rate"], 0, strict=True)
    assert finite_number(flat["spatial_skip_prob"], 0) and flat["spatial_skip_prob"] < 1
    assert 0 <= flat["timestep_min"] <= flat["timestep_max"]
    assert flat["window"] is None or flat["window"] >= 2
    assert "attention" in flat["targets"] and set(flat["targets"]) <= {"attention", "ff", "proj"}
    assert finite_number(flat["lambda_global"], 0) and flat["sma_mode"] in ("paper", "plus", "off")
    assert all(type(flat[name]) is bool for name in ("spatial_path", "keep_spatial", "gradient_checkpointing"))
    assert flat["checkpoint_every"] == 0 or flat["checkpoint_dir"]
    assert TrainConfig.from_dict(config.to_dict()) == config  # what a checkpoint stores reads back equal
