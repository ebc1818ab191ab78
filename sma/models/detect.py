"""Tell which AnimateDiff motion module a state dict holds, from its key names and tensor shapes.

Rules (as AnimateDiff-Evolved decides): HotshotXL names its encodings ``pos_encoder.positional_encoding``;
the highest ``down_blocks`` index is 3 for SD1.5 and 2 for SDXL; an SD1.5 file without any ``pos_encoder``
is AnimateLCM; otherwise a ``mid_block`` means v2, an encoding length of 32 means v3, anything else v1.
The encoding length is read from the ``pos_encoder.pe`` tensors [1, L, C].
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import SMAInputError

Family = Literal["v1", "v2", "v3", "AnimateLCM", "SDXL", "HotshotXL"]
Base = Literal["SD1.5", "SDXL"]

_DOWN_INDEX = re.compile(r"^down_blocks\.(\d+)\.")
_LORA_MARKERS = ("lora", ".down.weight", ".up.weight", ".alpha")
_CHECKPOINT_MARKERS = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner.embedders.")


@dataclass(frozen=True)
class MotionModuleInfo:
    """What a motion-module file is.

    Attributes:
        family: v1, v2, v3, AnimateLCM (SD1.5) or SDXL, HotshotXL.
        base: the image model it is made for.
        pe_length: L of its positional encodings [1, L, C]; None when the file has none (AnimateLCM).
        has_mid_block: whether it has a ``mid_block`` motion module.
    """

    family: Family
    base: Base
    pe_length: int | None
    has_mid_block: bool

    @property
    def group_norms_across_frames(self) -> bool:
        """True for v1: AnimateDiff-Evolved then normalises every UNet GroupNorm across frames."""
        return self.family == "v1"


def _examples(keys: list[str], count: int = 3) -> str:
    return ", ".join(repr(k) for k in keys[:count])


def _refuse_other_files(keys: list[str]) -> None:
    """Raise a precise SMAInputError when the keys are clearly not a motion module."""
    if not keys:
        raise SMAInputError("the state dict is empty; expected an AnimateDiff motion module.")
    lora = [k for k in keys if any(m in k for m in _LORA_MARKERS)]
    if lora:
        raise SMAInputError(
            f"this looks like a LoRA file, not a motion module (keys such as {_examples(lora)}); "
            "load it as a motion LoRA and pick an AnimateDiff motion module (e.g. v3_sd15_mm) as the model."
        )
    checkpoint = [k for k in keys if k.startswith(_CHECKPOINT_MARKERS)]
    if checkpoint:
        raise SMAInputError(
            f"this looks like a full Stable Diffusion checkpoint, not a motion module (keys such as "
            f"{_examples(checkpoint)}); pick it as the base model and an AnimateDiff motion module separately."
        )
    if not any(".motion_modules." in k or ".temporal_attentions." in k for k in keys):
        hint = ""
        if any(".resnets." in k for k in keys):
            hint = " (it looks like a diffusers UNet)"
        elif any(k.startswith(("input_blocks.", "middle_block.", "output_blocks.")) for k in keys):
            hint = " (it looks like a Stable Diffusion UNet)"
        raise SMAInputError(
            f"this is not an AnimateDiff motion module{hint}: no 'motion_modules' keys; found e.g. {_examples(keys)}."
        )
    if not any(".temporal_transformer." in k or ".temporal_attentions." in k for k in keys):
        raise SMAInputError(
            "this motion module is in diffusers MotionAdapter naming (no 'temporal_transformer' keys); "
            "use the original AnimateDiff file (.ckpt/.safetensors as used by AnimateDiff-Evolved)."
        )


def _pe_length(state_dict: dict[str, torch.Tensor]) -> int | None:
    """L of the ``pos_encoder.pe`` tensors [1, L, C]; SMAInputError if they disagree."""
    lengths = {tuple(v.shape)[1] for k, v in state_dict.items() if k.endswith("pos_encoder.pe") and v.ndim == 3}
    if len(lengths) > 1:
        raise SMAInputError(f"the motion module's positional encodings have different lengths {sorted(lengths)}.")
    if not lengths and any(k.endswith("pos_encoder.pe") for k in state_dict):
        raise SMAInputError("the motion module's 'pos_encoder.pe' tensors are not [1, L, C].")
    return lengths.pop() if lengths else None


def detect_motion_module(state_dict: dict[str, torch.Tensor]) -> MotionModuleInfo:
    """Detect the family of an original-naming motion-module state dict (wrapper prefixes already stripped).

    Raises:
        SMAInputError: the dict is not a motion module; says what it looks like instead.
    """
    keys = list(state_dict)
    _refuse_other_files(keys)
    has_mid = any(k.startswith("mid_block.") for k in keys)
    if any(k.endswith("pos_encoder.positional_encoding") for k in keys):
        lengths = {tuple(v.shape)[1] for k, v in state_dict.items() if k.endswith("positional_encoding")}
        return MotionModuleInfo("HotshotXL", "SDXL", max(lengths), has_mid)
    indices = {int(m.group(1)) for k in keys if (m := _DOWN_INDEX.match(k))}
    down_max = max(indices, default=-1)
    if down_max == 2:
        return MotionModuleInfo("SDXL", "SDXL", _pe_length(state_dict), has_mid)
    if down_max != 3:
        raise SMAInputError(
            f"not an SD1.5 or SDXL motion module: the highest down_blocks index is {down_max} (SD1.5 has 3, SDXL 2)."
        )
    if not any("pos_encoder" in k for k in keys):
        return MotionModuleInfo("AnimateLCM", "SD1.5", None, has_mid)
    length = _pe_length(state_dict)
    if has_mid:
        family: Family = "v2"
    else:
        family = "v3" if length == 32 else "v1"
    return MotionModuleInfo(family, "SD1.5", length, has_mid)
