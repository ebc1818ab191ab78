"""The motion-LoRA trainer: MotionDirector's dual path + the SMA loss on a diffusers ``UNetMotionModel``.

Knows nothing of ComfyUI; the node and the CLI drive it through :class:`TrainCallbacks`.

One optimizer step = ``grad_accum`` micro-batches of ``clips_per_step`` windows. Per micro-batch, with
one timestep ``t`` and noise per window:

1. spatial path (if on, and not skipped with ``spatial_skip_prob``): ONE random frame per window, run
   through the UNet with every motion module bypassed (an image model, as MotionDirector's AnimateDiff
   port does by feeding single frames), MSE against that frame's target; only the spatial LoRA learns.
2. temporal path: the whole window, spatial LoRA active but frozen (off on skipped steps), loss
   ``MSE + debias_weight * MSE(debias(.))`` + the SMA loss of the Tweedie estimate ``z0_hat`` against
   the reference latents; only the motion LoRA learns.

All randomness comes from one seeded ``torch.Generator`` (CPU) that checkpoints store, so training is
deterministic on CPU and a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from .. import __version__
from ..errors import SMAInputError
from ..loss import SMALoss, tweedie_estimate
from ..lora import LoRAConfig, add_motion_lora, add_spatial_lora, enable_lora, export_motion_lora, lora_layers
from ..lora import lora_parameters
from ..models.build import make_noise_scheduler
from ..models.config import family_base
from ..models.norms import use_ade_group_norms, use_lean_group_norms
from . import checkpoint as ckpt
from .config import TrainConfig, metadata_settings, saved_config
from .data import Batch, TrainingClip, check_clips, clips_for_step, make_batch, training_window
from .memory import (
    disable_full_gradient_checkpointing,
    enable_full_gradient_checkpointing,
    free_memory,
    motion_modules_bypassed,
    resolve_precision,
    set_attention_slicing,
)
from .model import (
    MOTION_ADAPTER,
    SPATIAL_ADAPTER,
    check_model,
    infer_family,
    model_device,
    place_model,
    release_inference_tensors,
)
from .objectives import debiased_mse, diffusion_target, prediction_type, residual_alignment
from .optim import check_optimizer_available, clip_group, lr_factor, make_optimizer
from .reports import StepReport, TrainCallbacks, TrainingDiverged, TrainResult
from .gradient_share import gradient_share, sma_gradient
from .hooks import CheckpointHook, PreviewHook, StepHook, ValidationHook
from .samples import ValidationPrompt, ValidationSampler

class Trainer:
    """Fit a motion LoRA (and MotionDirector's spatial LoRA) to reference clips.

    The model is changed in place: its GroupNorms are set to what AnimateDiff-Evolved runs for the
    family (per-frame in the motion modules; v1 across frames everywhere), its frozen weights are cast
    to the training precision, and adapters ``"motion"`` (and ``"spatial"``) are added and left in it.
    Inputs are checked on construction, before any heavy work; :meth:`run` does the work.

    Args:
        unet: ``UNetMotionModel`` with the motion module to train (ADE's GroupNorms, see sma.models).
        clips: reference clips (latents ``[F, 4, h, w]`` + text embedding ``[1, 77, D]``).
        noise_scheduler: DDPM training scheduler (default: the shipped AnimateDiff one, linear betas
            0.00085..0.012, epsilon); ``prediction_type`` epsilon or v_prediction.
        config: :class:`TrainConfig`.
        motion_info: the motion module's ``MotionModuleInfo`` (default: ``unet.motion_info`` if set,
            else the family is inferred from the model: mid block = v2, 24 positions = v1, else v3).
        device: where to train (default: the model's device).
    """

    def __init__(self, unet: nn.Module, clips: list[TrainingClip], noise_scheduler: DDPMScheduler | None = None,
                 config: TrainConfig | None = None, *, motion_info: Any = None,
                 device: torch.device | str | None = None, validation: ValidationPrompt | None = None) -> None:
        self.config = config if config is not None else TrainConfig()
        if not isinstance(self.config, TrainConfig):
            raise SMAInputError(f"config must be a TrainConfig, got {type(self.config).__name__}.")
        cfg = self.config
        self.unet = unet
        self.info = motion_info if motion_info is not None else getattr(unet, "motion_info", None)
        self.pe_length = check_model(unet, self.info)
        self.family = self.info.family if self.info is not None else infer_family(unet, self.pe_length)
        self.base = family_base(self.family)
        self.device = torch.device(device) if device is not None else model_device(unet)
        self.scheduler = noise_scheduler if noise_scheduler is not None else make_noise_scheduler(base=self.base.name)
        self.prediction_type = prediction_type(self.scheduler)
        horizon = int(self.scheduler.config.num_train_timesteps)
        if cfg.sampling.timestep_max >= horizon:
            raise SMAInputError(f"timestep_max must be < {horizon} (the scheduler's num_train_timesteps), "
                                f"got {cfg.sampling.timestep_max}.")
        self.clips = list(clips) if isinstance(clips, (list, tuple)) else clips
        check_clips(self.clips, in_channels=int(unet.config.in_channels),
                    cross_attention_dim=int(unet.config.cross_attention_dim), clips_per_step=cfg.schedule.clips_per_step)
        self.window = training_window(self.clips, cfg.sampling.window, self.pe_length)
        self.sma_loss = self._make_sma_loss()
        self.precision = resolve_precision(cfg.memory.precision, self.device)
        check_optimizer_available(cfg.schedule.optimizer, self.device)
        self.motion_lora = cfg.lora.adapter(seed=cfg.sampling.seed)
        spatial_rank = cfg.spatial.spatial_rank or cfg.lora.rank
        self.spatial_lora = LoRAConfig(rank=spatial_rank, seed=cfg.sampling.seed + 1) if cfg.spatial.spatial_path else None
        self.validation = self._make_validation(validation)
        self.last_checkpoint: Path | None = None
        self._ready = False
        self._ran = False
        self._done: tuple[int, list[dict[str, float]]] | None = None  # (step, history) after a step of this run
        self._share: torch.Tensor | None = None  # this step's SMA gradient share, on measuring steps
        self.gradient_shares: dict[int, float] = {}  # step -> SMA gradient share, this run's measuring steps

    # --- set-up ---------------------------------------------------------------------------------------

    def _make_validation(self, prompt: ValidationPrompt | None) -> ValidationSampler | None:
        """The validation sampler (``validation_every`` > 0 needs a prompt); samples the first clip's size."""
        cfg = self.config
        if not cfg.validation.validation_every:
            return None
        if prompt is None:
            raise SMAInputError("validation_every > 0 needs a validation prompt (its text embedding).")
        prompt.check(int(self.unet.config.cross_attention_dim))
        shape = (self.window, int(self.unet.config.in_channels), *self.clips[0].latents.shape[-2:])
        off = (SPATIAL_ADAPTER,) if cfg.spatial.spatial_path else ()
        return ValidationSampler(cfg, prompt, self.scheduler, shape, self.precision.autocast_context, off,
                                 self.base.name)

    def _make_sma_loss(self) -> SMALoss | None:
        """The SMA loss for the config, checked on a small dummy window (e.g. too many wavelet levels)."""
        if not self.config.sma_enabled:
            return None
        sampling = self.config.sampling
        trained = self.scheduler.alphas_cumprod[sampling.timestep_min:sampling.timestep_max + 1]
        loss = SMALoss(self.config.sma, check_finite=False,  # the trainer checks its losses once per step
                       trained_alphas_cumprod=trained)
        probe = torch.zeros(1, self.window, int(self.unet.config.in_channels), 8, 8)
        loss(probe, probe)
        return loss

    def _setup(self) -> None:
        """Cast frozen weights, add the adapters, enable checkpointing, build optimizer and schedules."""
        cfg, unet = self.config, self.unet
        release_inference_tensors(unet)
        use_ade_group_norms(unet, self.family)  # train the model ADE runs (per-frame temporal norms)
        use_lean_group_norms(unet)  # under autocast, GroupNorm in fp16/bf16 as at inference, not fp32
        unet.requires_grad_(False)
        place_model(unet, self.device, self.precision.weight_dtype)
        add_motion_lora(unet, self.motion_lora, MOTION_ADAPTER)
        self.temporal_params = lora_parameters(unet, MOTION_ADAPTER)
        self.spatial_params: list[nn.Parameter] = []
        if self.spatial_lora is not None:
            add_spatial_lora(unet, self.spatial_lora, SPATIAL_ADAPTER)
            self.spatial_params = lora_parameters(unet, SPATIAL_ADAPTER)
        for p in self.temporal_params + self.spatial_params:
            p.requires_grad_(True)
        trainable = {id(p) for p in self.temporal_params + self.spatial_params}
        self.named_lora = {n: p for n, p in unet.named_parameters() if id(p) in trainable}
        if cfg.memory.gradient_checkpointing:
            enable_full_gradient_checkpointing(unet)
        self._processors = unet.attn_processors if cfg.memory.attention_slice else None
        if cfg.memory.attention_slice:
            set_attention_slicing(unet, cfg.memory.attention_slice)
        groups = [{"name": "temporal", "params": self.temporal_params, "lr": cfg.schedule.learning_rate}]
        if self.spatial_params:
            groups.append({"name": "spatial", "params": self.spatial_params, "lr": cfg.spatial.spatial_learning_rate})
        self.optimizer = make_optimizer(cfg.schedule.optimizer, groups, cfg.schedule.weight_decay, self.device)
        factor = lr_factor(cfg.schedule.lr_schedule, cfg.schedule.warmup_steps, cfg.schedule.steps)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, [factor] * len(groups))
        self.grad_scaler = self.precision.grad_scaler()
        self.generator = torch.Generator().manual_seed(cfg.sampling.seed)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device, torch.float32)
        unet.train()
        self._ready = True

    # --- one micro-batch ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _spatial_frozen(self, enabled: bool) -> Iterator[None]:
        """Spatial LoRA frozen (and switched off when not ``enabled``) for the temporal path."""
        for p in self.spatial_params:
            p.requires_grad_(False)
        if self.spatial_params and not enabled:
            enable_lora(self.unet, SPATIAL_ADAPTER, False)
        try:
            yield
        finally:
            if self.spatial_params and not enabled:
                enable_lora(self.unet, SPATIAL_ADAPTER, True)
            for p in self.spatial_params:
                p.requires_grad_(True)

    def _backward(self, loss: torch.Tensor) -> None:
        self.grad_scaler.scale(loss / self.config.schedule.grad_accum).backward()

    def _spatial_pass(self, x_t: torch.Tensor, target: torch.Tensor, t: torch.Tensor, text: torch.Tensor,
                      frame: torch.Tensor) -> torch.Tensor:
        """MSE of one frame per window through the image model (motion modules bypassed); backward done.

        Returns the detached loss (0-d, on the device: no sync here; :meth:`_check_and_step` checks it).
        """
        rows = torch.arange(x_t.shape[0], device=x_t.device)
        frame = frame.to(x_t.device)
        single = x_t[rows, frame][:, :, None]  # [B, C, 1, h, w]
        with motion_modules_bypassed(self.unet):
            with self.precision.autocast_context():
                pred = self.unet(single, t, encoder_hidden_states=text).sample  # [B, C, 1, h, w]
            loss = F.mse_loss(pred[:, :, 0].float(), target[rows, frame].float())
            self._backward(loss)
        return loss.detach()

    def _temporal_pass(self, batch: Batch, x_t: torch.Tensor, target: torch.Tensor, t: torch.Tensor,
                       anchor: torch.Tensor, spatial_on: bool, want_z0_hat: bool,
                       measure_share: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """Temporal loss on whole windows (+ SMA); backward done. With ``measure_share`` (the first micro-batch of a
        measuring step) also the SMA gradient share, kept as :attr:`_share` (:mod:`.gradient_share`).

        Returns the detached loss parts (0-d device tensors), whether the model's output held a NaN or inf (a 0-d
        bool device tensor; :meth:`_check_and_step` checks both) and ``z0_hat[0]`` ``[F, C, h, w]`` when
        ``want_z0_hat``.
        """
        cfg = self.config
        frames = x_t.shape[1]
        text = batch.text.repeat_interleave(frames, dim=0)  # [B*F, T, D]
        abar = self.alphas_cumprod[t]
        with self._spatial_frozen(spatial_on):
            with self.precision.autocast_context():
                out = self.unet(x_t.transpose(1, 2), t, encoder_hidden_states=text).sample
            pred = out.transpose(1, 2).float()  # [B, F, C, h, w]
            objective = cfg.objective
            if objective.objective == "vmc":
                parts = {"vmc": residual_alignment(pred, target)}
                total = parts["vmc"]
            else:
                parts = {"mse": F.mse_loss(pred, target),
                         "debias": debiased_mse(pred, target, anchor, objective.debias_beta)}
                total = parts["mse"] + objective.debias_weight * parts["debias"]
            z0_hat = None
            if self.sma_loss is not None or want_z0_hat:
                z0_hat = tweedie_estimate(x_t, pred, abar, self.prediction_type)
            if self.sma_loss is not None:
                sma_out = self.sma_loss(z0_hat, batch.latents, abar)
                parts.update(sma=sma_out.total, sma_global=sma_out.global_, sma_local=sma_out.local,
                             sma_local_amplitude=sma_out.local_amplitude, sma_local_phase=sma_out.local_phase)
                total = total + sma_out.total
            parts["temporal"] = total
            sma_grads = sma_gradient(sma_out.total, self.temporal_params) if measure_share and "sma" in parts else None
            self._backward(total)
            if sma_grads is not None:
                unscale = self.config.schedule.grad_accum / float(self.grad_scaler.get_scale())
                totals = [torch.zeros_like(p) if p.grad is None else p.grad * unscale for p in self.temporal_params]
                self._share = gradient_share(sma_grads, totals)
        detached = {k: v.detach() for k, v in parts.items()}
        preview = z0_hat[0].detach() if want_z0_hat and z0_hat is not None else None
        return detached, ~torch.isfinite(pred.detach()).all(), preview

    def _micro_step(self, micro_step: int, want_z0_hat: bool,
                    measure_share: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """Draw a batch, its timesteps, noise, anchors and spatial frames; run both paths (backward done).

        Returns the loss parts, whether the model's output held a NaN or inf, and ``z0_hat[0]`` (see
        :meth:`_temporal_pass`).
        """
        cfg, g = self.config, self.generator
        indices = clips_for_step(micro_step, len(self.clips), cfg.schedule.clips_per_step, cfg.sampling.seed)
        batch = make_batch(self.clips, indices, self.window, g, self.device)
        z0 = batch.latents
        b, f = z0.shape[:2]
        # draw every random number in a fixed order, whatever the options
        t = torch.randint(cfg.sampling.timestep_min, cfg.sampling.timestep_max + 1, (b,), generator=g).to(self.device)
        noise = torch.randn(z0.shape, generator=g).to(self.device)
        anchor = torch.randint(0, f, (b,), generator=g)
        spatial_frame = torch.randint(0, f, (b,), generator=g)
        skip_spatial = bool(torch.rand((), generator=g) < cfg.spatial.spatial_skip_prob)
        x_t = self.scheduler.add_noise(z0, noise, t)
        target = diffusion_target(self.scheduler, z0, noise, t)
        losses: dict[str, torch.Tensor] = {}
        spatial_on = bool(self.spatial_params) and not skip_spatial and not any(
            self.clips[i].motion_only for i in indices)
        if spatial_on:
            losses["spatial"] = self._spatial_pass(x_t, target, t, batch.text, spatial_frame)
        temporal, bad_output, z0_hat = self._temporal_pass(batch, x_t, target, t, anchor, spatial_on, want_z0_hat,
                                                           measure_share)
        losses.update(temporal)
        return losses, bad_output, z0_hat

    # --- optimizer step -------------------------------------------------------------------------------

    def _check_and_step(self, step: int, micro_parts: list[dict[str, torch.Tensor]], nonfinite: list[torch.Tensor]
                        ) -> tuple[list[dict[str, float]], dict[str, float], dict[str, float]]:
        """Clip per LoRA, read losses, output checks and gradient norms with ONE device sync, stop on NaN/inf, then
        step. ``nonfinite``: per micro-batch, whether the model's output held a NaN or inf.

        Returns (each micro-batch's loss parts as floats, learning rates used, gradient norms before clipping).

        Raises:
            TrainingDiverged: naming the first non-finite loss part (spatial, model output, mse, ...) or
                LoRA gradient; the update is not applied.
        """
        cfg = self.config
        rates = {group["name"]: float(group["lr"]) for group in self.optimizer.param_groups}
        self.grad_scaler.unscale_(self.optimizer)
        norms = {group["name"]: clip_group(group["params"], cfg.schedule.max_grad_norm) for group in self.optimizer.param_groups}
        tensors = [v for parts in micro_parts for v in parts.values()] + nonfinite + list(norms.values())
        values = iter(torch.stack([v.float().reshape(()).to(self.device) for v in tensors]).tolist())  # the one sync
        read = [{name: next(values) for name in parts} for parts in micro_parts]
        output_bad = [next(values) for _ in nonfinite]
        for parts, bad in zip(read, output_bad):
            if bad != 0.0:
                raise TrainingDiverged(step, "the model output", self.last_checkpoint)
            for name, value in parts.items():
                if not math.isfinite(value):
                    raise TrainingDiverged(step, f"the {name} loss", self.last_checkpoint)
        grad_norms = {name: next(values) for name in norms}
        if not self.grad_scaler.is_enabled():  # with a GradScaler, inf gradients only skip the step
            for name, norm in grad_norms.items():
                if not math.isfinite(norm):
                    raise TrainingDiverged(step, f"the {name} LoRA's gradient", self.last_checkpoint)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        self.lr_scheduler.step()
        return read, rates, grad_norms

    # --- checkpoints ----------------------------------------------------------------------------------

    def save_checkpoint(self, step: int, history: list[dict[str, float]]) -> Path:
        """Write a resumable checkpoint for ``step`` completed steps into ``config.checkpoint.checkpoint_dir``."""
        cfg = self.config
        tensors = {f"lora.{name}": p for name, p in self.named_lora.items()}
        opt_tensors, opt_plain = ckpt.flatten_optimizer_state(self.optimizer.state_dict())
        rng_tensors, rng_plain = ckpt.capture_rng(self.generator)
        tensors.update(opt_tensors)
        tensors.update(rng_tensors)
        state = {"step": step, "config": cfg.to_dict(), "history": history, "optimizer": opt_plain,
                 "lr_scheduler": self.lr_scheduler.state_dict(), "grad_scaler": self.grad_scaler.state_dict(),
                 "rng": rng_plain, "family": self.family, "window": self.window}
        path = ckpt.save_checkpoint(ckpt.checkpoint_path(cfg.checkpoint.checkpoint_dir, step), tensors, state)
        ckpt.prune_checkpoints(cfg.checkpoint.checkpoint_dir, cfg.checkpoint.keep_checkpoints)
        self.last_checkpoint = path
        return path

    def _resume(self, source: str | Path) -> tuple[int, list[dict[str, float]]]:
        """Restore weights, optimizer, schedules, scaler and RNGs; returns (step, loss history)."""
        path = Path(source)
        if path.is_dir():
            found = ckpt.latest_checkpoint(path)
            if found is None:
                raise SMAInputError(f"no checkpoint-*.safetensors files in {path} to resume from.")
            path = found
        tensors, state = ckpt.load_checkpoint(path)
        saved = saved_config(state["config"], state["format_version"])
        changed = self.config.differences(saved)
        if changed:
            detail = ", ".join(f"{k}: {saved.setting(k)!r} -> {self.config.setting(k)!r}" for k in changed)
            raise SMAInputError(f"cannot resume from {path.name}: settings changed ({detail}); only "
                                "steps, checkpoint and preview settings may change when resuming.")
        names = {k[len("lora."):] for k in tensors if k.startswith("lora.")}
        if names != set(self.named_lora):
            raise SMAInputError(f"cannot resume from {path.name}: its LoRA layers do not match this model "
                                f"({len(names)} saved, {len(self.named_lora)} here).")
        with torch.no_grad():
            for name, p in self.named_lora.items():
                p.copy_(tensors[f"lora.{name}"])
        self.optimizer.load_state_dict(ckpt.unflatten_optimizer_state(tensors, state["optimizer"]))
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if state["grad_scaler"]:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        ckpt.restore_rng(self.generator, tensors, state["rng"])
        self.last_checkpoint = path
        return int(state["step"]), list(state["history"])

    # --- the loop -------------------------------------------------------------------------------------

    def _train_step(self, step: int, want_estimate: bool) -> tuple[dict[str, float], StepReport, torch.Tensor | None]:
        """One optimizer step (``step`` 1-based): ``grad_accum`` micro-batches, then the update.

        Returns the mean loss parts, the report for ``on_step`` and the last micro-batch's
        ``z0_hat[0]`` ``[F, C, h, w]`` when ``want_estimate``.
        """
        cfg = self.config
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        micro_parts: list[dict[str, torch.Tensor]] = []
        nonfinite: list[torch.Tensor] = []
        z0_hat = None
        every = cfg.validation.gradient_share_every
        self._share = None
        for micro in range(cfg.schedule.grad_accum):
            last = micro == cfg.schedule.grad_accum - 1
            measure = bool(every) and micro == 0 and (step == 1 or step % every == 0)
            parts, bad_output, z0_hat = self._micro_step((step - 1) * cfg.schedule.grad_accum + micro,
                                                         want_estimate and last, measure)
            micro_parts.append(parts)
            nonfinite.append(bad_output)
        read, rates, norms = self._check_and_step(step, micro_parts, nonfinite)
        sums: dict[str, float] = {}
        for parts in read:
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + value
        losses = {name: value / cfg.schedule.grad_accum for name, value in sums.items()}
        losses["loss"] = losses["temporal"] + losses.get("spatial", 0.0)
        share = float(self._share) if self._share is not None else None  # a measuring step's own sync
        report = StepReport(step, cfg.schedule.steps, dict(losses), rates, norms, time.perf_counter() - started,
                            sma_gradient_share=share)
        return losses, report, z0_hat

    def run(self, callbacks: TrainCallbacks | None = None, resume_from: str | Path | None = None,
            hooks: Sequence[StepHook] = ()) -> TrainResult:
        """Train for ``config.schedule.steps`` steps (or until ``should_stop``); returns the motion LoRA and logs.

        Works when called under ``torch.no_grad`` / ``torch.inference_mode`` (it re-enables autograd).

        Args:
            callbacks: progress / preview / cancel hooks.
            resume_from: a checkpoint file, or a folder (its newest checkpoint), to continue from.
            hooks: more :class:`~sma.training.hooks.StepHook` s, run after the previews, checkpoints and
                validation samples the config asks for.

        Raises:
            TrainingDiverged: a NaN/inf loss or gradient (names the step; the last checkpoint is kept).
            SMAInputError: unusable checkpoint for ``resume_from``.
        """
        if self._ran:
            raise RuntimeError("a Trainer runs once; build a new model and Trainer for another run.")
        self._ran = True
        cb = callbacks or TrainCallbacks()
        cfg = self.config
        preview = PreviewHook(cfg.validation.preview_every, self.base.name, cb.on_preview)
        validation = ValidationHook(self.validation, cb.on_validation) if self.validation is not None else None
        every = [preview, CheckpointHook(cfg.checkpoint.checkpoint_every, cfg.checkpoint.checkpoint_dir),
                 *([validation] if validation is not None else []), *hooks]
        free_memory(self.device)
        try:
            with torch.inference_mode(False), torch.enable_grad():
                self._setup()
                step, history = self._resume(resume_from) if resume_from is not None else (0, [])
                stopped = False
                while step < cfg.schedule.steps:
                    if cb.should_stop is not None and cb.should_stop():
                        stopped = True
                        break
                    step += 1
                    losses, report, z0_hat = self._train_step(step, any(h.wants_estimate(step) for h in every))
                    history.append(losses)
                    if report.sma_gradient_share is not None:
                        self.gradient_shares[step] = report.sma_gradient_share
                    self._done = (step, history)
                    if cb.on_step is not None:
                        cb.on_step(report)
                    for hook in every:
                        hook.after_step(self, step, history, z0_hat)
                for hook in every:
                    hook.at_end(self, step, history, stopped)
                return TrainResult(
                    lora_state=export_motion_lora(self.unet, MOTION_ADAPTER, torch.float16),
                    metadata=self.metadata(step, stopped),
                    losses=history,
                    last_preview=preview.last,
                    stopped_early=stopped,
                    step=step,
                    spatial_state=self._spatial_state() if cfg.spatial.keep_spatial and self.spatial_params else None,
                    checkpoint=self.last_checkpoint,
                    last_validation=validation.last if validation is not None else None,
                    gradient_shares=dict(self.gradient_shares),
                )
        finally:
            if self._ready:
                self._restore_model()
            free_memory(self.device)

    def result_so_far(self) -> TrainResult | None:
        """After :meth:`run` was broken off (a ``KeyboardInterrupt``): the motion LoRA as of the last step it
        finished, as a stopped-early result; None when no step of this run finished."""
        if self._done is None:
            return None
        step, history = self._done
        return TrainResult(lora_state=export_motion_lora(self.unet, MOTION_ADAPTER, torch.float16),
                           metadata=self.metadata(step, stopped_early=True), losses=list(history), last_preview=None,
                           stopped_early=True, step=step, checkpoint=self.last_checkpoint)

    def _restore_model(self) -> None:
        """After training (or a failure): free gradients, undo checkpointing and attention slicing.

        The adapters stay in the model (eval mode), so it can sample with the LoRA right away.
        """
        self.optimizer.zero_grad(set_to_none=True)
        disable_full_gradient_checkpointing(self.unet)
        if self._processors is not None:
            self.unet.set_attn_processor(self._processors)
        self.unet.eval()

    # --- outputs --------------------------------------------------------------------------------------

    def _spatial_state(self) -> dict[str, dict[str, torch.Tensor]]:
        out = {}
        for name, adapter in lora_layers(self.unet, SPATIAL_ADAPTER).items():
            out[name] = {"down": adapter.down.detach().to("cpu", torch.float16),
                         "up": (adapter.up.detach().float() * adapter.scale).to("cpu", torch.float16)}
        return out

    def metadata(self, step: int, stopped_early: bool = False) -> dict[str, Any]:
        """Facts about this training run for the LoRA file's metadata (settings under their flat names)."""
        cfg = self.config
        h, w = (int(s) for s in self.clips[0].latents.shape[-2:])
        px = self.base.pixels_per_latent
        # pixel [width, height] of each distinct clip size
        sizes = sorted({(int(c.latents.shape[-1]) * px, int(c.latents.shape[-2]) * px) for c in self.clips})
        return {
            "trainer": "sma", "version": __version__, "family": self.family, "base": self.base.name,
            "frames": self.window, "width": w * px, "height": h * px, "sizes": [list(s) for s in sizes],
            "clips": sum(not c.motion_only for c in self.clips), "steps_done": step, "stopped_early": stopped_early,
            **metadata_settings(cfg),
            "sma_gradient_share": statistics.median(self.gradient_shares.values()) if self.gradient_shares else None,
            "prediction_type": self.prediction_type, "precision_used": self.precision.name,
        }
