"""bench/estimate.py: the fake-tensor estimate of a training step against a real CPU run, and its parts."""
from __future__ import annotations

import pytest
import torch

from bench import estimate
from bench.settings import Setting

TOLERANCE_PCT = 1.0
"""Estimated vs real live bytes; measured error -0.03 % to +0.02 % (docs/performance.md)."""


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_estimate_matches_a_real_cpu_step():
    """One small configuration (tiny model, the pack's checkpointing): fake estimate vs the same tracker on
    real tensors over two real steps (the estimate runs one step and adds the optimizer state)."""
    row = Setting("ci", frames=4, size=64, precision="fp32", checkpointing="pack", spatial=False, sma="off")
    model, fake = estimate._model("v3", torch.float32, "tiny")
    fake_run = estimate.measure_step(model, row, fake=fake)
    from bench.bench_train import build_model

    real_run = estimate.measure_step(build_model("tiny", torch.device("cpu"), torch.float32), row, fake=None, steps=2)
    error = 100 * (fake_run["peak_bytes"] / real_run["peak_bytes"] - 1)
    assert abs(error) < TOLERANCE_PCT, (fake_run["peak_bytes"], real_run["peak_bytes"])
    assert fake_run["weights_bytes"] == real_run["weights_bytes"]
    # AdamW: exp_avg and exp_avg_sq like each LoRA tensor, plus one step counter (one 512-byte block) each
    state = 2 * fake_run["lora_bytes"] + 512 * fake_run["lora_tensors"]
    assert fake_run["optimizer_state_bytes"] == real_run["optimizer_state_bytes"] == state
    activations = fake_run["peak_bytes"] - fake_run["weights_bytes"]
    assert activations > 3 * fake_run["lora_bytes"]  # the step's activations are seen, not just the LoRA
    assert fake_run["flops"] == real_run["flops"] / 2 > 0  # two real steps, one fake step: same FLOPs per step


def test_live_bytes_counts_what_autograd_keeps():
    """Saved activations stay counted until backward frees them; blocks are rounded to 512 bytes."""
    x = torch.randn(100, 100, requires_grad=True)  # 40,000 bytes -> 40,448 in 512-byte blocks
    with estimate.LiveBytes([x]) as live:
        live.set_phase("forward")
        y = x.exp()  # saves its output: 40,448 bytes
        z = y.sum()
        live.sweep()
        during = live.current
        live.set_phase("backward")
        z.backward()
        del y, z
        live.sweep()
        after = live.current
    assert live.weights == 40_448
    assert during == 40_448 + 40_448 + 512  # x, exp's output, the scalar sum
    assert live.peaks["forward"] == during
    assert after == 40_448 + 40_448  # x and its gradient


def test_fake_scalars_keep_control_flow_running():
    """Scalar reads of fake values answer (finite: True, values: 0); small real draws stay real."""
    fake = torch._subclasses.fake_tensor.FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        big = torch.empty(1000, 1000)
    with fake, estimate.FakeScalars(fake):
        assert bool(torch.isfinite(big).all()) is True
        assert float(big.sum()) == 0.0
        draw = torch.rand((), generator=torch.Generator().manual_seed(0))
        assert not isinstance(draw, torch._subclasses.fake_tensor.FakeTensor)
        assert float(draw) == pytest.approx(torch.rand((), generator=torch.Generator().manual_seed(0)).item())
        assert isinstance(torch.zeros(100, 100), torch._subclasses.fake_tensor.FakeTensor)


def test_seconds_per_step_from_flops():
    assert estimate.seconds_per_step(35.6e12 * 0.35, 35.6) == pytest.approx(1.0)
