"""Key names of AnimateDiff motion modules: original naming <-> diffusers naming.

ORIGINAL naming is what the AnimateDiff ``.ckpt`` / ``.safetensors`` files and AnimateDiff-Evolved use::

    down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight
    down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe
    mid_block.motion_modules.0.temporal_transformer.norm.weight

DIFFUSERS naming is what ``MotionAdapter`` and ``UNetMotionModel`` use; the motion-module keys are the
same in both (a ``UNetMotionModel`` also holds the spatial UNet keys beside them)::

    down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight
    down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe
    mid_block.motion_modules.0.norm.weight

The renames: drop ``temporal_transformer.`` after ``motion_modules.{j}``; inside ``transformer_blocks.{k}``
``attention_blocks.0/1`` <-> ``attn1/attn2``, ``norms.0/1`` <-> ``norm1/norm2``, ``ff_norm`` <-> ``norm3``.
Everything else (``norm``, ``proj_in``, ``proj_out``, ``to_out.0``, ``ff.net.0.proj``, ``ff.net.2``) keeps its name.

Positional encodings are the one many-to-one case: an original block has one ``pe`` per attention block
(``attention_blocks.{0,1}.pos_encoder.pe``, equal in every known file), diffusers has a single
``transformer_blocks.{k}.pos_embed.pe`` used before both attentions. The key functions map both
original names to ``pos_embed.pe`` and ``pos_embed.pe`` back to ``attention_blocks.0``; use the state-dict
functions below, which check the two are equal and write both back.

The functions work on parameter keys and on module paths alike (``...attn1.to_q`` <->
``...attention_blocks.0.to_q``), so LoRA code can reuse them.
"""

from __future__ import annotations

import re

import torch

from ..errors import SMAInputError

# `<block>.motion_modules.<j>.` where block is down_blocks.<i>, up_blocks.<i> or mid_block.
_MODULE_ORIGINAL = re.compile(
    r"^((?:down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.\d+)\.temporal_transformer(\.|$)"
)
_MODULE_DIFFUSERS = re.compile(r"^((?:down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.\d+)(\.|$)")
_BLOCK = re.compile(r"^(transformer_blocks\.\d+)\.(.*)$")
_PE_ORIGINAL = re.compile(r"^attention_blocks\.[01]\.pos_encoder\.pe$")

# Names directly inside `transformer_blocks.<k>.`: (original, diffusers).
_BLOCK_RENAMES = (
    ("attention_blocks.0", "attn1"),
    ("attention_blocks.1", "attn2"),
    ("norms.0", "norm1"),
    ("norms.1", "norm2"),
    ("ff_norm", "norm3"),
)
PE_DIFFUSERS = "pos_embed.pe"
PE_ORIGINAL = "pos_encoder.pe"
_WRAPPERS = ("module.", "_orig_mod.")
_BLOCK_START = re.compile(r"(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.")


def _rename_head(rest: str, table: tuple[tuple[str, str], ...]) -> str:
    """Rename the leading dotted name of ``rest`` by ``table`` (pairs of old, new)."""
    for old, new in table:
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def motion_key_to_diffusers(key: str) -> str:
    """Map one original motion-module key (or module path) to its diffusers name.

    Raises:
        SMAInputError: ``key`` is not a motion-module key in the original naming.
    """
    match = _MODULE_ORIGINAL.match(key)
    if match is None:
        raise SMAInputError(
            f"{key!r} is not an AnimateDiff motion-module key in the original naming; expected "
            "'{down_blocks.i|up_blocks.i|mid_block}.motion_modules.j.temporal_transformer...'."
        )
    head, rest = match.group(1), key[match.end():]
    if not rest:
        return head
    block = _BLOCK.match(rest)
    if block is None:
        return f"{head}.{rest}"
    inner = block.group(2)
    if _PE_ORIGINAL.match(inner):
        inner = PE_DIFFUSERS
    else:
        inner = _rename_head(inner, _BLOCK_RENAMES)
    return f"{head}.{block.group(1)}.{inner}"


def motion_key_to_original(key: str) -> str:
    """Map one diffusers motion-module key (or module path) to its original name.

    ``...transformer_blocks.k.pos_embed.pe`` maps to ``...attention_blocks.0.pos_encoder.pe``; see
    :func:`original_pe_keys` for both original names.

    Raises:
        SMAInputError: ``key`` is not a motion-module key in the diffusers naming.
    """
    match = _MODULE_DIFFUSERS.match(key)
    if match is None or key[match.end():].startswith("temporal_transformer"):
        raise SMAInputError(
            f"{key!r} is not an AnimateDiff motion-module key in the diffusers naming; expected "
            "'{down_blocks.i|up_blocks.i|mid_block}.motion_modules.j...' without 'temporal_transformer'."
        )
    head, rest = match.group(1), key[match.end():]
    if not rest:
        return f"{head}.temporal_transformer"
    block = _BLOCK.match(rest)
    if block is None:
        return f"{head}.temporal_transformer.{rest}"
    inner = block.group(2)
    if inner == PE_DIFFUSERS:
        inner = f"attention_blocks.0.{PE_ORIGINAL}"
    else:
        inner = _rename_head(inner, tuple((new, old) for old, new in _BLOCK_RENAMES))
    return f"{head}.temporal_transformer.{block.group(1)}.{inner}"


def original_pe_keys(diffusers_pe_key: str) -> tuple[str, str]:
    """Both original names (attention blocks 0 and 1) of a diffusers ``...pos_embed.pe`` key."""
    first = motion_key_to_original(diffusers_pe_key)
    if not first.endswith(f"attention_blocks.0.{PE_ORIGINAL}"):
        raise SMAInputError(f"{diffusers_pe_key!r} is not a positional-encoding key ('...{PE_DIFFUSERS}').")
    return first, first.replace(f"attention_blocks.0.{PE_ORIGINAL}", f"attention_blocks.1.{PE_ORIGINAL}")


def motion_state_dict_to_diffusers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original-naming motion-module state dict to diffusers names (tensors are shared, not copied).

    The two ``pos_encoder.pe`` tensors of a block become one ``pos_embed.pe``; they must be equal.

    Raises:
        SMAInputError: a key is not a motion-module key, or the two encodings of a block differ.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = motion_key_to_diffusers(key)
        if new in out:
            if not new.endswith(PE_DIFFUSERS):
                raise SMAInputError(f"two keys of the motion module map to {new!r}; the file is malformed.")
            same = out[new].shape == value.shape and (value.is_meta or torch.equal(out[new], value))
            if not same:
                raise SMAInputError(
                    f"the two positional encodings of {new.rsplit('.transformer_blocks', 1)[0]} differ "
                    "(attention_blocks.0 vs .1); only motion modules with equal encodings are supported."
                )
            continue
        out[new] = value
    return out


def motion_state_dict_to_original(
    state_dict: dict[str, torch.Tensor], *, with_pe: bool = True
) -> dict[str, torch.Tensor]:
    """Rename a diffusers-naming motion-module state dict to the original naming (tensors shared).

    Each ``pos_embed.pe`` is written to both attention blocks (the second as a copy); ``with_pe=False``
    leaves encodings out (AnimateLCM files carry none). Keys outside motion modules (spatial UNet keys of a
    ``UNetMotionModel``) are skipped, so ``unet_motion_model.state_dict()`` can be passed as it is.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if ".motion_modules." not in key:
            continue
        if key.endswith(PE_DIFFUSERS):
            if with_pe:
                first, second = original_pe_keys(key)
                out[first], out[second] = value, value.clone()  # own storage: safetensors refuses shared tensors
            continue
        out[motion_key_to_original(key)] = value
    return out


def strip_wrapper_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a harmless wrapper prefix shared by all keys (``module.``, ``_orig_mod.``, repeated).

    A motion module under another prefix (``unet.``, ``lora_unet_``, ``model.diffusion_model.``,
    ``motion_module.``...) is refused instead of loading as nothing.

    Raises:
        SMAInputError: motion-module keys start with something other than
            ``down_blocks.`` / ``mid_block.`` / ``up_blocks.``.
    """
    out = dict(state_dict)
    stripped = True
    while stripped and out:
        stripped = False
        for wrapper in _WRAPPERS:
            if all(k.startswith(wrapper) for k in out):
                out = {k[len(wrapper):]: v for k, v in out.items()}
                stripped = True
    for key in out:
        found = _BLOCK_START.search(key)
        if found is not None and found.start() > 0:
            prefix = key[: found.start()]
            raise SMAInputError(
                f"the motion-module keys carry the prefix {prefix!r} (e.g. {key!r}); AnimateDiff files name "
                "them from 'down_blocks.', 'mid_block.' or 'up_blocks.' with no prefix. Save the file "
                f"without {prefix!r}: with it, AnimateDiff-Evolved would load nothing."
            )
    return out
