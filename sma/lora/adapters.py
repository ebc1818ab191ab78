"""LoRA adapters on the ``nn.Linear`` layers of a diffusers ``UNetMotionModel`` or ``MotionAdapter``.

A layer ``y = x W^T + b`` with adapter ``a`` computes
``y + a.multiplier * (a.alpha / a.rank) * (x down^T) up^T`` with ``down [rank, in]`` and
``up [out, rank]``. Two adapter paths use this:

- the motion path (``add_motion_lora``): attention ``to_q/to_k/to_v/to_out.0`` of the temporal
  transformers, optionally their feed-forward (``ff.net.0.proj``, ``ff.net.2``) and
  ``proj_in/proj_out``; this is what becomes the AnimateDiff-Evolved motion LoRA file;
- the MotionDirector spatial path (``add_spatial_lora``): attention (optionally feed-forward) of the
  spatial ``attentions.*`` transformers, a separate adapter with its own parameters so it can get its
  own learning rate and be dropped (it is never exported).

Why a small own wrapper instead of peft (peft 0.21 would work; this is simpler for our needs):

- The base layers stay where they are: the adapter is a child module plus one forward hook on the
  ``nn.Linear``, so ``to_q.weight`` keeps its name and the motion-module key mapping of
  ``sma.models.keys`` stays valid for the base weights (peft renames them ``...to_q.base_layer.weight``).
- Exact unmerge: merging keeps a copy of the base weight and unmerging restores it bit for bit;
  peft subtracts the delta again, which drifts on an fp16 base after repeated preview merges.
- fp32 adapter weights on an fp16 base without peft's dtype-casting switches, per-adapter
  multipliers, and several adapters (motion + spatial, or a loaded LoRA beside a trained one)
  active at once with no "active adapter" bookkeeping or regex pitfalls (docs/lora-format.md).
- The export to the ADE format needs only ``down``, ``up``, ``alpha`` and ``rank`` per layer, which
  this module exposes directly (``lora_layers``).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import SMAInputError

# Target groups: full-match patterns for module names (any prefix before them is allowed).
MOTION_TARGETS: Mapping[str, str] = {
    "attention": r"motion_modules\.\d+\.transformer_blocks\.\d+\.attn[12]\.(?:to_q|to_k|to_v|to_out\.0)",
    "attention_qk": r"motion_modules\.\d+\.transformer_blocks\.\d+\.attn[12]\.(?:to_q|to_k)",
    "ff": r"motion_modules\.\d+\.transformer_blocks\.\d+\.ff\.net\.(?:0\.proj|2)",
    "proj": r"motion_modules\.\d+\.(?:proj_in|proj_out)",
}
SPATIAL_TARGETS: Mapping[str, str] = {
    "attention": r"attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.(?:to_q|to_k|to_v|to_out\.0)",
    "ff": r"attentions\.\d+\.transformer_blocks\.\d+\.ff\.net\.(?:0\.proj|2)",
}
ATTENTION_TARGETS = ("attention", "attention_qk")
"""One of these is in every motion LoRA: all four attention projections, or queries and keys only (they route
where frames look, the values and outputs carry what they see)."""
MAX_RANK = 1024
"""The largest LoRA rank the pack trains or merges to."""
CONTAINER = "sma_lora"  # attribute of a wrapped nn.Linear that holds its adapters (nn.ModuleDict)
_HOOK = "_sma_lora_hook"
_BACKUP = "_sma_lora_backup"


@dataclass(frozen=True)
class LoRAConfig:
    """Shape and initialisation of one LoRA adapter.

    Attributes:
        rank: inner dimension ``r`` (1..MAX_RANK).
        alpha: scale numerator; the update is multiplied by ``alpha / rank``. ``None`` means ``rank``
            (scale 1).
        targets: layer groups: ``"attention"`` or ``"attention_qk"`` (one of them), ``"ff"``, ``"proj"`` (motion
            path only).
        dropout: dropout on the adapter input while training (0 = off).
        dtype: dtype of the adapter weights (fp32 by default, also on an fp16 base).
        seed: seed of the ``down`` initialisation (``up`` starts at zero).
    """

    rank: int = 32
    alpha: float | None = None
    targets: tuple[str, ...] = ("attention",)
    dropout: float = 0.0
    dtype: torch.dtype = torch.float32
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            object.__setattr__(self, "targets", (self.targets,))
        object.__setattr__(self, "targets", tuple(self.targets))
        if not isinstance(self.rank, int) or not 1 <= self.rank <= MAX_RANK:
            raise SMAInputError(f"LoRA rank must be an integer in 1..{MAX_RANK}, got {self.rank!r}.")
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and self.alpha > 0):
            raise SMAInputError(f"LoRA alpha must be a positive number (or None for alpha = rank), got {self.alpha!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise SMAInputError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}.")
        unknown = set(self.targets) - set(MOTION_TARGETS)
        if unknown or len(set(self.targets) & set(ATTENTION_TARGETS)) != 1:
            raise SMAInputError(
                "LoRA targets must include 'attention' (or 'attention_qk': queries and keys only) and may add 'ff' "
                f"and 'proj'; got {list(self.targets)}."
            )
        if not self.dtype.is_floating_point:
            raise SMAInputError(f"LoRA dtype must be a floating-point dtype, got {self.dtype}.")

    @property
    def effective_alpha(self) -> float:
        """``alpha``, or ``rank`` when alpha is None."""
        return float(self.rank if self.alpha is None else self.alpha)


class LoRAAdapter(nn.Module):
    """One low-rank update of a Linear layer: ``down [rank, in]``, ``up [out, rank]``.

    Attributes besides the two parameters: ``alpha`` (scale numerator), ``multiplier`` (strength at
    use time, 1 by default), ``enabled`` and ``merged`` (the update is in the base weight, the hook
    skips it).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, dropout: float = 0.0,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.rank = int(rank)
        self.alpha = float(alpha)
        self.multiplier = 1.0
        self.enabled = True
        self.merged = False
        self.down = nn.Parameter(torch.zeros(rank, in_features, dtype=dtype, device=device))
        self.up = nn.Parameter(torch.zeros(out_features, rank, dtype=dtype, device=device))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def scale(self) -> float:
        """``alpha / rank``."""
        return self.alpha / self.rank

    @property
    def active(self) -> bool:
        """True when the forward hook adds this adapter's output."""
        return self.enabled and not self.merged and self.multiplier != 0.0

    def reset_parameters(self, generator: torch.Generator) -> None:
        """``down`` ~ U(-1/sqrt(in), 1/sqrt(in)) (nn.Linear's default), ``up`` = 0: the update starts at 0."""
        bound = 1.0 / math.sqrt(self.down.shape[1])
        values = (torch.rand(self.down.shape, generator=generator) * 2 - 1) * bound
        with torch.no_grad():
            self.down.copy_(values)
            self.up.zero_()

    def delta_weight(self) -> torch.Tensor:
        """The weight update ``multiplier * alpha / rank * up @ down`` in fp32, ``[out, in]``."""
        return (self.up.float() @ self.down.float()) * (self.scale * self.multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Adapter output for the layer input ``x [..., in]``: ``[..., out]`` (adapter dtype, or autocast's).

        Under autocast the input is not cast to the adapter dtype first: autocast would cast it straight back,
        and the copy it saved for backward would be one more activation per adapted layer.
        """
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.down.dtype)
        hidden = nn.functional.linear(self.dropout(x), self.down)
        return nn.functional.linear(hidden, self.up) * (self.scale * self.multiplier)


def _lora_hook(module: nn.Linear, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: add every active adapter's output to the layer output.

    The input comes positionally or as ``input=`` (diffusers calls ``proj_in(input=...)``).
    """
    x = args[0] if args else kwargs["input"]
    for adapter in getattr(module, CONTAINER).values():
        if adapter.active:
            output = output + adapter(x).to(output.dtype)
    return output


def _matching_linears(model: nn.Module, patterns: Mapping[str, str], targets: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    unknown = set(targets) - set(patterns)
    if unknown:
        raise SMAInputError(f"targets {sorted(unknown)} are not available here; allowed: {sorted(patterns)}.")
    regex = re.compile(r"(?:.*\.)?(?:" + "|".join(patterns[t] for t in targets) + r")")
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and regex.fullmatch(name)]


def attach_adapter(linear: nn.Linear, adapter_name: str, adapter: LoRAAdapter) -> None:
    """Put ``adapter`` on ``linear`` under ``adapter_name`` (installs the forward hook once)."""
    container = getattr(linear, CONTAINER, None)
    if container is None:
        container = nn.ModuleDict()
        linear.add_module(CONTAINER, container)
        setattr(linear, _HOOK, linear.register_forward_hook(_lora_hook, with_kwargs=True))
        setattr(linear, _BACKUP, None)
    if adapter_name in container:
        raise SMAInputError(f"layer already has a LoRA adapter named {adapter_name!r}; remove it first (remove_lora).")
    container[adapter_name] = adapter


def _add_lora(model: nn.Module, config: LoRAConfig, adapter_name: str, patterns: Mapping[str, str], what: str) -> list[str]:
    if adapter_name in adapter_names(model):
        raise SMAInputError(f"the model already has a LoRA adapter named {adapter_name!r}; remove it first (remove_lora).")
    layers = _matching_linears(model, patterns, config.targets)
    if not layers:
        raise SMAInputError(
            f"no {what} layers ({', '.join(config.targets)}) found in {type(model).__name__}; "
            "expected a diffusers UNetMotionModel (or MotionAdapter for the motion path)."
        )
    generator = torch.Generator().manual_seed(config.seed)
    for _, linear in layers:
        adapter = LoRAAdapter(linear.in_features, linear.out_features, config.rank, config.effective_alpha,
                              config.dropout, config.dtype, linear.weight.device)
        adapter.reset_parameters(generator)
        attach_adapter(linear, adapter_name, adapter)
    return [name for name, _ in layers]


def add_motion_lora(model: nn.Module, config: LoRAConfig = LoRAConfig(), adapter_name: str = "motion") -> list[str]:
    """Add a LoRA adapter to the motion modules' linear layers chosen by ``config.targets``.

    Returns:
        The diffusers names of the wrapped layers (e.g. ``down_blocks.0.motion_modules.0.
        transformer_blocks.0.attn1.to_q``); 160 attention layers for SD1.5 v1/v3, 168 for v2.
    """
    return _add_lora(model, config, adapter_name, MOTION_TARGETS, "motion-module")


def add_spatial_lora(model: nn.Module, config: LoRAConfig = LoRAConfig(), adapter_name: str = "spatial") -> list[str]:
    """Add a separate LoRA adapter to the spatial transformers (MotionDirector's appearance path).

    Targets ``attn1/attn2`` (and ``ff`` if asked) of ``*.attentions.*`` blocks; 128 attention layers
    for SD1.5. ``"proj"`` is not available (SD1.5 spatial ``proj_in/out`` are convolutions).
    """
    return _add_lora(model, config, adapter_name, SPATIAL_TARGETS, "spatial-transformer")


def _wrapped(model: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and hasattr(module, CONTAINER):
            yield name, module


def adapter_names(model: nn.Module) -> list[str]:
    """Names of all LoRA adapters present in ``model`` (first-seen order)."""
    names: dict[str, None] = {}
    for _, linear in _wrapped(model):
        names.update(dict.fromkeys(getattr(linear, CONTAINER)))
    return list(names)


def lora_layers(model: nn.Module, adapter_name: str) -> dict[str, LoRAAdapter]:
    """``{layer name: adapter}`` for one adapter, in module order.

    Raises:
        SMAInputError: the model has no adapter of that name.
    """
    layers = {name: getattr(linear, CONTAINER)[adapter_name] for name, linear in _wrapped(model)
              if adapter_name in getattr(linear, CONTAINER)}
    if not layers:
        raise SMAInputError(f"the model has no LoRA adapter named {adapter_name!r}; present: {adapter_names(model)}.")
    return layers


def lora_parameters(model: nn.Module, adapter_name: str) -> list[nn.Parameter]:
    """The trainable parameters of one adapter (``down``, ``up`` per layer, module order)."""
    return [p for adapter in lora_layers(model, adapter_name).values() for p in (adapter.down, adapter.up)]


def set_lora_scale(model: nn.Module, adapter_name: str, scale: float) -> None:
    """Set the strength multiplier of one adapter (0 turns it off; merged weights follow)."""
    for linear in _linears_with(model, adapter_name):
        getattr(linear, CONTAINER)[adapter_name].multiplier = float(scale)
        refresh_merge(linear)


def enable_lora(model: nn.Module, adapter_name: str, enabled: bool = True) -> None:
    """Switch one adapter on or off without touching its weights (merged weights follow)."""
    for linear in _linears_with(model, adapter_name):
        getattr(linear, CONTAINER)[adapter_name].enabled = bool(enabled)
        refresh_merge(linear)


def _linears_with(model: nn.Module, adapter_name: str) -> list[nn.Linear]:
    linears = [linear for _, linear in _wrapped(model) if adapter_name in getattr(linear, CONTAINER)]
    if not linears:
        raise SMAInputError(f"the model has no LoRA adapter named {adapter_name!r}; present: {adapter_names(model)}.")
    return linears


@torch.no_grad()
def refresh_merge(linear: nn.Linear) -> None:
    """Make ``linear.weight`` = original weight + the deltas of its merged, enabled adapters.

    The original is kept in a copy while anything is merged, so unmerging restores it exactly.
    """
    merged = [a for a in getattr(linear, CONTAINER).values() if a.merged]
    backup = getattr(linear, _BACKUP)
    if backup is not None:
        linear.weight.copy_(backup.to(device=linear.weight.device, dtype=linear.weight.dtype))
    if not merged:
        setattr(linear, _BACKUP, None)
        return
    if backup is None:
        setattr(linear, _BACKUP, linear.weight.detach().clone())
    total = linear.weight.float()
    for adapter in merged:
        if adapter.enabled:
            total = total + adapter.delta_weight().to(total.device)
    linear.weight.copy_(total.to(linear.weight.dtype))


def merge_lora(model: nn.Module, adapter_name: str) -> None:
    """Fold one adapter into the base weights (for fast sampling); ``unmerge_lora`` restores them exactly."""
    for linear in _linears_with(model, adapter_name):
        getattr(linear, CONTAINER)[adapter_name].merged = True
        refresh_merge(linear)


def unmerge_lora(model: nn.Module, adapter_name: str) -> None:
    """Take a merged adapter out of the base weights again (bit-exact restore)."""
    for linear in _linears_with(model, adapter_name):
        getattr(linear, CONTAINER)[adapter_name].merged = False
        refresh_merge(linear)


@contextmanager
def merged_lora(model: nn.Module, *adapter_names_: str) -> Iterator[nn.Module]:
    """Context in which the given adapters are merged into the base weights (e.g. preview sampling)."""
    done: list[str] = []
    try:
        for name in adapter_names_:
            merge_lora(model, name)
            done.append(name)
        yield model
    finally:
        for name in reversed(done):
            unmerge_lora(model, name)


def remove_lora(model: nn.Module, adapter_name: str) -> None:
    """Delete one adapter (unmerging it first); a layer left with no adapter loses its hook."""
    for linear in _linears_with(model, adapter_name):
        container = getattr(linear, CONTAINER)
        container[adapter_name].merged = False
        refresh_merge(linear)
        del container[adapter_name]
        if len(container) == 0:
            getattr(linear, _HOOK).remove()
            for attr in (CONTAINER, _HOOK, _BACKUP):
                delattr(linear, attr)
