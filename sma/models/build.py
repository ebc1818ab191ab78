"""Build diffusers ``UNetMotionModel`` s: base UNet + original-naming AnimateDiff motion module.

What a base or family is (configs, block layout, GroupNorm mode) comes from :mod:`sma.models.families`.

Models are built with empty weights and filled with ``load_state_dict(strict=True, assign=True)``, so no
random initialisation runs and tensors are not copied when they already have the requested dtype
(the model then shares them with the inputs). Every builder matches AnimateDiff-Evolved's GroupNorms
(see :mod:`sma.models.norms`) and records the motion module's :class:`MotionModuleInfo` as
``model.motion_info``.
"""

from __future__ import annotations

import math
import os
import re
from typing import Literal

import torch
from diffusers import DDPMScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel

from ..errors import SMAInputError
from ..loss import PREDICTION_TYPES
from ..validation import check_choice
from . import config as shipped
from .config import check_family, load_config, motion_adapter_config, size_of_channels
from .detect import MotionModuleInfo
from .families import DEFAULT_BASE, base_spec
from .files import load_motion_module
from .keys import PE_DIFFUSERS, motion_state_dict_to_diffusers, motion_state_dict_to_original
from .layout import original_motion_layout, sinusoidal_positions
from .norms import use_ade_group_norms
from .sd15 import cast_floats, empty_weights, fill_empty_model, unet_state_dict_to_diffusers

__all__ = [
    "build_motion_unet", "make_noise_scheduler", "motion_module_from_model", "motion_module_state_dict",
    "tiny_motion_unet", "use_ade_group_norms",
]

_NORM_KEY = "down_blocks.{i}.motion_modules.0.temporal_transformer.norm.weight"
_DOWN_MODULE = re.compile(r"^down_blocks\.0\.motion_modules\.(\d+)\.")


def make_noise_scheduler(
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon", base: str = DEFAULT_BASE
) -> DDPMScheduler:
    """The DDPM schedule motion modules of ``base`` train with (SD1.5: 1000 steps, linear betas 0.00085..0.012)."""
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    return DDPMScheduler.from_config(load_config(base_spec(base).noise_schedule), prediction_type=prediction_type)


_RANDN_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _random_tensor(key: str, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A plausible random value for one motion-module tensor."""
    if key.endswith("pos_encoder.pe"):
        return sinusoidal_positions(shape[1], shape[2]).to(dtype)
    values = torch.randn(shape, generator=generator, dtype=dtype if dtype in _RANDN_DTYPES else torch.float32)
    if len(shape) == 2:
        return values.div_(math.sqrt(shape[1]))  # linear weights: unit-variance outputs
    if key.endswith(".weight"):
        return values.mul_(0.1).add_(1.0)  # norm scales around 1
    return values.mul_(0.02)  # biases


def motion_module_state_dict(
    family: str, size: Literal["full", "tiny"] = "tiny", dtype: torch.dtype = torch.float16, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A random motion module in the ORIGINAL naming with the real key names and shapes of ``family``.

    ``full`` is the real layout (SD1.5 v2: 454M values, 0.91 GB in fp16), ``tiny`` the test layout.
    Encodings ``pos_encoder.pe`` [1, L, C] hold sinusoids of the family's length; families whose files
    have none (AnimateLCM) get none. Built tensor by tensor in ``dtype``, so the peak is about the result's size.
    """
    config = motion_adapter_config(family, size)
    pe_length = None if check_family(family).pe_length is None else config["motion_max_seq_length"]
    layout = original_motion_layout(config["block_out_channels"], config["motion_layers_per_block"],
                                    config["use_motion_mid_block"], pe_length)
    generator = torch.Generator().manual_seed(seed)
    return {key: _random_tensor(key, shape, generator, dtype).to(dtype) for key, shape in layout.items()}


def _adapter_config_for(motion: dict[str, torch.Tensor], info: MotionModuleInfo) -> dict:
    """The ``MotionAdapter`` config matching a motion module's channels, length and mid block."""
    base = base_spec(info.base)
    keys = [_NORM_KEY.format(i=i) for i in range(base.down_blocks)]
    channels = [motion[key].shape[0] for key in keys if key in motion]
    size = size_of_channels(channels, base.name)
    if size is None:
        known = {s: shipped.unet_config(s, base.name)["block_out_channels"] for s in base.unet}
        raise SMAInputError(
            f"the motion module's block channels {channels} match no {base.name} UNet "
            f"({', '.join(f'{s}: {c}' for s, c in known.items())})."
        )
    config = motion_adapter_config(info.family, size, pe_length=info.pe_length, has_mid_block=info.has_mid_block)
    layers = 1 + max(int(m.group(1)) for k in motion if (m := _DOWN_MODULE.match(k)))
    if layers != config["motion_layers_per_block"]:
        raise SMAInputError(f"the motion module has {layers} modules per down block, {base.name} modules have "
                            f"{config['motion_layers_per_block']}.")
    return config


def _check_fit(unet_cfg: dict, adapter_cfg: dict, info: MotionModuleInfo) -> None:
    """Raise SMAInputError unless the base UNet and the motion module fit together."""
    base = base_spec(info.base)
    reference = shipped.unet_config(next(iter(base.unet)), base.name)
    blocks = len(unet_cfg["block_out_channels"])
    if unet_cfg.get("addition_embed_type") != reference.get("addition_embed_type") or blocks != base.down_blocks:
        kind = "SDXL" if unet_cfg.get("addition_embed_type") == "text_time" else f"a UNet with {blocks} down blocks"
        raise SMAInputError(f"the motion module is for {info.base} ({info.family}) but the checkpoint is {kind}.")
    if list(unet_cfg["block_out_channels"]) != list(adapter_cfg["block_out_channels"]):
        raise SMAInputError(
            f"channel mismatch: the UNet's blocks have {list(unet_cfg['block_out_channels'])} channels, "
            f"the motion module's {list(adapter_cfg['block_out_channels'])}."
        )
    layers = unet_cfg["layers_per_block"]
    if layers != adapter_cfg["motion_layers_per_block"]:
        raise SMAInputError(f"the UNet has {layers} layers per block, the motion module "
                            f"{adapter_cfg['motion_layers_per_block']}.")


def _unet_weights(
    unet: UNet2DConditionModel | dict[str, torch.Tensor], config: dict | None, base: str
) -> tuple[dict, dict]:
    """(diffusers-naming UNet state dict, UNet config) of a model or a checkpoint state dict of ``base``."""
    if isinstance(unet, UNet2DConditionModel):
        return unet.state_dict(), dict(unet.config)
    if isinstance(unet, dict):
        config = config or shipped.unet_config("full", base)
        return unet_state_dict_to_diffusers(unet, config), config
    raise SMAInputError(f"the base UNet must be a UNet2DConditionModel or a state dict, not {type(unet).__name__}.")


def build_motion_unet(
    unet: UNet2DConditionModel | dict[str, torch.Tensor],
    motion_state_dict: dict[str, torch.Tensor] | str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    *,
    unet_config: dict | None = None,
) -> UNetMotionModel:
    """A ``UNetMotionModel`` from a base UNet (SD1.5) and an original-naming motion module.

    Args:
        unet: a diffusers ``UNet2DConditionModel``, or its state dict in LDM naming (with or without the
            ``model.diffusion_model.`` prefix; a full checkpoint is fine) or diffusers naming.
        motion_state_dict: motion module in the original naming (state dict or file path).
        dtype: dtype of every floating tensor of the model.
        unet_config: config of a state-dict ``unet`` (default: the shipped full config of the module's base).

    The motion module's own ``pos_encoder.pe`` values are loaded (diffusers' converter would recompute
    sinusoids); modules without encodings (AnimateLCM) get sinusoids. Input ``sample`` [B, C, F, H, W],
    ``encoder_hidden_states`` [B*F, 77, cross_dim].

    Raises:
        SMAInputError: unsupported motion module, or base UNet and motion module do not fit (with numbers).
    """
    motion, info = load_motion_module(motion_state_dict)
    unet_weights, unet_cfg = _unet_weights(unet, unet_config, info.base)
    adapter_cfg = _adapter_config_for(motion, info)
    _check_fit(unet_cfg, adapter_cfg, info)
    with empty_weights():
        base = UNet2DConditionModel.from_config(unet_cfg)
        adapter = MotionAdapter.from_config(adapter_cfg)
        model = UNetMotionModel.from_unet2d(base, adapter, load_weights=False)
    weights = {**cast_floats(unet_weights, dtype), **cast_floats(motion_state_dict_to_diffusers(motion), dtype)}
    if info.pe_length is None:
        for key, buffer in model.state_dict().items():
            if key.endswith(PE_DIFFUSERS):
                weights[key] = sinusoidal_positions(buffer.shape[1], buffer.shape[2]).to(dtype)
    fill_empty_model(model, weights, dtype, "UNet + motion module")
    use_ade_group_norms(model, info.family)
    model.motion_info = info
    return model


def motion_module_from_model(model: UNetMotionModel) -> dict[str, torch.Tensor]:
    """The motion module of ``model`` in the original naming (tensors shared with the model).

    Encodings are written to both attention blocks, or left out when the loaded file had none.
    """
    info: MotionModuleInfo | None = getattr(model, "motion_info", None)
    with_pe = info is None or info.pe_length is not None
    return motion_state_dict_to_original(model.state_dict(), with_pe=with_pe)


def tiny_motion_unet(family: str = "v3", seed: int = 0, dtype: torch.dtype = torch.float32) -> UNetMotionModel:
    """A small random ``UNetMotionModel`` with the key structure of the family's base + ``family``.

    SD1.5 (3.2M values): channels (16, 32, 64, 64), 8 norm groups, 2 heads, cross-attention dim 32
    (``encoder_hidden_states`` [B*F, 77, 32]). Deterministic for a given seed; the global RNG is left untouched.
    """
    base = check_family(family).base
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(shipped.unet_config("tiny", base))
    motion = motion_module_state_dict(family, "tiny", torch.float32, seed)
    return build_motion_unet(unet, motion, dtype)
