"""The precision the trainer picks or refuses per device type, decided before any work (docs/performance.md)."""
from __future__ import annotations

import pytest
import torch

from sma.errors import SMAInputError
from sma.training import memory
from sma.training.memory import resolve_precision


@pytest.fixture
def bf16_hardware(monkeypatch):
    """Pretend the (absent) accelerator has native bf16 or not."""
    def set_native(value: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: value)
        monkeypatch.setattr(memory, "native_bf16", lambda device: value if device.type != "cpu" else True)
    return set_native


def test_cuda_auto_follows_native_bf16(bf16_hardware):
    bf16_hardware(True)
    ampere = resolve_precision("auto", torch.device("cuda"))
    assert (ampere.name, ampere.uses_grad_scaler) == ("bf16", False)
    bf16_hardware(False)
    turing = resolve_precision("auto", torch.device("cuda"))
    assert (turing.name, turing.uses_grad_scaler, turing.autocast) == ("fp16", True, True)


def test_cuda_refuses_emulated_bf16(bf16_hardware):
    bf16_hardware(False)
    with pytest.raises(SMAInputError, match="no native bf16.*use precision fp16"):
        resolve_precision("bf16", torch.device("cuda"))
    assert resolve_precision("fp16", torch.device("cuda")).weight_dtype == torch.float16


def test_native_bf16_asks_cuda_without_emulation(monkeypatch):
    seen = {}

    def supported(including_emulation=True):
        seen["emulation"] = including_emulation
        return False

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert memory.native_bf16(torch.device("cuda")) is False
    assert seen == {"emulation": False}


@pytest.mark.parametrize("kind", ["mps", "xpu"])
def test_fp16_refused_where_no_loss_scaling(bf16_hardware, kind):
    bf16_hardware(True)
    with pytest.raises(SMAInputError, match=f"fp16 needs loss scaling.*on {kind} use bf16 or fp32"):
        resolve_precision("fp16", torch.device(kind))
    assert resolve_precision("bf16", torch.device(kind)).weight_dtype == torch.bfloat16


def test_mps_and_xpu_auto(bf16_hardware):
    bf16_hardware(True)
    assert resolve_precision("auto", torch.device("mps")).name == "fp32"
    assert resolve_precision("auto", torch.device("xpu")).name == "bf16"
    bf16_hardware(False)
    assert resolve_precision("auto", torch.device("xpu")).name == "fp32"
    with pytest.raises(SMAInputError, match="no native bf16"):
        resolve_precision("bf16", torch.device("mps"))


def test_cpu_allows_every_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).name == "fp32"
    assert resolve_precision("bf16", cpu).uses_grad_scaler is False
    assert resolve_precision("fp16", cpu).uses_grad_scaler is True


def test_unsupported_device_type_refused_up_front():
    with pytest.raises(SMAInputError, match="training runs on CUDA .*this device is 'meta'"):
        resolve_precision("auto", torch.device("meta"))
    with pytest.raises(SMAInputError, match="precision"):
        resolve_precision("fp8", torch.device("cpu"))
