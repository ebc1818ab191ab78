"""ComfyUI boots with this pack and AnimateDiff-Evolved; every node of the pack is served.

Two views: in-process (``nodes.load_custom_node`` must return True: an import error fails here,
not silently in ComfyUI's log) and the real server over HTTP (``main.py`` in a subprocess,
``GET /object_info``), the way a user's ComfyUI sees the pack.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import ADE_DIR_NAME, PACK_DIR_NAME, link_pack_as_custom_node, require_host

# Every node the pack ships. A node whose schema raises is dropped from /object_info silently,
# so the list is explicit rather than read back from the pack.
EXPECTED_NODES = {
    "SMA_LoadReferenceVideo",
    "SMA_TrainMotionLoRA",
    "SMA_AddReferenceClip",
    "SMA_ApplyMotionLoRA",
    "SMA_VisualizeSpectra",
    "SMA_MotionFidelity",
}
ADE_NODES = {"ADE_LoadAnimateDiffModel", "ADE_AnimateDiffLoRALoader", "ADE_ApplyAnimateDiffModelSimple",
             "ADE_UseEvolvedSampling"}


def test_pack_imports_in_process(comfy_host):
    assert comfy_host.packs == {ADE_DIR_NAME: True, PACK_DIR_NAME: True}
    assert set(comfy_host.pack_nodes) == EXPECTED_NODES
    for node_id in EXPECTED_NODES:
        info = comfy_host.nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()
        assert info["category"].startswith("SMA"), (node_id, info["category"])
        assert info["display_name"] and info["display_name"] != node_id
        assert info["description"], node_id
    # without torchaudio exactly these two built-in extras fail to import; nothing else may
    assert set(comfy_host.failed_extras) <= {"nodes_audio.py", "nodes_audio_encoder.py"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_boots_and_serves_every_node(tmp_path):
    host = require_host()
    custom_nodes = tmp_path / "custom_nodes"
    link_pack_as_custom_node(custom_nodes)
    (custom_nodes / ADE_DIR_NAME).symlink_to(host / "custom_nodes" / ADE_DIR_NAME, target_is_directory=True)
    port = _free_port()
    log_path = tmp_path / "server.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DO_NOT_TRACK="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
             "--base-directory", str(tmp_path), "--database-url", "sqlite:///:memory:", "--disable-api-nodes"],
            cwd=host, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        object_info = _wait_for_object_info(port, proc, log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log_text = log_path.read_text()
    # without torchaudio ComfyUI's two audio extras fail to import; nothing else may
    failed = [line for line in log_text.splitlines() if "IMPORT FAILED" in line and "nodes_audio" not in line]
    assert not failed, log_text[-4000:]
    assert ADE_NODES <= set(object_info)
    missing = EXPECTED_NODES - set(object_info)
    assert not missing, f"nodes missing from /object_info: {missing}\n{log_text[-4000:]}"
    for node_id in EXPECTED_NODES:
        assert object_info[node_id]["python_module"] == f"custom_nodes.{PACK_DIR_NAME}"


def _wait_for_object_info(port: int, proc: subprocess.Popen, log_path: Path, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ComfyUI exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=10) as response:
                return json.load(response)
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"ComfyUI did not serve /object_info in {timeout:.0f} s:\n{log_path.read_text()[-4000:]}")
