"""``python -m sma demo``: the whole pipeline in about a minute on a CPU, with nothing to download.

What runs (all on the CPU, everything seeded):

1. a synthetic reference clip of moving shapes (:func:`sma.synthetic.moving_shapes_clip`);
2. latents WITHOUT a VAE (:func:`pixels_to_demo_latents`): 8x8 average pooling, then the fixed linear
   RGB -> 4-channel map that is the pseudo-inverse of :mod:`sma.preview`'s latent -> RGB factors. This
   is the demo's stand-in for a VAE: ``latents_to_rgb`` "decodes" these latents back to the pooled frames;
3. a tiny random-weight AnimateDiff-structured model (:func:`sma.models.build.tiny_motion_unet`, v3
   layout) and a fixed random prompt embedding as the stand-in for an encoded prompt;
4. SMA motion-LoRA training (:class:`sma.train.Trainer`, MotionDirector dual path + SMA "plus");
5. an evaluation: the reference latents are noised to fixed timesteps with fixed noise and denoised in
   one step (the Tweedie estimate ``z0_hat``) by the base model with and without the trained motion
   LoRA (the spatial LoRA off, as the saved file holds only the motion LoRA); ``sma.metrics`` measures
   how well each estimate's motion matches the reference. The spectra PNG shows the reference latents
   beside the estimate with the LoRA at the least noisy of those timesteps.

Unless ``OMP_NUM_THREADS`` is set, the demo uses one CPU thread: the tiny model's operations gain little
from more, and on a busy machine OpenMP threads waiting for each other made it 20x slower (measured).

A random-weight model learns little in a minute: the LoRA lowers the loss and the SMA distances a little,
the estimates stay dominated by noise. The demo shows the machinery and its outputs, not a usable result.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import __version__
from ..atomic import atomic_write_path
from ..errors import SMAInputError
from ..lora import enable_lora
from ..loss import tweedie_estimate
from ..metrics import motion_fidelity
from ..models.build import make_noise_scheduler, tiny_motion_unet
from ..preview import SD15_LATENT_RGB_FACTORS, latents_to_rgb
from ..synthetic import moving_shapes_clip
from ..train import TrainConfig, Trainer, TrainingClip
from ..training.model import MOTION_ADAPTER, SPATIAL_ADAPTER
from ..video import write_video
from ..viz import save_png, spectra_panel
from .arguments import DEMO_MAX_FRAMES as MAX_FRAMES
from .images import frames_to_uint8, save_gif
from .running import Outcome, report_interrupted, run_trainer, save_outcome

LATENT_SCALE = 8
FAMILY = "v3"
EVAL_TIMESTEPS = (250, 500, 750)
DEMO_LR = 3e-3
DEMO_RANK = 8
LORA_NAME = "motion_lora.safetensors"
NOTE = ("trained on the tiny random-weight demo model of `python -m sma demo`; it does not fit real AnimateDiff "
        "motion modules")


def _check(args: argparse.Namespace) -> None:
    if not 3 <= args.frames <= MAX_FRAMES:
        raise SMAInputError(f"--frames must be 3..{MAX_FRAMES} (the motion metrics need 3 frames, the v3 motion "
                            f"module's positional encoding has {MAX_FRAMES}), got {args.frames}.")
    if args.size < 64 or args.size % 64:
        raise SMAInputError(f"--size must be a multiple of 64 px (64, 128, ...), got {args.size}.")
    if args.steps < 1:
        raise SMAInputError(f"--steps must be 1 or more, got {args.steps}.")
    if args.seed < 0:
        raise SMAInputError(f"--seed must be 0 or more, got {args.seed}.")


def rgb_to_latent_matrix() -> torch.Tensor:
    """``[4, 3]``: the pseudo-inverse of the preview's latent -> RGB map, so ``latent = M @ (2 rgb - 1)``."""
    to_rgb = torch.tensor(SD15_LATENT_RGB_FACTORS, dtype=torch.float64).T  # [3, 4]: rgb = to_rgb @ latent
    return torch.linalg.pinv(to_rgb).float()


def pixels_to_demo_latents(frames: torch.Tensor) -> torch.Tensor:
    """The demo's stand-in for a VAE encoder: ``[F, H, W, 3]`` in 0..1 -> latents ``[F, 4, H/8, W/8]``.

    8x8 average pooling, then :func:`rgb_to_latent_matrix` per pixel; ``sma.preview.latents_to_rgb``
    maps the result back to the pooled frames exactly (the latents carry no extra information).
    """
    pooled = F.avg_pool2d(frames.permute(0, 3, 1, 2).float(), LATENT_SCALE)  # [F, 3, h, w]
    return torch.einsum("cr,frhw->fchw", rgb_to_latent_matrix(), pooled * 2 - 1)


def demo_text_embedding(seed: int, width: int) -> torch.Tensor:
    """The stand-in for an encoded prompt: fixed random values ``[1, 77, width]``."""
    return torch.randn(1, 77, width, generator=torch.Generator().manual_seed(seed + 7))


@torch.no_grad()
def tweedie_estimates(unet: torch.nn.Module, latents: torch.Tensor, text: torch.Tensor,
                      timesteps: tuple[int, ...], seed: int) -> torch.Tensor:
    """One-step clean estimates of ``latents [F, C, h, w]`` noised to each timestep with fixed noise:
    ``[T, F, C, h, w]``."""
    scheduler = make_noise_scheduler()
    generator = torch.Generator().manual_seed(seed + 11)
    z0 = latents[None].float()  # [1, F, C, h, w]
    frames = z0.shape[1]
    out = []
    for t in timesteps:
        noise = torch.randn(z0.shape, generator=generator)
        step = torch.tensor([t])
        x_t = scheduler.add_noise(z0, noise, step)
        eps = unet(x_t.transpose(1, 2), step, encoder_hidden_states=text.repeat(frames, 1, 1)).sample
        out.append(tweedie_estimate(x_t, eps.transpose(1, 2), scheduler.alphas_cumprod[step])[0])
    return torch.stack(out)


def _fidelity(reference: torch.Tensor, estimates: torch.Tensor) -> dict[str, float]:
    """Mean ``motion_fidelity`` numbers of the estimates ``[T, F, C, h, w]`` against ``reference``."""
    scores = [motion_fidelity(reference, estimate, layout="channels_first") for estimate in estimates]
    return {name: sum(getattr(s, name) for s in scores) / len(scores)
            for name in ("cosine", "global_distance", "local_distance")}


def _evaluate(unet: torch.nn.Module, latents: torch.Tensor, text: torch.Tensor, seed: int
              ) -> tuple[dict[str, Any], torch.Tensor]:
    """Fidelity with and without the motion LoRA, and the estimate with it at the first (least noisy) timestep."""
    enable_lora(unet, SPATIAL_ADAPTER, False)
    with_lora = tweedie_estimates(unet, latents, text, EVAL_TIMESTEPS, seed)
    enable_lora(unet, MOTION_ADAPTER, False)
    without = tweedie_estimates(unet, latents, text, EVAL_TIMESTEPS, seed)
    enable_lora(unet, MOTION_ADAPTER, True)
    report = {
        "compared": "one-step (Tweedie) estimates of the reference latents, noised with fixed noise, against "
                    "the reference latents; mean over the timesteps; spatial LoRA off",
        "timesteps": list(EVAL_TIMESTEPS),
        "with_motion_lora": _fidelity(latents, with_lora),
        "without_motion_lora": _fidelity(latents, without),
        "ideal": {"cosine": 1.0, "global_distance": 0.0, "local_distance": 0.0},
    }
    return report, with_lora[0]


def _loss_summary(history: list[dict[str, float]]) -> dict[str, Any]:
    """Mean of each loss component over the first and the last tenth of the steps (at least one step)."""
    window = max(1, len(history) // 10)

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        names = sorted({name for row in rows for name in row})
        return {n: sum(r[n] for r in rows if n in r) / sum(1 for r in rows if n in r) for n in names}

    return {"steps_averaged": window, "first": mean(history[:window]), "last": mean(history[-window:])}


def _write_json(data: dict[str, Any], path: Path) -> None:
    with atomic_write_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _single_thread_unless_set() -> None:
    """One intra-op thread unless ``OMP_NUM_THREADS`` says otherwise (see the module docstring)."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code (0, or 130 when interrupted)."""
    started = time.perf_counter()
    _check(args)
    _single_thread_unless_set()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"lora": out / LORA_NAME, "reference_video": out / "reference.mp4", "reference_gif": out / "reference.gif",
             "loss_curve": out / "loss_curve.png", "spectra": out / "spectra.png",
             "estimate_gif": out / "estimate.gif", "summary": out / "summary.json"}

    clip = moving_shapes_clip(frames=args.frames, height=args.size, width=args.size, seed=args.seed)
    write_video(files["reference_video"], clip.frames, clip.fps)
    save_gif(frames_to_uint8(clip.frames.permute(0, 3, 1, 2)), files["reference_gif"], clip.fps)
    latents = pixels_to_demo_latents(clip.frames)
    unet = tiny_motion_unet(FAMILY, seed=args.seed)
    text = demo_text_embedding(args.seed, int(unet.config.cross_attention_dim))
    config = TrainConfig(steps=args.steps, seed=args.seed, lr_temporal=DEMO_LR, lr_spatial=DEMO_LR, rank=DEMO_RANK,
                         precision="fp32", gradient_checkpointing=False)
    trainer = Trainer(unet, [TrainingClip(latents, text, "moving shapes")], make_noise_scheduler(), config,
                      device="cpu")
    print(f"training a rank-{DEMO_RANK} motion LoRA for {args.steps} steps on {args.frames} frames of "
          f"{args.size}x{args.size} px (tiny demo model, CPU)")
    trained = time.perf_counter()
    outcome: Outcome = run_trainer(trainer)
    training_seconds = time.perf_counter() - trained
    lora, _ = save_outcome(outcome, files["lora"], {"demo": True, "note": NOTE}, files["loss_curve"])
    if outcome.interrupted:
        return report_interrupted(outcome, lora)

    fidelity, estimate = _evaluate(unet, latents, text, args.seed)
    save_png(spectra_panel(latents, estimate, labels=("reference latents", f"estimate with LoRA, t={EVAL_TIMESTEPS[0]}"),
                           layout="channels_first"), files["spectra"])
    save_gif(frames_to_uint8(latents_to_rgb(estimate), LATENT_SCALE), files["estimate_gif"], clip.fps)
    summary = {
        "command": "demo", "version": __version__,
        "settings": {"steps": args.steps, "frames": args.frames, "size": args.size, "seed": args.seed,
                     "rank": DEMO_RANK, "lr": DEMO_LR, "family": FAMILY, "sma_mode": config.sma_mode},
        "seconds": {"training": round(training_seconds, 2), "total": round(time.perf_counter() - started, 2)},
        "loss": _loss_summary(outcome.result.losses),
        "motion_fidelity": fidelity,
        "files": {name: str(path) for name, path in files.items()},
    }
    _write_json(summary, files["summary"])
    _print_report(summary, files)
    return 0


def _print_report(summary: dict[str, Any], files: dict[str, Path]) -> None:
    loss, fid = summary["loss"], summary["motion_fidelity"]
    on, off = fid["with_motion_lora"], fid["without_motion_lora"]
    print(f"done in {summary['seconds']['total']:.1f} s (training {summary['seconds']['training']:.1f} s)")
    print(f"loss: {loss['first']['loss']:.4f} -> {loss['last']['loss']:.4f} "
          f"(mean of the first / last {loss['steps_averaged']} steps)")
    print("motion of one-step estimates vs the reference, without -> with the motion LoRA: "
          f"wavelet distance {off['global_distance']:.3f} -> {on['global_distance']:.3f}, Fourier distance "
          f"{off['local_distance']:.3f} -> {on['local_distance']:.3f} (0 = same motion), cosine "
          f"{off['cosine']:.3f} -> {on['cosine']:.3f} (1 = same motion)")
    print("files:")
    for name, path in files.items():
        print(f"  {name:16s} {path}")
    print(f"next: `python -m sma inspect {files['lora']}` shows what is in the LoRA. This demo LoRA fits only the "
          "tiny demo model; to get one for AnimateDiff, train on your own SD1.5 checkpoint and motion module with "
          "`python -m sma train --checkpoint ... --motion-module ... --video ... --prompt ... --out my_motion.safetensors`"
          " and copy the result into ComfyUI/models/animatediff_motion_lora.")
