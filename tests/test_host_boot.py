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
    "SMA_MotionOptions",
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


def test_display_only_widget_values_are_dropped_from_the_packs_nodes(comfy_host):
    """What the server's prompt handler does to a POST /prompt: a display-only value the frontend sends (the clip
    preview of Load Reference Video) is removed from the pack's nodes, every declared input stays, other nodes and
    malformed entries are left alone."""
    import copy
    import sys

    mappings = comfy_host.nodes.NODE_CLASS_MAPPINGS
    package = mappings["SMA_LoadReferenceVideo"].__module__.rsplit(".", 1)[0]
    prompt_inputs = sys.modules[f"{package}.prompt_inputs"]
    classes = [mappings[node_id] for node_id in sorted(EXPECTED_NODES)]
    loader = {"video": "reference.mp4", "frame_load_cap": 16, "skip_first_frames": 0, "select_every_nth": 1,
              "force_rate": 0.0, "width": 512, "height": 0, "images": ["9", 0]}
    request = {"client_id": "page", "prompt": {
        "1": {"class_type": "SMA_LoadReferenceVideo", "inputs": {**loader, "video-preview": ""}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1], "preview": ""}},
        "3": "not a node", "4": {"class_type": "SMA_ApplyMotionLoRA"}}}
    out = prompt_inputs.drop_undeclared_inputs(copy.deepcopy(request), classes)
    assert out["prompt"]["1"]["inputs"] == loader
    assert {k: out["prompt"][k] for k in ("2", "3", "4")} == {k: request["prompt"][k] for k in ("2", "3", "4")}
    assert out["client_id"] == "page"
    assert prompt_inputs.drop_undeclared_inputs({"prompt": None}, classes) == {"prompt": None}
    for cls in classes:  # nothing a schema declares is ever dropped
        names = prompt_inputs.declared_inputs(cls)
        node_id = cls.GET_SCHEMA().node_id
        kept = prompt_inputs.drop_undeclared_inputs(
            {"prompt": {"1": {"class_type": node_id, "inputs": dict.fromkeys(names, 0)}}}, classes)
        assert set(kept["prompt"]["1"]["inputs"]) == names, node_id
    # the in-process host has no HTTP server to register the handler on
    assert prompt_inputs.register_prompt_filter(classes) is False
