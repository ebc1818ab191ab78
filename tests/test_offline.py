"""Offline guarantee: a full CLI training run (real argument parsing, video decode, tokenizer, VAE and text
encoding, training with checkpoints, LoRA + loss-curve writing) and ``inspect`` of its result, with every way
to reach the network blocked: ``socket.socket.connect`` / ``connect_ex``, ``socket.create_connection`` and
name resolution raise, and each try is recorded. The host's node training runs under the same block in
``test_host_health.py``.
"""
from __future__ import annotations

import socket

import pytest

from sma.cli import main
from sma.lora import load_motion_lora
from test_cli import inputs, need_tokenizer, train_tiny  # noqa: F401 - ``inputs`` is a fixture


@pytest.fixture
def blocked_network(monkeypatch) -> list:
    tries: list = []

    def refuse(*args, **kwargs):
        tries.append(args[1:] or args)
        raise OSError("network access is blocked in this test")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    for name in ("create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)
    return tries


def test_cli_training_never_touches_the_network(inputs, tmp_path, blocked_network, capsys):
    need_tokenizer()
    out = tmp_path / "offline.safetensors"
    assert train_tiny(inputs, out, "--steps", "2", "--preview-every", "1") == 0
    state, metadata = load_motion_lora(out)
    assert metadata["steps"] == 2 and len(state) == 2 * 160
    assert (tmp_path / "offline_loss.png").is_file() and any((tmp_path / "offline_previews").iterdir())
    assert main(["inspect", str(out)]) == 0 and "160 LoRA pairs" in capsys.readouterr().out
    assert blocked_network == []
