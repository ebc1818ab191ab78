"""The toy base model: the pack's tiny AnimateDiff-structured UNet (v3 layout), its files, and sampling.

The base is two safetensors files, as a real set-up has: the image UNet (diffusers naming, the shipped
``unet_tiny`` config) and the motion module (original AnimateDiff naming, the shipped
``motion_adapter_tiny`` layout), combined by :func:`sma.models.build.build_motion_unet`, the same code
path as an SD1.5 checkpoint + motion module. A JSON file beside them records how they were trained.
It predicts ``v`` (v-prediction) on AnimateDiff's linear noise schedule.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler, UNetMotionModel
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_write_path
from ..errors import SMAInputError
from ..models.build import build_motion_unet, make_noise_scheduler, motion_module_from_model, tiny_motion_unet
from ..models.config import unet_config
from ..training import motion_modules_bypassed

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
UNET_FILE = "toy_base_unet.safetensors"
MOTION_FILE = "toy_base_motion.safetensors"
RECORD_FILE = "toy_base.json"
FAMILY = "v3"
PREDICTION = "v_prediction"


def new_base(seed: int = 0) -> UNetMotionModel:
    """An untrained base: random tiny UNet + motion module whose output projections start at zero
    (as AnimateDiff initialises motion modules, so training starts from an image model)."""
    model = tiny_motion_unet(FAMILY, seed=seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".motion_modules." in f".{name}" and ".proj_out." in name:
                param.zero_()
    return model


def save_base(model: UNetMotionModel, folder: str | Path, record: dict[str, Any],
              dtype: torch.dtype = torch.float16) -> dict[str, Path]:
    """Write the UNet, the motion module and ``record`` (JSON) into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    unet = {k: v.detach().to("cpu", dtype).contiguous() for k, v in state.items() if ".motion_modules." not in f".{k}"}
    motion = {k: v.detach().to("cpu", dtype).contiguous() for k, v in motion_module_from_model(model).items()}
    paths = {"unet": folder / UNET_FILE, "motion": folder / MOTION_FILE, "record": folder / RECORD_FILE}
    for key, tensors in (("unet", unet), ("motion", motion)):
        with atomic_write_path(paths[key]) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "model": "sma toy base"})
    with atomic_write_path(paths["record"]) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return paths


def base_files(folder: str | Path | None = None) -> tuple[Path, Path]:
    """The UNet and motion-module files in ``folder`` (default: the weights shipped with the pack)."""
    folder = Path(folder) if folder is not None else WEIGHTS_DIR
    unet, motion = folder / UNET_FILE, folder / MOTION_FILE
    missing = [str(p) for p in (unet, motion) if not p.is_file()]
    if missing:
        raise SMAInputError(f"toy base weights not found: {', '.join(missing)}. Train them with "
                            "`python bench/pretrain_toy_base.py --out FOLDER` or reinstall the pack.")
    return unet, motion


def load_base(folder: str | Path | None = None, device: torch.device | str = "cpu") -> UNetMotionModel:
    """The pretrained toy base (fp32, eval mode) from ``folder`` (default: the shipped weights)."""
    unet_path, motion_path = base_files(folder)
    model = build_motion_unet(load_file(str(unet_path)), str(motion_path), torch.float32,
                              unet_config=unet_config("tiny"))
    return model.to(device).eval()


def base_record(folder: str | Path | None = None) -> dict[str, Any]:
    """The training record (settings, seed, wall time, quality) stored beside the weights."""
    path = (Path(folder) if folder is not None else WEIGHTS_DIR) / RECORD_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def noise_scheduler():
    """The training schedule of the base (AnimateDiff's linear betas, v-prediction)."""
    return make_noise_scheduler(PREDICTION)


SAMPLING_ETA = 1.0
"""DDIM's eta for the toy base: 1 = ancestral (fresh noise at every step, like DDPM). Measured on a 900-step
base, 7 appearances: deterministic DDIM (eta 0) left the shapes jumping between frames (temporal coherence
0.15, 1.55 px/frame against 0.57 in the training clips); with eta 1 and 50 steps, 0.46 and 1.00 px/frame.
The fresh noise lets later steps correct the small model's early errors. On the shipped base both pass the
quality checks (28 appearances, 25 steps); eta 1 gives the smoother motion (coherence 0.66 against 0.50)."""


@torch.no_grad()
def sample(model: nn.Module, tokens: torch.Tensor, frames: int, size: int, generator: torch.Generator,
           steps: int = 25, bypass_motion: bool = False, eta: float = SAMPLING_ETA) -> torch.Tensor:
    """DDIM samples ``[B, F, 4, size, size]`` for appearance tokens ``[B, T, D]`` (no guidance).

    ``bypass_motion``: sample with every motion module returning its input (each frame alone).
    All noise (initial and, with ``eta`` > 0, per step) comes from ``generator`` (CPU), so samples do not
    depend on the device.
    """
    device = next(model.parameters()).device
    scheduler = DDIMScheduler.from_config(noise_scheduler().config)
    scheduler.set_timesteps(steps)
    b = tokens.shape[0]
    x = torch.randn(b, 4, frames, size, size, generator=generator).to(device)
    text = tokens.to(device).repeat_interleave(frames, dim=0)
    context = motion_modules_bypassed(model) if bypass_motion else contextlib.nullcontext()
    with context:
        for t in scheduler.timesteps:
            out = model(x, t.to(device), encoder_hidden_states=text).sample
            noise = torch.randn(x.shape, generator=generator).to(device) if eta > 0 else None
            x = scheduler.step(out, t, x, eta=eta, variance_noise=noise).prev_sample
    return x.transpose(1, 2).float()

