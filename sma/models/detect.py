"""Tell which AnimateDiff motion module a state dict holds, from its key names and tensor shapes.

Rules (as AnimateDiff-Evolved decides) are the detection facts of :mod:`sma.models.families`: the number
of ``down_blocks`` tells the base (SD1.5: 4, SDXL: 3); HotshotXL names its encodings
``pos_encoder.positional_encoding``; an SD1.5 file without any ``pos_encoder`` is AnimateLCM; otherwise a
``mid_block`` means v2, an encoding length of 32 means v3, anything else v1. The encoding length is read
from the ``pos_encoder.pe`` tensors [1, L, C].
"""

from __future__ import annotations

import re
from dataclasses import dataclass
import torch

from ..errors import SMAInputError, key_examples
from .families import POS_ENCODER, family_spec, identify_family, registered_pe_keys

_DOWN_INDEX = re.compile(r"^down_blocks\.(\d+)\.")
_LORA_MARKERS = ("lora", ".down.weight", ".up.weight", ".alpha")
_CHECKPOINT_MARKERS = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner.embedders.")


@dataclass(frozen=True)
class MotionModuleInfo:
    """What a motion-module file is.

    Attributes:
        family: its :class:`~sma.models.families.FamilySpec` name (v1, v2, v3, AnimateLCM; SDXL, HotshotXL).
        base: the image model it is made for (a :class:`~sma.models.families.BaseSpec` name).
        pe_length: L of its positional encodings [1, L, C]; None when the file has none (AnimateLCM).
        has_mid_block: whether it has a ``mid_block`` motion module.
    """

    family: str
    base: str
    pe_length: int | None
    has_mid_block: bool

    @property
    def group_norms_across_frames(self) -> bool:
        """True for v1: AnimateDiff-Evolved then normalises every UNet GroupNorm across frames."""
        return family_spec(self.family).group_norms == "across_frames"


def _refuse_other_files(keys: list[str]) -> None:
    """Raise a precise SMAInputError when the keys are clearly not a motion module."""
    if not keys:
        raise SMAInputError("the state dict is empty; expected an AnimateDiff motion module.")
    lora = [k for k in keys if any(m in k for m in _LORA_MARKERS)]
    if lora:
        raise SMAInputError(
            f"this looks like a LoRA file, not a motion module (keys such as {key_examples(lora)}); "
            "load it as a motion LoRA and pick an AnimateDiff motion module (e.g. v3_sd15_mm) as the model."
        )
    checkpoint = [k for k in keys if k.startswith(_CHECKPOINT_MARKERS)]
    if checkpoint:
        raise SMAInputError(
            f"this looks like a full Stable Diffusion checkpoint, not a motion module (keys such as "
            f"{key_examples(checkpoint)}); pick it as the base model and an AnimateDiff motion module separately."
        )
    if not any(".motion_modules." in k or ".temporal_attentions." in k for k in keys):
        hint = ""
        if any(".resnets." in k for k in keys):
            hint = " (it looks like a diffusers UNet)"
        elif any(k.startswith(("input_blocks.", "middle_block.", "output_blocks.")) for k in keys):
            hint = " (it looks like a Stable Diffusion UNet)"
        raise SMAInputError(
            f"this is not an AnimateDiff motion module{hint}: no 'motion_modules' keys; found e.g. {key_examples(keys)}."
        )
    if not any(".temporal_transformer." in k or ".temporal_attentions." in k for k in keys):
        raise SMAInputError(
            "this motion module is in diffusers MotionAdapter naming (no 'temporal_transformer' keys); "
            "use the original AnimateDiff file (.ckpt/.safetensors as used by AnimateDiff-Evolved)."
        )


def _pe_length(state_dict: dict[str, torch.Tensor], pe_key: str) -> int | None:
    """L of the ``<pe_key>`` tensors [1, L, C] (None when there are none); SMAInputError if they disagree."""
    lengths = {tuple(v.shape)[1] for k, v in state_dict.items() if k.endswith(pe_key) and v.ndim == 3}
    if len(lengths) > 1:
        raise SMAInputError(f"the motion module's positional encodings have different lengths {sorted(lengths)}.")
    if not lengths and any(k.endswith(pe_key) for k in state_dict):
        raise SMAInputError(f"the motion module's {pe_key!r} tensors are not [1, L, C].")
    return lengths.pop() if lengths else None


def detect_motion_module(state_dict: dict[str, torch.Tensor]) -> MotionModuleInfo:
    """Detect the family of an original-naming motion-module state dict (wrapper prefixes already stripped).

    Raises:
        SMAInputError: the dict is not a motion module; says what it looks like instead.
    """
    keys = list(state_dict)
    _refuse_other_files(keys)
    has_mid = any(k.startswith("mid_block.") for k in keys)
    down_blocks = 1 + max((int(m.group(1)) for k in keys if (m := _DOWN_INDEX.match(k))), default=-1)
    lengths = {pe_key: _pe_length(state_dict, pe_key) for pe_key in registered_pe_keys()
               if any(k.endswith(pe_key) for k in keys)}
    spec = identify_family(down_blocks, has_mid, lengths, any(POS_ENCODER in k for k in keys))
    return MotionModuleInfo(spec.name, spec.base, lengths.get(spec.detect.pe_key), has_mid)
