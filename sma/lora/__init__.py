"""Motion LoRAs: injection into diffusers motion models, ADE-format export, import of other layouts.

- :mod:`sma.lora.adapters`: ``LoRAConfig``, motion and spatial adapters, scale / enable / merge.
- :mod:`sma.lora.keys`: key names of the ADE layout and of other trainers' layouts.
- :mod:`sma.lora.convert`: any known layout -> canonical ADE layout (alpha baked).
- :mod:`sma.lora.motion`: model adapter <-> ADE state dict (``export_motion_lora``, ``apply_motion_lora``).
- :mod:`sma.lora.files`: ``save_motion_lora`` (atomic, metadata) and ``load_motion_lora``.
- :mod:`sma.lora.ade_files`: which file AnimateDiff-Evolved loads (other layouts converted once and cached).
"""
from .adapters import (
    LoRAAdapter,
    LoRAConfig,
    adapter_names,
    add_motion_lora,
    add_spatial_lora,
    enable_lora,
    lora_layers,
    lora_parameters,
    merge_lora,
    merged_lora,
    remove_lora,
    set_lora_scale,
    unmerge_lora,
)
from .files import FORMAT, load_motion_lora, lora_rank, read_lora_file, save_motion_lora
from .keys import ade_lora_key, parse_lora_key
from .motion import apply_motion_lora, export_motion_lora

__all__ = [
    "FORMAT", "LoRAAdapter", "LoRAConfig", "adapter_names", "add_motion_lora", "add_spatial_lora", "ade_lora_key",
    "apply_motion_lora", "enable_lora", "export_motion_lora", "load_motion_lora", "lora_layers", "lora_parameters",
    "lora_rank", "merge_lora", "merged_lora", "parse_lora_key", "read_lora_file", "remove_lora", "save_motion_lora",
    "set_lora_scale", "unmerge_lora",
]
