"""The toy base shipped with the pack: its files load through the pack's model builder, and its samples pass
the quality checks (recognisable, moving like the training clips, coherent only with the motion module)."""
from __future__ import annotations

import pytest
import torch

from sma.errors import SMAInputError
from sma.models.detect import detect_motion_module
from sma.toyworld.base import (
    MOTION_FILE,
    UNET_FILE,
    WEIGHTS_DIR,
    base_files,
    base_record,
    load_base,
    new_base,
    save_base,
)
from sma.toyworld.quality import check_base

QUALITY_CLIPS = 7
QUALITY_STEPS = 10


@pytest.fixture(scope="module")
def base():
    torch.set_num_threads(1)
    return load_base()


def test_shipped_files_are_small_and_recorded():
    unet, motion = base_files()
    assert unet == WEIGHTS_DIR / UNET_FILE and motion == WEIGHTS_DIR / MOTION_FILE
    assert unet.stat().st_size + motion.stat().st_size < 20e6
    record = base_record()
    assert record["prediction_type"] == "v_prediction" and record["wall_seconds"] > 0
    assert record["quality"]["passed"] is True
    assert {"steps", "batch", "lr", "seed"} <= set(record["settings"])


def test_motion_file_is_an_animatediff_v3_module():
    from safetensors.torch import load_file

    info = detect_motion_module(load_file(str(base_files()[1])))
    assert info.family == "v3" and not info.has_mid_block


def test_committed_base_passes_its_quality_checks(base):
    report = check_base(base, clips=QUALITY_CLIPS, steps=QUALITY_STEPS, seed=2)
    print(report.summary())
    assert report.recognisable, report.summary()
    assert report.moving, report.summary()
    assert report.motion_module_matters, report.summary()


def test_an_untrained_base_fails_them():
    report = check_base(new_base(0), clips=3, steps=4, seed=2)
    assert not report.passed


def test_save_and_load_round_trip(tmp_path):
    model = new_base(3)
    save_base(model, tmp_path, {"note": "test"}, dtype=torch.float32)
    loaded = load_base(tmp_path)
    state, again = model.state_dict(), loaded.state_dict()
    assert set(state) == set(again)
    assert all(torch.equal(state[k], again[k]) for k in state)
    assert base_record(tmp_path) == {"note": "test"}


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(SMAInputError, match="pretrain_toy_base.py"):
        load_base(tmp_path)


def test_pretraining_uses_the_training_schedule_and_learns(tmp_path):
    """Pretraining's learning rate: the training package's warm-up, then cosine to a tenth; a short run on a small
    pool lowers the v-prediction loss and records what it ran."""
    from sma.toyworld.pretrain import LR_FLOOR, PretrainConfig, _lr_factor, pretrain

    config = PretrainConfig(steps=100, warmup=10)
    factors = [_lr_factor(step, config) for step in range(101)]
    assert factors[0] == pytest.approx(1 / 11) and factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(LR_FLOOR + (1 - LR_FLOOR) / 2) and factors[100] == pytest.approx(LR_FLOOR)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    run = PretrainConfig(steps=30, batch=2, pool=8, frames=4, lr=2e-3, seed=1)
    model, record = pretrain(run, log=lambda line: None, log_every=1000)
    first, last = record["loss_first_last"]
    assert last < first, record["loss_first_last"]
    assert record["settings"]["steps"] == 30 and not model.training
