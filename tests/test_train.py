"""The motion-LoRA trainer on the tiny random model (CPU): learning, export, cancel, resume, NaN, checks.

Training runs use the tiny ``UNetMotionModel`` (3.2M values) on 8-frame 8x8 latents. Learning is
measured on held-fixed (noise, timestep) pairs, evaluated on a fresh model with the exported LoRA
applied, so the whole chain train -> export -> file -> load -> apply is what gets better.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import comfyui_path
from sma.errors import SMAInputError
from sma.loss import SMAConfig, SMALoss, timestep_weight, tweedie_estimate
from sma.lora import LoRAConfig, adapter_names, add_motion_lora, apply_motion_lora, load_motion_lora, save_motion_lora
from sma.models.build import make_noise_scheduler, tiny_motion_unet
from sma.models.detect import MotionModuleInfo
from sma.preview import SD15_LATENT_RGB_FACTORS, latents_to_rgb
from sma.training import (
    StepHook,
    TrainCallbacks,
    TrainConfig,
    Trainer,
    TrainingClip,
    TrainingDiverged,
    debias,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
)
from sma.training import checkpoint as ckpt
from sma.training.data import clips_for_step, make_batch
from sma.training.memory import (
    disable_full_gradient_checkpointing,
    enable_full_gradient_checkpointing,
    motion_modules,
    spatial_transformers,
    motion_modules_bypassed,
    set_attention_slicing,
)
from sma.training.objectives import diffusion_target, residual_alignment
from sma.training.gradient_share import gradient_share, sma_gradient
from sma.training.optim import lr_factor
from sma.training.config import SECTIONS, SETTINGS, MotionLoRASettings, saved_config

TEXT_DIM = 32  # cross-attention width of the tiny model
FAST = dict(rank=4, gradient_checkpointing=False)


def square_clip(frames: int = 8, size: int = 8, speed: int = 1) -> torch.Tensor:
    """Latents ``[F, 4, size, size]``: a 3x3 square (+1) on a -0.5 background moving ``speed`` px/frame right."""
    z = torch.full((frames, 4, size, size), -0.5)
    for f in range(frames):
        z[f, :, 2:5, 1:4] = 1.0
        z[f] = torch.roll(z[f], shifts=f * speed, dims=-1)
    return z


def clip(frames: int = 8, size: int = 8, name: str = "") -> TrainingClip:
    return TrainingClip(square_clip(frames, size), torch.zeros(1, 77, TEXT_DIM), name)


def lora_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.named_lora.items()}


@pytest.fixture(scope="module")
def v3_model():
    """A tiny v3 model for checks that never reach ``run`` (construction does not modify it)."""
    return tiny_motion_unet("v3", seed=0)


# --- learning -------------------------------------------------------------------------------------------

EVAL_T = torch.tensor([100, 250, 400, 550, 700, 850])


def evaluate(model, z: torch.Tensor) -> dict[str, float]:
    """Denoising MSE and SMA terms of ``model`` on fixed (noise, t) pairs for the clip ``z [F, 4, h, w]``."""
    scheduler = make_noise_scheduler()
    k = len(EVAL_T)
    noise = torch.randn((k, *z.shape), generator=torch.Generator().manual_seed(123))
    z0 = z[None].expand(k, *z.shape)
    x_t = scheduler.add_noise(z0, noise, EVAL_T)
    text = torch.zeros(k * z.shape[0], 77, TEXT_DIM)
    with torch.no_grad():
        eps = model(x_t.transpose(1, 2), EVAL_T, encoder_hidden_states=text).sample.transpose(1, 2)
    abar = scheduler.alphas_cumprod[EVAL_T]
    sma = SMALoss(SMAConfig(sma_mode="plus"))(tweedie_estimate(x_t, eps, abar), z0, abar)
    return {"mse": F.mse_loss(eps, noise).item(), "global": sma.global_.item(), "local": sma.local.item()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """40 steps on the translating square (motion LoRA on attention + ff + proj), saved to a file."""
    unet = tiny_motion_unet("v3", seed=0)
    config = TrainConfig.from_flat(steps=40, learning_rate=5e-3, spatial_path=False, targets=("attention", "ff", "proj"),
                         timestep_min=50, timestep_max=950, **FAST)
    trainer = Trainer(unet, [clip()], make_noise_scheduler(), config)
    result = trainer.run()
    path = save_motion_lora(tmp_path_factory.mktemp("lora") / "square.safetensors", result.lora_state, result.metadata)
    return trainer, result, path


def test_training_lowers_denoising_and_sma_losses_on_fixed_pairs(trained):
    _, _, path = trained
    z = square_clip()
    before = evaluate(tiny_motion_unet("v3", seed=0), z)
    model = tiny_motion_unet("v3", seed=0)
    state, _ = load_motion_lora(path)
    apply_motion_lora(model, state, 1.0)
    after = evaluate(model, z)
    # measured: mse 1.107 -> 0.892 (-19%), global 1.357 -> 1.231 (-9%), local 0.736 -> 0.684 (-7%)
    assert after["mse"] < 0.9 * before["mse"], (before, after)
    assert after["global"] < 0.95 * before["global"], (before, after)
    assert after["local"] < 0.97 * before["local"], (before, after)


def test_history_logs_every_component_and_training_mse_falls(trained):
    _, result, _ = trained
    assert len(result.losses) == 40 and result.step == 40 and not result.stopped_early
    expected = {"mse", "debias", "sma", "sma_global", "sma_local", "sma_local_amplitude", "sma_local_phase",
                "temporal", "loss"}
    assert set(result.losses[0]) == expected  # spatial path off in this run
    for row in result.losses:
        assert all(math.isfinite(v) for v in row.values())
        assert row["sma"] == pytest.approx(0.4 * row["sma_global"] + 0.2 * row["sma_local"], rel=1e-5)
        assert row["temporal"] == pytest.approx(row["mse"] + row["debias"] + row["sma"], rel=1e-5)
    first = np.mean([r["mse"] for r in result.losses[:10]])
    last = np.mean([r["mse"] for r in result.losses[-10:]])
    assert last < 0.95 * first


def test_exported_lora_reloads_and_reproduces_the_trained_model(trained):
    trainer, result, path = trained
    state, metadata = load_motion_lora(path)
    assert set(state) == set(result.lora_state)
    assert all(v.dtype == torch.float16 for v in result.lora_state.values())
    assert not any("alpha" in k for k in state)
    assert metadata["steps"] == 40 and metadata["family"] == "v3" and metadata["frames"] == 8
    assert metadata["rank"] == 4 and metadata["sma_mode"] == "plus" and metadata["width"] == 64

    x = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([400])
    text = torch.zeros(8, 77, TEXT_DIM)
    base = tiny_motion_unet("v3", seed=0)
    with torch.no_grad():
        plain = base(x, t, encoder_hidden_states=text).sample
        apply_motion_lora(base, state, 1.0)
        loaded = base(x, t, encoder_hidden_states=text).sample
        trainer.unet.eval()
        original = trainer.unet(x, t, encoder_hidden_states=text).sample
    change = (loaded - plain).abs().max().item()
    assert change > 0.05
    assert (loaded - original).abs().max().item() < 0.01 * change  # fp16 export of the fp32 LoRA


# --- cancel and resume ----------------------------------------------------------------------------------

def resume_config(**changes) -> TrainConfig:
    """Spatial path on, cosine schedule with warm-up, clipping, two clips of different lengths."""
    return TrainConfig.from_flat(steps=6, seed=3, lr_schedule="cosine", warmup_steps=2, max_grad_norm=0.05, **FAST, **changes)


def resume_clips() -> list[TrainingClip]:
    return [clip(8, name="a"), clip(11, name="b")]


def stop_after(k: int) -> TrainCallbacks:
    done = []
    return TrainCallbacks(on_step=lambda report: done.append(report.step), should_stop=lambda: len(done) >= k)


@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    whole = Trainer(tiny_motion_unet("v3", seed=0), resume_clips(), make_noise_scheduler(), resume_config())
    whole_result = whole.run()
    config = resume_config(checkpoint_every=2, checkpoint_dir=str(folder))
    first = Trainer(tiny_motion_unet("v3", seed=0), resume_clips(), make_noise_scheduler(), config)
    first_result = first.run(stop_after(3))
    files_after_cancel = [p.name for p in list_checkpoints(folder)]
    second = Trainer(tiny_motion_unet("v3", seed=0), resume_clips(), make_noise_scheduler(), config)
    second_result = second.run(resume_from=folder)
    return dict(whole=whole, whole_result=whole_result, first_result=first_result, second=second,
                second_result=second_result, files_after_cancel=files_after_cancel, folder=folder)


def test_cancel_returns_a_valid_lora_with_the_steps_done(resume_runs, tmp_path):
    result = resume_runs["first_result"]
    assert result.stopped_early and result.step == 3 and len(result.losses) == 3
    assert result.metadata["steps_done"] == 3 and result.metadata["stopped_early"] is True
    path = save_motion_lora(tmp_path / "cancelled.safetensors", result.lora_state, result.metadata)
    state, metadata = load_motion_lora(path)
    assert (metadata["steps_done"], metadata["steps"]) == (3, 6)  # done, planned
    assert any(v.abs().max() > 0 for k, v in state.items() if k.endswith("up.weight"))  # it learned something
    # a checkpoint at step 2 (every 2) and one written when cancelled at step 3
    assert resume_runs["files_after_cancel"] == ["checkpoint-000002.safetensors", "checkpoint-000003.safetensors"]


def test_resume_is_bit_identical_to_an_uninterrupted_run(resume_runs):
    whole, second = resume_runs["whole"], resume_runs["second"]
    a, b = lora_weights(whole), lora_weights(second)
    assert set(a) == set(b) and any(".spatial." in k for k in a)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ra, rb = resume_runs["whole_result"], resume_runs["second_result"]
    assert rb.step == 6 and not rb.stopped_early
    for key in ra.lora_state:
        assert torch.equal(ra.lora_state[key], rb.lora_state[key]), key
    assert ra.losses == rb.losses  # same floats, including the 3 steps before the cancel
    assert [g["lr"] for g in whole.optimizer.param_groups] == [g["lr"] for g in second.optimizer.param_groups]
    assert latest_checkpoint(resume_runs["folder"]).name == "checkpoint-000006.safetensors"


def test_a_hook_on_the_loop_sees_every_step_and_the_estimate_it_asks_for():
    """An extra :class:`StepHook`: called after every step with the history so far, given ``z0_hat`` exactly on
    the steps it asks for (shape of a window), ended once; the run's LoRA is the same as without it."""
    class Recorder(StepHook):
        def __init__(self):
            self.calls, self.ends = [], []

        def wants_estimate(self, step):
            return step == 2

        def after_step(self, trainer, step, history, estimate):
            self.calls.append((step, len(history), None if estimate is None else tuple(estimate.shape)))

        def at_end(self, trainer, step, history, stopped):
            self.ends.append((step, stopped))

    recorder = Recorder()
    config = resume_config().with_settings(steps=3)
    with_hook = Trainer(tiny_motion_unet("v3", seed=0), resume_clips(), make_noise_scheduler(), config)
    result = with_hook.run(hooks=[recorder])
    plain = Trainer(tiny_motion_unet("v3", seed=0), resume_clips(), make_noise_scheduler(), config).run()
    assert recorder.calls == [(1, 1, None), (2, 2, (8, 4, 8, 8)), (3, 3, None)] and recorder.ends == [(3, False)]
    assert result.last_preview is None  # previews are off: the hook's estimate was its own
    assert all(torch.equal(result.lora_state[k], plain.lora_state[k]) for k in plain.lora_state)


def test_resume_refuses_changed_settings(resume_runs):
    trainer = Trainer(tiny_motion_unet("v3", seed=0), resume_clips(), make_noise_scheduler(),
                      resume_config(learning_rate=1e-3))
    with pytest.raises(SMAInputError, match="learning_rate: 0.0005 -> 0.001"):
        trainer.run(resume_from=resume_runs["folder"])


# --- divergence -----------------------------------------------------------------------------------------

class NaNAtCall:
    """Wraps the SMA loss; its ``total`` is NaN on the ``n``-th call (a diverging run)."""

    def __init__(self, loss, n: int) -> None:
        self.loss, self.n, self.calls = loss, n, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        out = self.loss(*args, **kwargs)
        return replace(out, total=out.total * float("nan")) if self.calls == self.n else out


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = TrainConfig.from_flat(steps=5, checkpoint_every=1, checkpoint_dir=str(tmp_path), **FAST)
    trainer = Trainer(tiny_motion_unet("v3", seed=0), [clip()], make_noise_scheduler(), config)
    trainer.sma_loss = NaNAtCall(trainer.sma_loss, 3)
    with pytest.raises(TrainingDiverged, match="step 3") as caught:
        trainer.run()
    assert caught.value.step == 3 and "sma" in caught.value.component
    assert caught.value.checkpoint == tmp_path / "checkpoint-000002.safetensors"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-000001.safetensors",
                                                            "checkpoint-000002.safetensors"]
    tensors, state = load_checkpoint(caught.value.checkpoint)
    assert state["step"] == 2 and len(state["history"]) == 2
    for name, value in lora_weights(trainer).items():  # the failed step changed nothing
        assert torch.equal(tensors[f"lora.{name}"], value), name


# --- paths, precision, memory ---------------------------------------------------------------------------

def test_spatial_step_trains_only_the_spatial_lora_and_temporal_step_only_the_motion_lora():
    config = TrainConfig.from_flat(steps=1, spatial_skip_prob=0.0, **FAST)
    trainer = Trainer(tiny_motion_unet("v3", seed=0), [clip()], make_noise_scheduler(), config)
    trainer._setup()
    batch = make_batch(trainer.clips, [0], 8, torch.Generator().manual_seed(0), trainer.device)
    noise = torch.randn(batch.latents.shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([300])
    x_t = trainer.scheduler.add_noise(batch.latents, noise, t)

    trainer._spatial_pass(x_t, noise, t, batch.text, torch.tensor([2]))
    assert all(p.grad is None for p in trainer.temporal_params)
    assert sum(p.grad.abs().sum().item() for p in trainer.spatial_params if p.grad is not None) > 0
    trainer.optimizer.zero_grad(set_to_none=True)

    trainer._temporal_pass(batch, x_t, noise, t, torch.tensor([0]), True, want_z0_hat=False)
    assert all(p.grad is None for p in trainer.spatial_params)
    assert sum(p.grad.abs().sum().item() for p in trainer.temporal_params if p.grad is not None) > 0
    assert all(p.requires_grad for p in trainer.spatial_params)  # unfrozen again afterwards


def test_bypassed_motion_modules_make_frames_independent():
    unet = tiny_motion_unet("v3", seed=0)
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    changed = x.clone()
    changed[:, :, 0] += 1.0
    t, text = torch.tensor([500]), torch.zeros(4, 77, TEXT_DIM)

    def run(sample):
        with torch.no_grad():
            return unet(sample, t, encoder_hidden_states=text).sample

    assert (run(x)[:, :, 2] - run(changed)[:, :, 2]).abs().max() > 1e-3  # motion modules mix frames
    with motion_modules_bypassed(unet):
        assert torch.allclose(run(x)[:, :, 2], run(changed)[:, :, 2], atol=1e-6)
        single = unet(x[:, :, 2:3], t, encoder_hidden_states=text[:1]).sample
        assert torch.allclose(run(x)[:, :, 2:3], single, atol=1e-5)
    assert (run(x)[:, :, 2] - run(changed)[:, :, 2]).abs().max() > 1e-3  # restored afterwards


def saved_activation_values(checkpointing: str) -> int:
    """Values autograd keeps from one forward pass outside checkpointed regions."""
    unet = tiny_motion_unet("v3", seed=0)
    unet.requires_grad_(False)
    add_motion_lora(unet, LoRAConfig(rank=4))
    if checkpointing == "diffusers":
        unet.enable_gradient_checkpointing()
    elif checkpointing == "full":
        enable_full_gradient_checkpointing(unet)
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel()
        return tensor

    x = torch.randn(1, 4, 8, 8, 8)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = unet(x, torch.tensor([500]), encoder_hidden_states=torch.zeros(8, 77, TEXT_DIM)).sample
    out.square().mean().backward()
    return total


def test_gradient_checkpointing_covers_the_motion_modules():
    none, diffusers_only, full = (saved_activation_values(m) for m in ("none", "diffusers", "full"))
    # measured: 8.9M, 4.9M, 0.56M values (1.1M before spatial transformers were checkpointed whole)
    assert diffusers_only < 0.7 * none
    assert full < 0.15 * diffusers_only


def values_saved_by_spatial_transformers(checkpointing: str) -> list[tuple[int, int]]:
    """(values kept for backward outside checkpointed regions, input values) of each spatial transformer."""
    unet = tiny_motion_unet("v3", seed=0)
    unet.requires_grad_(False)
    add_motion_lora(unet, LoRAConfig(rank=4))
    if checkpointing == "diffusers":
        unet.enable_gradient_checkpointing()
    else:
        enable_full_gradient_checkpointing(unet)
    counts = []
    for transformer in spatial_transformers(unet):
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel()
            return tensor

        x = torch.randn(8, transformer.config.in_channels, 4, 4, requires_grad=True)
        context = torch.zeros(8, 77, TEXT_DIM)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            transformer(x, encoder_hidden_states=context, return_dict=False)
        counts.append((total, x.numel()))
    return counts


def test_spatial_transformers_are_checkpointed_whole():
    diffusers_only = values_saved_by_spatial_transformers("diffusers")
    full = values_saved_by_spatial_transformers("full")
    assert len(full) == 16  # SD1.5's layout: 2 per down block with attention, 1 mid, 3 per up block
    # diffusers' checkpointing keeps the GroupNorm's input and output and the projections' inputs and outputs
    assert all(saved >= 4 * inputs for saved, inputs in diffusers_only)
    assert all(saved == inputs for saved, inputs in full)  # only the input; the rest is recomputed


def test_full_checkpointing_is_undone():
    unet = tiny_motion_unet("v3", seed=0)
    enable_full_gradient_checkpointing(unet)
    enable_full_gradient_checkpointing(unet)  # idempotent
    assert all(not t.gradient_checkpointing and "forward" in vars(t) for t in spatial_transformers(unet))
    disable_full_gradient_checkpointing(unet)
    assert not unet.is_gradient_checkpointing
    assert all("forward" not in vars(m) for m in [*spatial_transformers(unet), *motion_modules(unet)])


def test_gradient_checkpointing_gives_the_same_training_step():
    runs = []
    for checkpointing in (False, True):
        config = TrainConfig.from_flat(steps=1, rank=4, spatial_skip_prob=0.0, gradient_checkpointing=checkpointing)
        trainer = Trainer(tiny_motion_unet("v3", seed=0), [clip()], make_noise_scheduler(), config)
        runs.append((trainer.run(), lora_weights(trainer)))
    (first, wa), (second, wb) = runs
    assert first.losses[0] == pytest.approx(second.losses[0], rel=1e-6)
    for name in wa:
        assert torch.allclose(wa[name], wb[name], rtol=1e-5, atol=1e-8), name


def test_model_is_restored_after_training_and_inference_mode_weights_are_handled():
    config = TrainConfig.from_flat(steps=1, rank=4, gradient_checkpointing=True, attention_slice=3)
    with torch.inference_mode():  # how ComfyUI builds models, makes inputs and runs nodes
        unet = tiny_motion_unet("v3", seed=0)
        result = Trainer(unet, [clip()], make_noise_scheduler(), config).run()
    assert math.isfinite(result.losses[0]["loss"])
    assert not unet.is_gradient_checkpointing and not unet.training
    assert all("forward" not in vars(m) for m in motion_modules(unet))
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"AttnProcessor2_0"}


def test_attention_slicing_gives_the_same_output():
    unet = tiny_motion_unet("v3", seed=0)
    x = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    args = (torch.tensor([300]),)
    kwargs = dict(encoder_hidden_states=torch.randn(8, 77, TEXT_DIM, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        whole = unet(x, *args, **kwargs).sample
        set_attention_slicing(unet, 2)
        sliced = unet(x, *args, **kwargs).sample
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"SlicedAttnProcessor"}
    assert torch.allclose(whole, sliced, atol=1e-5)


@pytest.mark.parametrize("precision, scaler", [("bf16", False), ("fp16", True)])
def test_half_precision_runs_with_fp32_lora_weights(precision, scaler):
    config = TrainConfig.from_flat(steps=2, precision=precision, spatial_skip_prob=0.0, **FAST)
    unet = tiny_motion_unet("v3", seed=0)
    trainer = Trainer(unet, [clip()], make_noise_scheduler(), config)
    result = trainer.run()
    assert all(math.isfinite(v) for row in result.losses for v in row.values())
    assert unet.conv_in.weight.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert all(p.dtype == torch.float32 for p in trainer.named_lora.values())
    assert trainer.grad_scaler.is_enabled() is scaler
    assert any(v.abs().max() > 0 for k, v in result.lora_state.items() if k.endswith("up.weight"))


def test_v_prediction_target_and_run():
    scheduler = make_noise_scheduler("v_prediction")
    z, noise = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    t = torch.tensor([10, 900])
    a = scheduler.alphas_cumprod[t].reshape(2, 1, 1, 1, 1)
    assert torch.allclose(diffusion_target(scheduler, z, noise, t), a.sqrt() * noise - (1 - a).sqrt() * z, atol=1e-6)
    result = Trainer(tiny_motion_unet("v3", seed=0), [clip()], scheduler, TrainConfig.from_flat(steps=2, **FAST)).run()
    assert result.metadata["prediction_type"] == "v_prediction"
    assert all(math.isfinite(v) for row in result.losses for v in row.values())


def test_batches_of_clips_with_accumulation_and_previews():
    previews, reports = [], []
    config = TrainConfig.from_flat(steps=2, clips_per_step=2, grad_accum=2, preview_every=1, keep_spatial=True, **FAST)
    callbacks = TrainCallbacks(on_step=reports.append, on_preview=lambda step, frames: previews.append((step, frames)))
    trainer = Trainer(tiny_motion_unet("v3", seed=0), [clip(8), clip(10), clip(9)], make_noise_scheduler(), config)
    result = trainer.run(callbacks)
    assert all(".motion_modules." in k for k in result.lora_state)  # the spatial LoRA is never in the ADE file
    assert result.spatial_state and all(".attentions." in k for k in result.spatial_state)
    assert [r.step for r in reports] == [1, 2] and all(r.total == 2 for r in reports)
    assert set(reports[0].learning_rates) == {"temporal", "spatial"}
    assert reports[0].learning_rates["temporal"] == 5e-4 and reports[0].learning_rates["spatial"] == 1e-4
    assert [s for s, _ in previews] == [1, 2]
    frames = previews[-1][1]
    assert frames.shape == (8, 3, 8, 8) and frames.min() >= 0 and frames.max() <= 1
    assert torch.equal(result.last_preview, frames)


# --- input checks (before any heavy work) ---------------------------------------------------------------

def test_config_validation_messages():
    for bad, field in [(dict(steps=0), "steps"), (dict(steps=-3), "steps"), (dict(learning_rate=0.0), "learning_rate"),
                       (dict(spatial_learning_rate=-1e-4), "spatial_learning_rate"), (dict(rank=0), "rank"),
                       (dict(grad_accum=0), "grad_accum"),
                       (dict(sma_mode="fancy"), "plus, paper, off"), (dict(optimizer="sgd"), "adamw"),
                       (dict(timestep_min=500, timestep_max=100), "timestep_max"), (dict(window=1), "window"),
                       (dict(lr_schedule="linear"), "constant, cosine"), (dict(precision="fp8"), "auto"),
                       (dict(checkpoint_every=5), "checkpoint_dir"),
                       (dict(learning_rate=float("nan")), "learning_rate"), (dict(spatial_path=1), "true or false"),
                       (dict(targets=("ff",)), "attention"), (dict(rank=2048), "rank must be at most 1024"),
                       (dict(steps=100_001), "steps must be at most 100000"), (dict(lr_temporal=1e-3), "unknown")]:
        with pytest.raises(SMAInputError, match=field):
            TrainConfig.from_flat(**bad)
    config = TrainConfig.from_flat(steps=7, targets=["attention", "ff"])
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_clip_checks(v3_model):
    sched = make_noise_scheduler()
    text = torch.zeros(1, 77, TEXT_DIM)
    cases = [
        ([TrainingClip(torch.zeros(1, 4, 8, 8), text)], {}, "at least 2"),
        ([clip(8)], dict(window=10), "window = 10 frames requested but clip 0 has 8"),
        ([clip(40)], dict(window=33), "32 positions"),
        ([clip(8, 8), clip(8, 16)], dict(clips_per_step=2), "same latent size"),
        ([TrainingClip(torch.zeros(8, 3, 8, 8), text)], {}, "3 channels"),
        ([TrainingClip(square_clip(), torch.zeros(1, 77, 768))], {}, "width 768"),
        ([TrainingClip(square_clip(), torch.zeros(77, TEXT_DIM))], {}, "text_embedding must be"),
        ([TrainingClip(square_clip() * float("nan"), text)], {}, "finite"),
        ([], {}, "at least one"),
        ([clip(8)], dict(timestep_max=1000), "timestep_max must be < 1000"),
        ([clip(4)], dict(wavelet_levels=3), "level"),
        ([clip(8)], dict(optimizer="adamw8bit"), "adamw8bit"),
    ]
    for clips, changes, message in cases:
        with pytest.raises(SMAInputError, match=message):
            Trainer(v3_model, clips, sched, TrainConfig.from_flat(**changes))
    assert adapter_names(v3_model) == []  # nothing was set up


def test_model_checks(v3_model):
    sched = make_noise_scheduler()
    with pytest.raises(SMAInputError, match="mid-block"):
        Trainer(v3_model, [clip()], sched, motion_info=MotionModuleInfo("v2", "SD1.5", 32, True))
    with pytest.raises(SMAInputError, match="24 positions"):
        Trainer(v3_model, [clip()], sched, motion_info=MotionModuleInfo("v1", "SD1.5", 24, False))
    with pytest.raises(SMAInputError, match="SD1.5"):
        Trainer(v3_model, [clip()], sched, motion_info=MotionModuleInfo("SDXL", "SDXL", 32, False))
    with pytest.raises(SMAInputError, match="UNetMotionModel"):
        Trainer(torch.nn.Linear(2, 2), [clip()], sched)


def test_training_window_follows_the_positional_encoding(v3_model):
    assert Trainer(v3_model, [clip(40)], make_noise_scheduler()).window == 32
    assert Trainer(v3_model, [clip(40), clip(12)], make_noise_scheduler()).window == 12
    v1 = tiny_motion_unet("v1", seed=0)
    assert Trainer(v1, [clip(40)], make_noise_scheduler()).window == 24
    with pytest.raises(SMAInputError, match="24 positions"):
        Trainer(v1, [clip(40)], make_noise_scheduler(), TrainConfig.from_flat(window=32))
    g = torch.Generator().manual_seed(0)
    starts = {make_batch([clip(40)], [0], 32, g, torch.device("cpu")).starts[0] for _ in range(200)}
    assert starts == set(range(9))  # every window of 32 in 40 frames gets drawn


def test_each_clip_once_per_epoch():
    order = [i for step in range(12) for i in clips_for_step(step, 3, 2, seed=1)]
    for epoch in range(8):
        assert sorted(order[3 * epoch:3 * epoch + 3]) == [0, 1, 2]
    assert clips_for_step(5, 3, 2, seed=1) == clips_for_step(5, 3, 2, seed=1)


# --- pieces ---------------------------------------------------------------------------------------------

def test_debias_matches_the_formula():
    x = torch.randn(2, 4, 3, 2, 2)
    anchor = torch.tensor([1, 3])
    out = debias(x, anchor, beta=1.0)
    for b in range(2):
        for f in range(4):
            assert torch.allclose(out[b, f], math.sqrt(2.0) * x[b, f] - x[b, anchor[b]], atol=1e-6)
    static = x[:, :1].expand(2, 4, 3, 2, 2)  # a still clip keeps only (sqrt(2) - 1) of its appearance
    assert torch.allclose(debias(static, anchor), (math.sqrt(2.0) - 1) * static, atol=1e-6)
    assert torch.allclose(debias(x, anchor, beta=0.0), x)


def test_lr_schedule_shapes():
    constant = lr_factor("constant", 2, 10)
    cosine = lr_factor("cosine", 2, 10)
    assert [constant(s) for s in range(4)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert [cosine(s) for s in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    decay = [cosine(s) for s in range(2, 11)]
    assert all(a > b for a, b in zip(decay, decay[1:])) and decay[-1] == pytest.approx(0.0, abs=1e-12)
    assert cosine(6) == pytest.approx(0.5)  # half-way through the decay


def test_checkpoint_file_round_trip_and_pruning(tmp_path):
    tensors = {"lora.a": torch.randn(3, 2), "rng.x": torch.arange(5, dtype=torch.uint8)}
    for step in (1, 2, 3):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, step), tensors, {"step": step, "lr": 0.1 + 0.2})
    ckpt.prune_checkpoints(tmp_path, 2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-000002.safetensors",
                                                            "checkpoint-000003.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in list_checkpoints(tmp_path)]  # no temp files
    loaded, state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["step"] == 3 and state["lr"] == 0.1 + 0.2  # floats survive JSON exactly
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(SMAInputError, match="not an SMA training checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_rng_states_restore_every_generator():
    generator = torch.Generator().manual_seed(9)
    tensors, plain = ckpt.capture_rng(generator)
    first = (torch.rand(3, generator=generator), torch.rand(3), random.random(), np.random.rand())
    ckpt.restore_rng(generator, tensors, plain)
    second = (torch.rand(3, generator=generator), torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]) and first[2:] == second[2:]


def test_latent_preview_factors():
    pixel = torch.zeros(1, 4, 1, 1)
    pixel[0, 0] = 1.0
    assert latents_to_rgb(pixel)[0, :, 0, 0].tolist() == pytest.approx([0.6756, 0.61485, 0.66135])
    pixel[0] = torch.tensor([0.0, 0.0, 0.0, -1.0])[:, None, None]
    assert latents_to_rgb(pixel)[0, :, 0, 0].tolist() == pytest.approx([0.606, 0.6308, 0.85885])
    big = latents_to_rgb(torch.full((2, 4, 3, 5), 10.0), upscale=8)
    assert big.shape == (2, 3, 24, 40) and big.max() == 1.0  # clamped


def test_latent_preview_factors_equal_comfyui_sd15():
    host = comfyui_path()
    if host is None:
        pytest.skip("ComfyUI host not set up (COMFYUI_PATH); the typed factors are checked by the test above")
    tree = ast.parse((host / "comfy" / "latent_formats.py").read_text())
    sd15 = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SD15")
    assigned = [n for n in ast.walk(sd15) if isinstance(n, ast.Assign)
                and any(getattr(t, "attr", None) == "latent_rgb_factors" for t in n.targets)]
    assert tuple(map(tuple, ast.literal_eval(assigned[0].value))) == SD15_LATENT_RGB_FACTORS


def test_scheduler_must_be_animatediffs_linear_schedule(v3_model):
    from diffusers import DDPMScheduler

    sd15 = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    with pytest.raises(SMAInputError, match="linear betas 0.00085..0.012"):
        Trainer(v3_model, [clip()], sd15)
    sample = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", prediction_type="sample")
    with pytest.raises(SMAInputError, match="epsilon, v_prediction"):
        Trainer(v3_model, [clip()], sample)


def test_plain_diffusers_model_gets_ade_per_frame_motion_norms():
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    from sma.models.config import motion_adapter_config, unet_config
    from sma.models.norms import FrameGroupNorm

    torch.manual_seed(0)
    unet = UNetMotionModel.from_unet2d(UNet2DConditionModel.from_config(unet_config("tiny")),
                                       MotionAdapter.from_config(motion_adapter_config("v3", "tiny")))
    norms = [m for n, m in unet.named_modules() if ".motion_modules." in f".{n}" and isinstance(m, torch.nn.GroupNorm)]
    assert norms and not any(isinstance(m, FrameGroupNorm) for m in norms)  # diffusers: across frames
    Trainer(unet, [clip()], make_noise_scheduler(), TrainConfig.from_flat(steps=1, **FAST)).run()
    norms = [m for n, m in unet.named_modules() if ".motion_modules." in f".{n}" and isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(isinstance(m, FrameGroupNorm) and m.mode == "per_frame" for m in norms)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_group_norms_run_in_the_autocast_dtype_and_keep_no_fp32_copies(dtype):
    """Under autocast the trainer's GroupNorms (spatial and temporal) return, and keep for backward, tensors
    in autocast's dtype, not fp32 as CUDA's autocast would; the values are those of an fp32 GroupNorm."""
    from sma.models.norms import FrameGroupNorm, LeanGroupNorm, group_norm_in_autocast_dtype

    unet = tiny_motion_unet("v3", seed=0)
    Trainer(unet, [clip()], make_noise_scheduler(), TrainConfig.from_flat(steps=1, **FAST)).run()
    norms = [m for m in unet.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(isinstance(m, LeanGroupNorm) for m in norms)
    assert any(isinstance(m, FrameGroupNorm) for m in norms) and any(type(m) is LeanGroupNorm for m in norms)

    x = (torch.randn(4, 32, 6, 6, generator=torch.Generator().manual_seed(0)) * 3 + 1).to(dtype).requires_grad_()
    weight, bias = torch.rand(32, dtype=dtype) + 0.5, torch.randn(32, dtype=dtype)
    saved: list[torch.dtype] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.numel() == x.numel():
            saved.append(tensor.dtype)
        return tensor

    with torch.autocast("cpu", dtype=dtype), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = torch.nn.functional.silu(group_norm_in_autocast_dtype(x, 8, weight, bias, 1e-5))
    assert out.dtype == dtype and saved and set(saved) == {dtype}
    reference = torch.nn.functional.silu(torch.nn.functional.group_norm(x.double(), 8, weight.double(), bias.double()))
    assert (out.double() - reference).abs().max() < 0.02 * reference.abs().max()
    out.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad).all()
    plain = group_norm_in_autocast_dtype(x.detach().float(), 8, weight.float(), bias.float(), 1e-5)  # no autocast
    assert torch.equal(plain, torch.nn.functional.group_norm(x.detach().float(), 8, weight.float(), bias.float()))


@pytest.mark.parametrize("family", ["v1", "v2", "AnimateLCM"])
def test_other_families_train_with_checkpointing(family):
    """v1: GroupNorms across frames everywhere (also under checkpointing); v2: mid-block motion module."""
    unet = tiny_motion_unet(family, seed=0)
    config = TrainConfig.from_flat(steps=1, rank=4, spatial_skip_prob=0.0, gradient_checkpointing=True)
    result = Trainer(unet, [clip()], make_noise_scheduler(), config).run()
    assert result.metadata["family"] == family
    assert all(math.isfinite(v) for v in result.losses[0].values())
    assert any(k.startswith("mid_block.") for k in result.lora_state) == (family in ("v2", "AnimateLCM"))


# --- checkpoints of earlier formats ---------------------------------------------------------------------

V1_CHECKPOINT = Path(__file__).resolve().parent / "data" / "v1_checkpoint" / "checkpoint-000002.safetensors"
"""A format-1 checkpoint (flat settings, old names) after 2 of the steps below; written by
``tests/data/make_v1_checkpoint.py`` with the code of that format."""


def v1_run_config(**changes) -> TrainConfig:
    """The settings of the format-1 checkpoint, as this version spells them, for 3 steps."""
    return TrainConfig.from_flat(steps=3, seed=5, rank=2, learning_rate=1e-3, spatial_learning_rate=2e-4,
                                 wavelet_levels=2, spatial_path=True, gradient_checkpointing=False,
                                 snr_normalise=False, **changes)  # the timestep weight of those versions


def assert_resumes_like_an_uninterrupted_run(checkpoint: Path, config: TrainConfig, tmp_path: Path) -> None:
    """Resuming ``checkpoint`` (2 of 3 steps) with today's code continues the run it was written by."""
    _, state = load_checkpoint(checkpoint)
    clips = [TrainingClip(square_clip(), torch.zeros(1, 77, TEXT_DIM), "square")]
    whole = Trainer(tiny_motion_unet("v3", seed=0), clips, make_noise_scheduler(), config).run()
    continued = config.with_settings(checkpoint_every=1, checkpoint_dir=str(tmp_path))
    resumed = Trainer(tiny_motion_unet("v3", seed=0), clips, make_noise_scheduler(), continued)
    result = resumed.run(resume_from=checkpoint)
    assert result.step == 3 and len(result.losses) == 3
    assert result.losses[:2] == state["history"]  # the old run's floats, carried over
    # and this version trains the same numbers, up to float rounding (the old code's optimizer and float
    # operations were ordered a little differently, so bit equality is out of reach)
    assert len(result.losses) == len(whole.losses)
    for old, new in zip(result.losses, whole.losses):
        assert old.keys() == new.keys()
        assert all(old[k] == pytest.approx(new[k], rel=1e-6) for k in old), (old, new)
    # A resume that lost the optimizer state or a step would be off by about one Adam step (the learning rate,
    # 1e-3); the weights must agree a hundred times closer.
    for key in whole.lora_state:
        torch.testing.assert_close(result.lora_state[key], whole.lora_state[key], rtol=2e-3, atol=1e-5, msg=key)
    _, new_state = load_checkpoint(tmp_path / "checkpoint-000003.safetensors")
    assert new_state["format_version"] == ckpt.FORMAT_VERSION == 3
    assert TrainConfig.from_dict(new_state["config"]).differences(continued) == []


def test_format_1_checkpoint_resumes_and_continues_like_an_uninterrupted_run(tmp_path):
    _, state = load_checkpoint(V1_CHECKPOINT)
    assert state["format_version"] == 1 and "lr_temporal" in state["config"]
    assert_resumes_like_an_uninterrupted_run(V1_CHECKPOINT, v1_run_config(), tmp_path)


V2_FILES = Path(__file__).resolve().parent / "data"
"""A format-2 checkpoint (loss settings nested under ``mode``/``levels``/``delta``/``base``) after 2 of 3 steps,
and the LoRA file of that run (metadata with ``steps`` done and ``steps_planned``); written by
``tests/data/make_v2_files.py`` with the code of that format."""


def test_format_2_checkpoint_resumes_and_continues_like_an_uninterrupted_run(tmp_path):
    checkpoint = V2_FILES / "v2_checkpoint" / "checkpoint-000002.safetensors"
    _, state = load_checkpoint(checkpoint)
    assert state["format_version"] == 2 and state["config"]["sma"]["delta"] == 0.1
    config = v1_run_config(weight_delta=0.1, weight_base=0.5)
    assert saved_config(state["config"], 2).differences(config) == []
    assert_resumes_like_an_uninterrupted_run(checkpoint, config, tmp_path)


def test_lora_file_of_format_2_reads_under_todays_names():
    state, metadata = load_motion_lora(V2_FILES / "v2_lora.safetensors")
    assert state and metadata["steps"] == 2 and metadata["steps_done"] == 2 and "steps_planned" not in metadata
    assert (metadata["timestep_min"], metadata["timestep_max"]) == (0, 999) and "timesteps" not in metadata
    known = {k: v for k, v in metadata.items() if k in SETTINGS}
    assert {"learning_rate", "spatial_learning_rate", "sma_mode", "wavelet_levels", "weight_delta", "seed"} <= set(known)
    assert TrainConfig.from_flat({k: tuple(v) if isinstance(v, list) else v for k, v in known.items()}
                                 ).setting("weight_delta") == 0.1


# --- settings: sections, one name each --------------------------------------------------------------------

def test_config_sections_hold_each_setting_once_and_round_trip():
    config = TrainConfig.from_flat(steps=9, learning_rate=2e-4, rank=8, alpha=4.0, targets=("attention", "ff"),
                                   sma_mode="paper", lambda_global=0.3, wavelet_levels=2,
                                   level_weights=(1.0, 0.5, 0.25), wavelet="db2", wavelet_mode="reflect",
                                   weight_delta=0.1, weight_base=0.5, weight_sharpness=2.0, snr_gamma=None,
                                   phase_loss="raw", window=12, spatial_path=False)
    assert config.sma == SMAConfig(sma_mode="paper", lambda_global=0.3, wavelet_levels=2,
                                   level_weights=(1.0, 0.5, 0.25), wavelet="db2", wavelet_mode="reflect",
                                   weight_delta=0.1, weight_base=0.5, weight_sharpness=2.0, snr_gamma=None,
                                   phase_loss="raw")
    assert config.lora == MotionLoRASettings(rank=8, alpha=4.0, targets=("attention", "ff"))
    assert (config.schedule.steps, config.sampling.window, config.spatial.spatial_path) == (9, 12, False)
    data = config.to_dict()
    assert list(data) == list(SECTIONS) and data["sma"]["wavelet_levels"] == 2
    assert data["lora"] == {"rank": 8, "alpha": 4.0, "targets": ["attention", "ff"]}
    assert sorted(k for section in data.values() for k in section) == sorted(config.flat())  # each name once
    assert TrainConfig.from_dict(json.loads(json.dumps(data))) == config
    assert TrainConfig.from_flat(config.flat()) == config
    off = TrainConfig.from_flat(sma_mode="off", lambda_global=0.5)
    assert not off.sma_enabled and off.sma.lambda_global == 0.5  # "off" stays off whatever else is set
    assert TrainConfig.from_dict(off.to_dict()) == off
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.schedule.steps = 3  # type: ignore[misc]
    with pytest.raises(SMAInputError, match="unknown training settings \\['learning_rat'\\]"):
        TrainConfig.from_flat(learning_rat=1e-3)
    with pytest.raises(SMAInputError, match="level_weights needs wavelet_levels \\+ 1 = 3"):
        TrainConfig.from_flat(wavelet_levels=2, level_weights=(1.0,))
    with pytest.raises(SMAInputError, match="TrainConfig.sma must be a SMAConfig"):
        TrainConfig(sma=None)  # type: ignore[arg-type]
    with pytest.raises(SMAInputError, match="section 'schedule' does not hold \\['rank'\\]"):
        TrainConfig.from_dict({"schedule": {"rank": 4}})


def test_earlier_names_are_read_only_from_old_checkpoints():
    format_1 = {"lr_temporal": 1e-3, "lr_spatial": 2e-4, "sma_levels": 2, "spatial_lora": False, "frames": 10,
                "lora_targets": ["attention", "proj"]}
    format_2 = {"learning_rate": 1e-3, "spatial_learning_rate": 2e-4, "spatial_path": False, "window": 10,
                "sma": {"mode": "plus", "levels": 2}, "lora": {"targets": ["attention", "proj"]}}
    today = TrainConfig.from_flat(learning_rate=1e-3, spatial_learning_rate=2e-4, wavelet_levels=2,
                                  spatial_path=False, window=10, targets=("attention", "proj"), snr_normalise=False)
    assert saved_config(format_1, 1) == saved_config(format_2, 2) == today  # and the timestep weight of then
    assert not saved_config({"sma": None, "lora": {}}, 2).sma_enabled  # format 2 spelled "off" as no loss
    with pytest.raises(SMAInputError, match="unknown training settings \\['lr_temporal'\\]"):
        TrainConfig.from_flat(lr_temporal=1e-3)  # not an alias anywhere else
    with pytest.raises(SMAInputError, match="both 'lr_temporal' and 'learning_rate'"):
        saved_config({"lr_temporal": 1e-3, "learning_rate": 1e-3}, 1)


def test_one_device_sync_per_training_step(monkeypatch):
    """Losses and gradient norms are read in one ``tolist`` per step, not one ``float`` per part."""
    config = TrainConfig.from_flat(steps=2, grad_accum=2, spatial_skip_prob=0.0, **FAST)
    trainer = Trainer(tiny_motion_unet("v3", seed=0), [clip()], make_noise_scheduler(), config)
    reads = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(self.numel()) or original(self))
    result = trainer.run()
    parts = 2 * (len(result.losses[0]) - 1 + 1) + 2  # per micro-batch: parts but "loss" + the output flag; norms
    assert reads == [parts, parts]


def test_a_config_read_from_an_earlier_format_trains_bit_identical_weights():
    """The same run, its settings spelled as a format-2 checkpoint stored them and as today's flat settings."""
    format_2 = {"steps": 2, "seed": 7, "spatial_path": True, "gradient_checkpointing": False, "lr_schedule": "cosine",
                "sma": {"mode": "paper", "levels": 2, "delta": 0.2, "base": 0.5, "lambda_local": 0.3},
                "lora": {"rank": 3, "targets": ["attention", "ff"]}}
    today = TrainConfig.from_flat(steps=2, seed=7, gradient_checkpointing=False, lr_schedule="cosine", sma_mode="paper",
                                  wavelet_levels=2, weight_delta=0.2, weight_base=0.5, lambda_local=0.3, rank=3,
                                  targets=("attention", "ff"), snr_normalise=False)
    earlier = saved_config(format_2, 2)
    assert earlier == today
    runs = [Trainer(tiny_motion_unet("v3", seed=0), [clip()], make_noise_scheduler(), c).run() for c in (earlier, today)]
    assert all(torch.equal(runs[0].lora_state[k], runs[1].lora_state[k]) for k in runs[1].lora_state)


# --- how much SMA steers the motion LoRA -------------------------------------------------------------------

def test_gradient_share_is_the_norm_ratio_of_the_two_gradients():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    base, sma = (w ** 2).sum(), 0.1 * (w * torch.tensor([3.0, 0.0, 1.0])).sum()
    g_sma = sma_gradient(sma, [w])
    (base + sma).backward()
    share = float(gradient_share(g_sma, [w.grad]))
    expected = torch.tensor([0.3, 0.0, 0.1]).norm() / (2 * w.detach()).norm()  # |d sma| / |d base|
    assert share == pytest.approx(float(expected), rel=1e-6)


def test_measuring_the_sma_gradient_share_leaves_training_bit_identical_and_plus_is_in_range():
    def run(**settings):
        config = TrainConfig.from_flat(steps=6, rank=4, gradient_checkpointing=False, **settings)
        return Trainer(tiny_motion_unet("v3", seed=0), [clip()], make_noise_scheduler(), config).run()

    unmeasured, measured = run(gradient_share_every=0), run(gradient_share_every=2)
    assert all(torch.equal(unmeasured.lora_state[k], measured.lora_state[k]) for k in measured.lora_state)
    assert unmeasured.gradient_shares == {} and sorted(measured.gradient_shares) == [1, 2, 4, 6]
    # plus: the min-SNR weight averages 1 over the trained timesteps, so the SMA terms keep a real share
    assert 0.1 <= measured.metadata["sma_gradient_share"] <= 0.5, measured.gradient_shares
    assert run(gradient_share_every=1, sma_mode="off").gradient_shares == {}


def test_plus_timestep_weight_averages_one_over_the_trained_timesteps():
    abar = make_noise_scheduler().alphas_cumprod
    loss = SMALoss(SMAConfig(), trained_alphas_cumprod=abar[400:1000])
    raw = timestep_weight(abar[400:1000], 5.0)
    assert float(raw.mean()) == pytest.approx(0.1071, abs=1e-3)  # what the raw weight leaves SMA there
    z = torch.randn(2, 8, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    pick = torch.tensor([500, 900])
    weighted = loss(z, z.flip(1), abar[pick])
    torch.testing.assert_close(weighted.timestep_weight, raw[pick - 400] / raw.mean())
    unnormalised = SMALoss(SMAConfig())(z, z.flip(1), abar[pick])
    torch.testing.assert_close(weighted.total, unnormalised.total / raw.mean())


def test_vmc_residual_alignment_is_one_minus_the_cosine_of_frame_changes():
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((2, 5, 4, 3, 3)), rng.standard_normal((2, 5, 4, 3, 3))
    dp = (pred[:, 1:] - pred[:, :-1]).reshape(2, 4, -1)
    dt = (target[:, 1:] - target[:, :-1]).reshape(2, 4, -1)
    cos = (dp * dt).sum(-1) / np.linalg.norm(dp, axis=-1) / np.linalg.norm(dt, axis=-1)
    got = residual_alignment(torch.from_numpy(pred), torch.from_numpy(target))
    assert float(got) == pytest.approx(float(np.mean(1 - cos)), rel=1e-10)
    same = torch.from_numpy(target)
    assert float(residual_alignment(2 * same + 1, same)) == pytest.approx(0.0, abs=1e-12)  # scale, offset: no matter


def test_vmc_objective_trains_on_the_residual_alignment_alone():
    config = TrainConfig.from_flat(steps=2, objective="vmc", spatial_skip_prob=0.0, **FAST)
    result = Trainer(tiny_motion_unet("v3", seed=0), [clip()], make_noise_scheduler(), config).run()
    assert {"vmc", "sma", "spatial"} <= set(result.losses[0]) and "mse" not in result.losses[0]
    assert 0 < result.losses[0]["vmc"] < 2 and result.metadata["objective"] == "vmc"
    with pytest.raises(SMAInputError, match="objective must be one of motiondirector, vmc"):
        TrainConfig.from_flat(objective="mse")
