"""Pretrain the toy base on random toy clips: every weight of the UNet and the motion module learns.

Each step draws ``batch`` clips from a pool of random scenes (every motion family, random appearances),
renders them with fresh nuisance, maps them to latents (:mod:`.codec`) and takes one AdamW step on the
v-prediction MSE at uniform timesteps of AnimateDiff's linear schedule. An exponential moving average
(EMA) of the weights is what gets saved. ``lr`` warms up linearly, then decays to a tenth (cosine).
"""

from __future__ import annotations

import copy
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..training import diffusion_target, lr_factor
from .base import FAMILY, PREDICTION, load_base, new_base, noise_scheduler
from .codec import embed_appearance, encode
from .world import FAMILIES, Nuisance, Scene, random_scenes, render


@dataclass
class PretrainConfig:
    """Settings of one pretraining run (all of them go into the record)."""

    steps: int = 3000
    batch: int = 8
    lr: float = 1e-3
    warmup: int | None = None  # None: a tenth of the steps, at most 200
    weight_decay: float = 0.01
    ema_decay: float | None = None  # None: 1 - 10 / steps, within 0.9..0.999
    pool: int = 4096
    frames: int = 8
    size: int = 16
    seed: int = 0
    grad_clip: float = 1.0
    init: str | None = None  # a folder with base files to continue from (None: a fresh base)
    precision: str = "fp32"  # or "bf16" (autocast on CUDA); the tiny model is launch-bound, casts cost more

    def resolved_warmup(self) -> int:
        return self.warmup if self.warmup is not None else max(1, min(200, self.steps // 10))

    def resolved_ema(self) -> float:
        return self.ema_decay if self.ema_decay is not None else min(0.999, max(0.9, 1 - 10 / self.steps))


LR_FLOOR = 0.1
"""The cosine schedule decays the learning rate to this share of ``lr``."""


def _lr_factor(step: int, config: PretrainConfig) -> float:
    """The training package's warm-up + cosine schedule, with ``config.steps`` read at each step (a time budget
    may lower it)."""
    return lr_factor("cosine", config.resolved_warmup(), config.steps, floor=LR_FLOOR)(step)


@torch.no_grad()
def _ema_update(ema: list[torch.Tensor], model: list[torch.Tensor], decay: float) -> None:
    torch._foreach_lerp_(ema, model, 1 - decay)


def pretrain(config: PretrainConfig, device: torch.device | str = "cpu", log: Callable[[str], None] = print,
             log_every: int = 50, time_budget: float | None = None,
             on_checkpoint: Callable[[int, nn.Module], None] | None = None,
             checkpoint_every: int = 0) -> tuple[nn.Module, dict]:
    """Train a fresh base; returns the EMA model (eval mode, on ``device``) and the run's record.

    ``time_budget`` (seconds of training): after 30 timed steps, lower ``config.steps`` (in place, before
    the learning-rate decay depends on it) so the run fits; the record holds the steps actually run.
    ``on_checkpoint(step, ema_model)`` is called every ``checkpoint_every`` steps (0 = never).
    """
    device = torch.device(device)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)  # scenes and clip choice (CPU)
    gd = torch.Generator(device).manual_seed(config.seed + 1)  # timesteps, noise and nuisance (device)
    pool = random_scenes(FAMILIES, config.pool, config.frames, config.size, generator=g)
    pool_seconds = time.perf_counter() - started
    log(f"pool of {config.pool} scenes ready in {pool_seconds:.1f} s")
    pool_device = pool.to(device)
    tokens_all = embed_appearance(pool_device.appearance, 32, config.size)

    model = (load_base(config.init, device) if config.init else new_base(config.seed)).to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    scheduler = noise_scheduler()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    use_bf16 = device.type == "cuda" and config.precision == "bf16"
    ema_params = list(ema.parameters())
    model_params = list(model.parameters())
    nuisance = Nuisance()
    history: list[float] = []
    running = None
    train_started = time.perf_counter()
    step = 0
    while step < config.steps:
        index = torch.randint(0, config.pool, (config.batch,), generator=g)
        scene = _subset(pool_device, index.to(device))
        latents = encode(render(scene, nuisance, gd))  # [B, F, 4, H, W]
        tokens = tokens_all[index.to(device)].repeat_interleave(config.frames, dim=0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (config.batch,), generator=gd, device=device)
        noise = torch.randn(latents.shape, generator=gd, device=device)
        x_t = scheduler.add_noise(latents, noise, t)
        target = diffusion_target(scheduler, latents, noise, t)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            pred = model(x_t.transpose(1, 2), t, encoder_hidden_states=tokens).sample
        loss = F.mse_loss(pred.float().transpose(1, 2), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        lr_schedule.step()
        _ema_update(ema_params, model_params, config.resolved_ema())  # follows a budget-lowered step count
        step += 1
        if step % 10 == 0 or step == 1:
            value = float(loss.detach())
            history.append(value)
            running = value if running is None else 0.9 * running + 0.1 * value
        if time_budget is not None and step in (10, 40):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step == 10:
                mark = time.perf_counter()
            else:
                per_step = (time.perf_counter() - mark) / 30
                fits = int((time_budget - (time.perf_counter() - train_started)) / per_step) + step
                if fits < config.steps:
                    log(f"{per_step * 1000:.1f} ms/step: {fits} steps fit the {time_budget:.0f} s budget "
                        f"(asked for {config.steps})")
                    config.steps = fits
        if checkpoint_every and on_checkpoint is not None and step % checkpoint_every == 0:
            on_checkpoint(step, ema)
        if step % log_every == 0 or step == config.steps:
            elapsed = time.perf_counter() - started
            per_step = (time.perf_counter() - train_started) / step
            log(f"step {step}/{config.steps}  loss {running:.4f}  lr {optimizer.param_groups[0]['lr']:.2e}  "
                f"{per_step * 1000:.0f} ms/step  wall {elapsed:.0f} s")
    wall = time.perf_counter() - started
    record = {
        "model": f"tiny AnimateDiff {FAMILY} layout (shipped unet_tiny + motion_adapter_tiny configs)",
        "prediction_type": PREDICTION, "schedule": "linear betas 0.00085..0.012, 1000 steps",
        "settings": asdict(config) | {"ema_decay": config.resolved_ema(), "warmup": config.resolved_warmup()},
        "seed": config.seed,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                 f" ({torch.get_num_threads()} threads)"),
        "wall_seconds": round(wall, 1), "train_seconds": round(time.perf_counter() - train_started, 1),
        "pool_seconds": round(pool_seconds, 1),
        "loss_first_last": [history[0], sum(history[-10:]) / len(history[-10:])],
        "torch": torch.__version__, "python": platform.python_version(), "pack": __version__,
    }
    return ema, record


def _subset(scene: Scene, index: torch.Tensor) -> Scene:
    """The clips ``index`` of a pooled scene (tensor indexing; families follow)."""
    families = tuple(scene.poses.family[int(i)] for i in index.cpu())
    app = scene.appearance.select(index)
    p = scene.poses
    poses = type(p)(p.cx[index], p.cy[index], p.angle[index], p.scale[index], families)
    return Scene(app, poses, scene.height, scene.width)
