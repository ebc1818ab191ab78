"""Reference clips for training: validation, training-window length and per-step batches.

Clips may have different frame counts: every step trains on a random window of ``window`` consecutive
frames of each chosen clip, so batches always have equal frame counts. The window is at most the motion
module's positional-encoding length (24 for v1, 32 for v2/v3); longer clips are covered by random
sliding windows. Clips batched together (``clips_per_step > 1``) must have equal latent sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SMAInputError


@dataclass
class TrainingClip:
    """One reference clip, encoded once by the caller.

    Attributes:
        latents: clean latents ``[F, C, h, w]`` already multiplied by the VAE scaling factor (SD1.5: C=4).
        text_embedding: prompt embedding ``[1, T, D]`` (SD1.5: T=77, D=768; an empty prompt is fine).
        name: shown in error messages.
        motion_only: a copy made for the motion path only (e.g. a recoloured one, :mod:`sma.augment`): steps that
            draw it train no spatial LoRA and run the temporal pass with the spatial LoRA off, so the look of the
            copy goes nowhere and the motion LoRA cannot lean on the original's look.
    """

    latents: torch.Tensor
    text_embedding: torch.Tensor
    name: str = ""
    motion_only: bool = False

    def label(self, index: int) -> str:
        return f"clip {index}" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True)
class Batch:
    """One micro-batch: ``latents [B, W, C, h, w]`` (fp32) and ``text [B, T, D]``, plus clip indices."""

    latents: torch.Tensor
    text: torch.Tensor
    clips: tuple[int, ...]
    starts: tuple[int, ...]


def check_clips(clips: list[TrainingClip], *, in_channels: int, cross_attention_dim: int, clips_per_step: int) -> None:
    """Raise SMAInputError for clips the model cannot train on (shapes, frame counts, NaN values)."""
    if not isinstance(clips, (list, tuple)) or not clips:
        raise SMAInputError("training needs at least one reference clip (got none).")
    for i, clip in enumerate(clips):
        if not isinstance(clip, TrainingClip):
            raise SMAInputError(f"clip {i} must be a TrainingClip, got {type(clip).__name__}.")
        z, text, label = clip.latents, clip.text_embedding, clip.label(i)
        if not isinstance(z, torch.Tensor) or z.ndim != 4:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise SMAInputError(f"{label}: latents must be [frames, {in_channels}, h, w], got {shape}.")
        if z.shape[1] != in_channels:
            raise SMAInputError(f"{label}: latents have {z.shape[1]} channels, the model takes {in_channels} "
                                f"(latents must be [frames, {in_channels}, h, w], got {tuple(z.shape)}).")
        if z.shape[0] < 2:
            raise SMAInputError(f"{label}: has {z.shape[0]} frame(s); motion training needs at least 2.")
        if not z.is_floating_point() or not torch.isfinite(z).all():
            raise SMAInputError(f"{label}: latents must be finite floating-point values.")
        if not isinstance(text, torch.Tensor) or text.ndim != 3 or text.shape[0] != 1:
            shape = tuple(text.shape) if isinstance(text, torch.Tensor) else type(text).__name__
            raise SMAInputError(f"{label}: text_embedding must be [1, tokens, {cross_attention_dim}], got {shape}.")
        if text.shape[2] != cross_attention_dim:
            raise SMAInputError(f"{label}: text_embedding has width {text.shape[2]}, the model's cross-attention "
                                f"takes {cross_attention_dim} (SD1.5: 768, from the CLIP-L text encoder).")
    if clips_per_step > 1:
        sizes = {(tuple(c.latents.shape[1:]), tuple(c.text_embedding.shape)) for c in clips}
        if len(sizes) > 1:
            listing = ", ".join(f"{c.label(i)}: latents {tuple(c.latents.shape[1:])} "
                                f"text {tuple(c.text_embedding.shape)}" for i, c in enumerate(clips))
            raise SMAInputError("clips_per_step > 1 batches clips together, so all clips need the same latent size "
                                f"and prompt length; got {listing}. Use clips_per_step = 1 or resize the clips.")


def training_window(clips: list[TrainingClip], frames: int | None, pe_length: int) -> int:
    """Frames per training window.

    ``frames`` None: the shortest clip's length, capped at ``pe_length``. A requested ``frames`` must fit
    in every clip and in the positional encoding.
    """
    shortest = min(int(c.latents.shape[0]) for c in clips)
    if frames is None:
        return min(shortest, pe_length)
    if frames > pe_length:
        raise SMAInputError(
            f"window = {frames} frames is more than the motion module supports: its positional encoding has "
            f"{pe_length} positions (AnimateDiff v1: 24, v2/v3: 32). Use window <= {pe_length}; longer clips "
            "are trained on random windows of that length."
        )
    short = [c.label(i) + f" has {c.latents.shape[0]}" for i, c in enumerate(clips) if c.latents.shape[0] < frames]
    if short:
        raise SMAInputError(f"window = {frames} frames requested but {'; '.join(short)} frames. "
                            f"Use window <= {shortest} or longer clips.")
    return frames


def clips_for_step(micro_step: int, n_clips: int, per_step: int, seed: int) -> list[int]:
    """Clip indices of one micro-batch: epochs of seeded random permutations, read in order.

    Stateless (a function of ``micro_step``), so resuming needs no sampler state; every clip is seen
    once per epoch.
    """
    indices = []
    for position in range(micro_step * per_step, (micro_step + 1) * per_step):
        epoch, offset = divmod(position, n_clips)
        order = torch.randperm(n_clips, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        indices.append(int(order[offset]))
    return indices


def make_batch(clips: list[TrainingClip], indices: list[int], window: int, generator: torch.Generator,
               device: torch.device) -> Batch:
    """Stack a random ``window``-frame slice of each chosen clip (start drawn from ``generator``)."""
    starts = [int(torch.randint(0, clips[i].latents.shape[0] - window + 1, (), generator=generator)) for i in indices]
    latents = torch.stack([clips[i].latents[s:s + window] for i, s in zip(indices, starts)])
    text = torch.cat([clips[i].text_embedding for i in indices])
    return Batch(latents.to(device=device, dtype=torch.float32), text.to(device=device, dtype=torch.float32),
                 tuple(indices), tuple(starts))
