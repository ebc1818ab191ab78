"""Names of earlier versions, translated where old files are read: checkpoints and LoRA metadata.

This is the one place that knows them; every other part of the pack uses today's setting names
(:data:`sma.training.config.SETTINGS`).
"""

from __future__ import annotations

from typing import Any

EARLIER_SETTINGS: dict[str, str] = {
    "lr_temporal": "learning_rate", "lr_spatial": "spatial_learning_rate", "sma_levels": "wavelet_levels",
    "levels": "wavelet_levels", "spatial_lora": "spatial_path", "lora_targets": "targets",
}
"""Earlier setting name -> today's (checkpoints of format 1, metadata of files written with them)."""

EARLIER_SMA_FIELDS: dict[str, str] = {
    "mode": "sma_mode", "levels": "wavelet_levels", "delta": "weight_delta", "base": "weight_base",
}
"""Field names of the loss section in checkpoints of format 2 -> today's setting names."""

EARLIER_DEFAULTS: dict[str, object] = {"snr_normalise": False}
"""Settings added since format 2, at the value that reproduces what those versions did."""


def _renamed(values: dict[str, Any], names: dict[str, str], source: str) -> dict[str, Any]:
    out = dict(values)
    for old, new in names.items():
        if old in out:
            if new in out:
                raise ValueError(f"{source} has both {old!r} and {new!r} (an earlier and today's name of one setting).")
            out[new] = out.pop(old)
    return out


def checkpoint_settings(config: dict[str, Any], version: int) -> dict[str, Any]:
    """The flat settings, under today's names, of a checkpoint config of format 1 or 2.

    Format 1 is flat with earlier names (``frames`` was the window); format 2 nests the loss
    (``"sma"``, None when off, with ``mode``/``levels``/``delta``/``base``) and the LoRA (``"lora"``).

    Raises:
        ValueError: a format this module does not translate, or one setting under two names.
    """
    if version == 1:
        return EARLIER_DEFAULTS | _renamed(_renamed(config, {"frames": "window"}, "checkpoint config"),
                                           EARLIER_SETTINGS, "checkpoint config")
    if version != 2:
        raise ValueError(f"checkpoint config format {version!r} has no earlier names to translate.")
    flat = EARLIER_DEFAULTS | {k: v for k, v in config.items() if k not in ("sma", "lora")}
    loss = config.get("sma")
    flat |= {"sma_mode": "off"} if loss is None else _renamed(loss, EARLIER_SMA_FIELDS, "checkpoint config")
    flat |= config.get("lora") or {}
    return flat


def metadata_settings(metadata: dict[str, Any]) -> dict[str, Any]:
    """LoRA-file metadata with earlier names replaced by today's.

    Earlier files recorded the steps done as ``steps`` beside ``steps_planned``, and the timestep range
    as ``timesteps``; today ``steps`` is the setting (planned) and ``steps_done`` what was trained.
    """
    out = dict(metadata)
    if "steps_planned" in out:
        out["steps_done"] = out.pop("steps", None)
        out["steps"] = out.pop("steps_planned")
    timesteps = out.pop("timesteps", None)
    if isinstance(timesteps, list) and len(timesteps) == 2:
        out.setdefault("timestep_min", timesteps[0])
        out.setdefault("timestep_max", timesteps[1])
    for old, new in EARLIER_SETTINGS.items():
        if old in out:
            out.setdefault(new, out.pop(old))
    return out
