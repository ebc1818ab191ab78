"""Every training setting has one name and one set of bounds: the config's field, the command line's flag
and the LoRA file's metadata key, walked here setting by setting (the node's inputs: ``test_host_settings.py``)."""
from __future__ import annotations

import argparse
from dataclasses import fields

import pytest
import torch

from sma.cli.arguments import CONFIG_OPTIONS, SWITCHES, flag
from sma.cli import build_parser
from sma.lora import load_motion_lora, save_motion_lora
from sma.models.build import make_noise_scheduler, tiny_motion_unet
from sma.training import DEFAULTS, TrainConfig, Trainer, TrainingClip
from sma.training.config import (
    METADATA_OMITS,
    SECTIONS,
    SETTINGS,
    from_interface,
    limit,
    to_interface,
)

NOT_ON_THE_COMMAND_LINE = {"checkpoint_dir": "<out stem>_checkpoints/", "keep_spatial": "the CLI writes the motion LoRA"}
"""Settings the command line sets itself (with the reason)."""


def train_options() -> dict[str, argparse.Action]:
    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    return {action.dest: action for action in train._actions}


def test_each_setting_is_one_field_of_one_section():
    owners = {}
    for section, kind in SECTIONS.items():
        for f in fields(kind):
            assert f.name not in owners, f"{f.name} is in {owners[f.name]} and {section}"
            owners[f.name] = section
    assert owners == SETTINGS and list(TrainConfig().flat()) == list(SETTINGS) == list(DEFAULTS)
    config = TrainConfig()
    for name, section in SETTINGS.items():
        assert config.setting(name) == getattr(getattr(config, section), name)


def test_each_setting_is_a_command_line_flag_of_the_same_name_and_bounds():
    options = train_options()
    on_cli = {name for name, *_ in CONFIG_OPTIONS} | {name for name, _ in SWITCHES}
    assert on_cli <= set(SETTINGS)
    assert set(SETTINGS) - on_cli == set(NOT_ON_THE_COMMAND_LINE)
    for name in on_cli:
        action = options[name]
        switch = name in {n for n, _ in SWITCHES}
        assert action.option_strings == [flag(name, "--no-" if switch else "--")], action.option_strings
        bound = limit(name)
        assert action.choices == (bound.choices if bound is not None and bound.choices else None), name


@pytest.mark.parametrize("name", sorted(n for n in SETTINGS if limit(n) is not None and limit(n).optional))
def test_zero_on_the_node_and_the_command_line_is_none_in_the_library(name):
    shown = to_interface(name, None)
    assert from_interface({name: shown}) == {name: None}
    assert to_interface(name, DEFAULTS[name]) == (DEFAULTS[name] if DEFAULTS[name] is not None else shown)


def test_each_setting_reaches_the_lora_metadata_under_its_name(tmp_path):
    changed = {"steps": 2, "rank": 2, "alpha": 1.0, "learning_rate": 2e-3, "sma_mode": "paper", "lambda_local": 0.3,
               "wavelet_levels": 2, "weight_delta": 0.1, "snr_gamma": None, "window": 6, "timestep_min": 100,
               "spatial_rank": 3, "gradient_checkpointing": False, "validation_seed": 4, "keep_spatial": True}
    config = TrainConfig.from_flat(changed)
    g = torch.Generator().manual_seed(0)
    clip = TrainingClip(torch.randn(8, 4, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g))
    result = Trainer(tiny_motion_unet("v3", seed=0), [clip], make_noise_scheduler(), config).run()
    _, metadata = load_motion_lora(save_motion_lora(tmp_path / "m.safetensors", result.lora_state, result.metadata))
    for name in SETTINGS:
        if name in METADATA_OMITS:
            assert name not in metadata
        else:
            assert metadata[name] == config.flat()[name], name
    assert metadata["steps_done"] == 2 and metadata["frames"] == 6  # facts beside the settings
