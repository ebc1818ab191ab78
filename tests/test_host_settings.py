"""The node's inputs that are training settings carry the setting's name, default and bounds (read from the
real node schemas inside ComfyUI); ``tests/test_settings.py`` walks the config, the command line and the
metadata."""
from __future__ import annotations

from sma.training import DEFAULTS
from sma.training.config import SETTINGS, limit, to_interface

NODE_SETTINGS = ("SMA_TrainMotionLoRA", "SMA_LossOptions", "SMA_MotionOptions")


def test_each_node_input_that_is_a_setting_has_its_name_default_and_bounds(comfy_host):
    seen = set()
    for node_id in NODE_SETTINGS:
        declared = comfy_host.nodes.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
        inputs = {**declared.get("required", {}), **declared.get("optional", {})}
        for name, spec in inputs.items():
            if name not in SETTINGS:
                continue
            seen.add(name)
            kind, options = spec[0], spec[1] if len(spec) > 1 else {}
            bound = limit(name)
            if isinstance(kind, (list, tuple)) or kind == "COMBO":
                choices = kind if isinstance(kind, (list, tuple)) else options["options"]
                if bound is not None and bound.choices is not None:
                    assert list(choices) == list(bound.choices), name
            elif kind in ("INT", "FLOAT"):
                assert options["min"] == (0 if bound.optional else bound.low), name
                assert options["max"] == (bound.high if bound.high is not None else bound.below), name
            else:
                assert kind in ("BOOLEAN", "STRING"), (name, kind)
            if name not in ("checkpoint_every", "preview_every"):  # the node checkpoints and previews by default
                expected = to_interface(name, DEFAULTS[name])
                expected = ",".join(map(str, expected)) if isinstance(expected, list) else expected
                assert options["default"] == expected, name
    assert {"steps", "learning_rate", "rank", "sma_mode", "wavelet_levels", "seed", "snr_gamma", "weight_delta",
            "phase_loss", "wavelet_mode", "level_weights", "validation_every", "targets", "appearance_augment",
            "gradient_share_every", "objective"} <= seen
