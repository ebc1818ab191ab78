"""Key names of motion LoRA files: the AnimateDiff-Evolved (ADE) layout and the layouts of other trainers.

The ADE layout (what this pack writes; docs/lora-format.md) names each LoRA'd layer by its ORIGINAL
AnimateDiff module path, attention layers through ``processor``::

    down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.to_q_lora.down.weight
    ...attention_blocks.0.processor.to_out_lora.up.weight            (module ...attention_blocks.0.to_out.0)
    ...transformer_blocks.0.ff.net.0.proj_lora.down.weight           (module ...ff.net.0.proj)
    ...transformer_blocks.0.ff.net.2_lora.down.weight                (module ...ff.net.2)
    ...temporal_transformer.proj_in_lora.down.weight                 (module ...temporal_transformer.proj_in)

ADE turns a key into its model key by deleting ``processor.``, ``_lora``, ``down.``/``up.`` and
adding ``.0`` after ``to_out`` (``load_motion_lora_as_patches`` in ADE's ``model_injection.py``).

``parse_lora_key`` reads these other layouts too (where the naming was verified):

- kijai/ComfyUI-ADMotionDirector and ExponentialML/AnimateDiff-MotionDirector
  (``animatediff/utils/lora.py``: ``convert_to_motion_lora_key`` / ``save_lora_safetensors`` with
  ``use_motion_lora_format=True``): original naming with ``processor.`` inserted before the LAST
  name part, e.g. ``...attention_blocks.0.processor.to_q_lora.down.weight``,
  ``...attention_blocks.0.to_out.processor.0_lora.down.weight``,
  ``...ff.net.0.processor.proj_lora.down.weight``, ``...ff.net.processor.2_lora.down.weight``; no alpha,
  scale 1 (``LoraInjectedLinear`` default).
- the same trainers without the motion format (cloneofsimo ``LoraInjectedLinear`` state dict):
  ``...attention_blocks.0.to_q.lora_down.weight`` / ``lora_up``.
- diffusers / peft (``AnimateDiffPipeline.save_lora_weights``; ``unet.`` prefix, diffusers naming):
  ``unet.down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.lora_A.weight`` / ``lora_B``
  (also with a peft adapter name, ``lora_A.default.weight``), scale from the
  ``lora_adapter_metadata`` (``lora_alpha`` / ``r``); the old diffusers attention-processor layout
  ``...attn1.processor.to_q_lora.down.weight`` and ``LoRACompatibleLinear``'s ``...to_q.lora.down.weight``.
- kohya style (``lora_unet_`` + underscores, ``.lora_down/.lora_up`` + ``.alpha``), either naming.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import SMAInputError
from ..models.keys import motion_key_to_diffusers, motion_key_to_original

# A LoRA-able motion-module layer in the ORIGINAL naming.
MOTION_LORA_MODULE = re.compile(
    r"(?:down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.\d+\.temporal_transformer\."
    r"(?:proj_in|proj_out|transformer_blocks\.\d+\.(?:attention_blocks\.\d+\.(?:to_q|to_k|to_v|to_out\.0)"
    r"|ff\.net\.0\.proj|ff\.net\.2))"
)
_ATTENTION_LEAF = re.compile(r"^(?P<parent>.+\.attention_blocks\.\d+)\.(?P<leaf>to_q|to_k|to_v|to_out)(?:\.0)?$")

# (pattern, role map) for the pair-key suffixes of the known layouts; tried in order.
_PAIR_SUFFIXES: tuple[tuple[re.Pattern, dict[str, str]], ...] = (
    (re.compile(r"^(?P<m>.+)\.lora_(?P<r>down|up)\.weight$"), {"down": "down", "up": "up"}),
    (re.compile(r"^(?P<m>.+)\.lora\.(?P<r>down|up)\.weight$"), {"down": "down", "up": "up"}),
    (re.compile(r"^(?P<m>.+)\.lora_linear_layer\.(?P<r>down|up)\.weight$"), {"down": "down", "up": "up"}),
    (re.compile(r"^(?P<m>.+)\.lora_(?P<r>A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$"), {"A": "down", "B": "up"}),
    (re.compile(r"^(?P<m>.+)_lora\.(?P<r>down|up)\.weight$"), {"down": "down", "up": "up"}),
)
_ALPHA_SUFFIX = re.compile(r"^(?P<m>.+?)(?:_lora|\.lora)?\.alpha$")
# Whole-file prefixes other tools put before the module path (stripped repeatedly).
PREFIXES = ("unet.", "base_model.model.", "model.diffusion_model.", "diffusion_model.", "model.", "module.",
            "motion_module.", "_orig_mod.")
KOHYA_PREFIX = "lora_unet_"
# Multi-word names that kohya's underscore flattening splits; rejoined before turning "_" into ".".
_KOHYA_WORDS = ("down_blocks", "up_blocks", "mid_block", "motion_modules", "temporal_transformer",
                "transformer_blocks", "attention_blocks", "pos_encoder", "proj_in", "proj_out", "to_q", "to_k",
                "to_v", "to_out", "ff_norm")


@dataclass(frozen=True)
class LoRAKey:
    """A parsed LoRA key: the layer in ORIGINAL naming and what the tensor is (down, up or alpha)."""

    module: str
    role: str


def ade_lora_key(module: str, role: str) -> str:
    """ADE-layout key of ``role`` ("down" or "up") for an original-naming layer path.

    ``...attention_blocks.0.to_out.0`` -> ``...attention_blocks.0.processor.to_out_lora.{role}.weight``;
    ``...ff.net.2`` -> ``...ff.net.2_lora.{role}.weight``.

    Raises:
        SMAInputError: ``module`` is not a LoRA-able motion-module layer.
    """
    if role not in ("down", "up"):
        raise ValueError(f"role must be 'down' or 'up', got {role!r}")
    if not MOTION_LORA_MODULE.fullmatch(module):
        raise SMAInputError(f"{module!r} is not a LoRA-able motion-module layer (original naming).")
    attention = _ATTENTION_LEAF.match(module)
    if attention is not None:
        return f"{attention['parent']}.processor.{attention['leaf']}_lora.{role}.weight"
    return f"{module}_lora.{role}.weight"


def _kohya_to_dotted(name: str) -> str:
    """``down_blocks_0_motion_modules_0_..._to_out_0`` -> ``down_blocks.0.motion_modules.0...to_out.0``."""
    parts = name.split("_")
    words: list[str] = []
    i = 0
    while i < len(parts):
        for width in (2, 1):
            candidate = "_".join(parts[i:i + width])
            if width == 1 or candidate in _KOHYA_WORDS:
                words.append(candidate)
                i += width
                break
    return ".".join(words)


def _strip_prefixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    if name.startswith(KOHYA_PREFIX):
        name = _kohya_to_dotted(name[len(KOHYA_PREFIX):])
    return name


def canonical_module(path: str) -> str | None:
    """Original-naming LoRA-able layer for a layer path of any known layout, or None.

    Removes ``processor`` parts and known prefixes, adds ``.0`` after ``to_out``, converts diffusers
    naming (``attn1``, no ``temporal_transformer``) to the original naming.
    """
    path = _strip_prefixes(path).replace(".processor.", ".")
    if path.endswith(".to_out"):
        path += ".0"
    if ".motion_modules." in path and ".temporal_transformer" not in path:
        try:
            path = motion_key_to_original(path)
        except SMAInputError:
            return None
    return path if MOTION_LORA_MODULE.fullmatch(path) else None


def parse_lora_key(key: str) -> LoRAKey | None:
    """Parse one key of a motion LoRA file of any known layout; None when it is not a motion LoRA key."""
    for pattern, roles in _PAIR_SUFFIXES:
        match = pattern.match(key)
        if match is not None:
            module = canonical_module(match["m"])
            return None if module is None else LoRAKey(module, roles[match["r"]])
    match = _ALPHA_SUFFIX.match(key)
    if match is not None:
        module = canonical_module(match["m"])
        return None if module is None else LoRAKey(module, "alpha")
    return None


def diffusers_module(module: str) -> str:
    """Diffusers (``UNetMotionModel`` / ``MotionAdapter``) name of an original-naming layer path."""
    return motion_key_to_diffusers(module)


def original_module(name: str) -> str:
    """Original-naming path of a diffusers motion-module layer name.

    Raises:
        SMAInputError: ``name`` is not a LoRA-able motion-module layer (e.g. a spatial layer).
    """
    module = motion_key_to_original(name) if ".motion_modules." in name else name
    if not MOTION_LORA_MODULE.fullmatch(module):
        raise SMAInputError(
            f"layer {name!r} is not in a motion module; an AnimateDiff motion LoRA can only hold "
            "motion-module layers (attention, ff, proj_in/proj_out)."
        )
    return module
