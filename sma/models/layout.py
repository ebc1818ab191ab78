"""Key names and shapes of original-naming AnimateDiff motion modules, enumerated from the architecture.

This is written from the structure of the original motion module (what AnimateDiff-Evolved builds), not
derived from diffusers, so tests can check diffusers' converter and ``MotionAdapter`` against it.
Per module (channels C): a GroupNorm, ``proj_in``/``proj_out`` C->C, one transformer block with two
temporal self-attention blocks (q/k/v without bias, ``to_out.0`` with bias, sinusoidal ``pos_encoder.pe``
[1, L, C]), two LayerNorms ``norms.0/1``, a GEGLU feed-forward (C -> 8C -> split -> 4C -> C) and ``ff_norm``.
Down blocks hold ``layers`` modules, up blocks ``layers + 1``, the optional mid block one.
"""

from __future__ import annotations

import math

import torch


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """Sinusoidal positional encoding [1, length, dim] (fp32): even channels sin, odd channels cos.

    Channel pair i at position p uses the angle p / 10000^(2i / dim).
    """
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, length, dim)
    table[0, :, 0::2] = torch.sin(position * frequency)
    table[0, :, 1::2] = torch.cos(position * frequency)
    return table


def _module_layout(prefix: str, channels: int, pe_length: int | None) -> dict[str, tuple[int, ...]]:
    """Keys -> shapes of one ``VanillaTemporalModule`` at ``prefix`` (``...motion_modules.j``)."""
    c = channels
    t = f"{prefix}.temporal_transformer"
    b = f"{t}.transformer_blocks.0"
    layout: dict[str, tuple[int, ...]] = {f"{t}.norm.weight": (c,), f"{t}.norm.bias": (c,),
                                          f"{t}.proj_in.weight": (c, c), f"{t}.proj_in.bias": (c,)}
    for a in (0, 1):
        for proj in ("to_q", "to_k", "to_v"):
            layout[f"{b}.attention_blocks.{a}.{proj}.weight"] = (c, c)
        layout[f"{b}.attention_blocks.{a}.to_out.0.weight"] = (c, c)
        layout[f"{b}.attention_blocks.{a}.to_out.0.bias"] = (c,)
        if pe_length is not None:
            layout[f"{b}.attention_blocks.{a}.pos_encoder.pe"] = (1, pe_length, c)
        layout[f"{b}.norms.{a}.weight"] = (c,)
        layout[f"{b}.norms.{a}.bias"] = (c,)
    layout.update({f"{b}.ff.net.0.proj.weight": (8 * c, c), f"{b}.ff.net.0.proj.bias": (8 * c,),
                   f"{b}.ff.net.2.weight": (c, 4 * c), f"{b}.ff.net.2.bias": (c,),
                   f"{b}.ff_norm.weight": (c,), f"{b}.ff_norm.bias": (c,),
                   f"{t}.proj_out.weight": (c, c), f"{t}.proj_out.bias": (c,)})
    return layout


def original_motion_layout(
    block_out_channels: list[int] | tuple[int, ...], layers_per_block: int, has_mid_block: bool, pe_length: int | None
) -> dict[str, tuple[int, ...]]:
    """Every key of an original-naming motion-module file with its shape.

    Args:
        block_out_channels: UNet channels per down block, e.g. (320, 640, 1280, 1280) for SD1.5.
        layers_per_block: motion modules per down block (2 for SD1.5; up blocks get one more).
        has_mid_block: whether the file has ``mid_block.motion_modules.0`` (v2, AnimateLCM).
        pe_length: length L of the ``pos_encoder.pe`` tensors [1, L, C]; None for files without them.
    """
    blocks = [(f"down_blocks.{i}", c, layers_per_block) for i, c in enumerate(block_out_channels)]
    if has_mid_block:
        blocks.append(("mid_block", block_out_channels[-1], 1))
    blocks += [(f"up_blocks.{i}", c, layers_per_block + 1) for i, c in enumerate(reversed(block_out_channels))]
    layout: dict[str, tuple[int, ...]] = {}
    for name, channels, count in blocks:
        for j in range(count):
            layout.update(_module_layout(f"{name}.motion_modules.{j}", channels, pe_length))
    return layout
