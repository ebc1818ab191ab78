"""ComfyUI boots with this pack and AnimateDiff-Evolved; every node of the pack is served.

Two views: in-process (``nodes.load_custom_node`` must return True: an import error fails here,
not silently in ComfyUI's log) and the real server over HTTP (``main.py`` in a subprocess,
``GET /object_info``), the way a user's ComfyUI sees the pack.
"""
from __future__ import annotations


from conftest import ADE_DIR_NAME, PACK_DIR_NAME, comfy_server

# Every node the pack ships. A node whose schema raises is dropped from /object_info silently,
# so the list is explicit rather than read back from the pack.
EXPECTED_NODES = {
    "SMA_LoadReferenceVideo",
    "SMA_TrainMotionLoRA",
    "SMA_AddReferenceClip",
    "SMA_LossOptions",
    "SMA_ApplyMotionLoRA",
    "SMA_MergeMotionLoRAs",
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


def test_server_boots_and_serves_every_node(tmp_path):
    with comfy_server(tmp_path) as server:
        object_info = server.object_info
    log_text = server.log.read_text()
    # without torchaudio ComfyUI's two audio extras fail to import; nothing else may
    failed = [line for line in log_text.splitlines() if "IMPORT FAILED" in line and "nodes_audio" not in line]
    assert not failed, log_text[-4000:]
    assert ADE_NODES <= set(object_info)
    missing = EXPECTED_NODES - set(object_info)
    assert not missing, f"nodes missing from /object_info: {missing}\n{log_text[-4000:]}"
    for node_id in EXPECTED_NODES:
        assert object_info[node_id]["python_module"] == f"custom_nodes.{PACK_DIR_NAME}"
