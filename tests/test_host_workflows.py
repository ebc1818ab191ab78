"""The example workflows (``workflows/*.json``) against the real host: node types, links, widget values, the
host's own prompt validation, and a readable layout; the committed files are exactly what
``workflows/build_workflows.py`` builds from the host's node definitions.

Definitions come from ComfyUI + AnimateDiff-Evolved + this pack loaded in-process (``comfy_host``). Nothing is
executed (training a full-size model is far too slow here); test_host_nodes runs the same graphs at toy size.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from conftest import REPO_ROOT, SD15_CHECKPOINT_NAME
from sma.lora import load_motion_lora, save_motion_lora
from sma.lora.keys import MOTION_LORA_MODULE, ade_lora_key
from synthetic_clips import moving_shapes_clip
from sma.video import write_video
from workflows import build_workflows as bw
from workflows.ui_format import (
    FILE_INPUTS,
    FRONTEND_ONLY_TYPES,
    check_workflow,
    host_definitions,
    layout_problems,
    replace_files,
    ui_to_api,
    widget_slots,
)

WORKFLOW_DIR = REPO_ROOT / "workflows"
NAMES = sorted(bw.WORKFLOWS)
TEST_LORA = "workflow_test_motion.safetensors"
REBUILD = "SMA_WRITE_WORKFLOWS=1 python -m pytest -q tests/test_host_workflows.py -k committed"


def committed(name: str) -> dict:
    return json.loads((WORKFLOW_DIR / f"{name}.json").read_text())


def only(prompt: dict, class_type: str) -> str:
    """The id of the one node of ``class_type`` in an API prompt."""
    (node_id,) = [i for i, n in prompt.items() if n["class_type"] == class_type]
    return node_id


def write_random_motion_lora(motion_module: Path, path: Path, rank: int = 4) -> Path:
    """An ADE-format motion LoRA (random fp16 values) for every attention projection of ``motion_module``."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    with safe_open(str(motion_module), "pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            module = key.removesuffix(".weight")
            if ".attention_blocks." in key and key.endswith(".weight") and MOTION_LORA_MODULE.fullmatch(module):
                out_features, in_features = f.get_slice(key).get_shape()
                state[ade_lora_key(module, "down")] = torch.randn(rank, in_features, generator=generator).half()
                state[ade_lora_key(module, "up")] = (torch.randn(out_features, rank, generator=generator) * 0.01).half()
    return save_motion_lora(path, state, {"family": "v3", "rank": rank})


@pytest.fixture(scope="module")
def definitions(comfy_host) -> dict:
    """The host's definitions of every node type the builder or a committed workflow uses."""
    types = set(bw.NODE_TYPES)
    for path in WORKFLOW_DIR.glob("*.json"):
        types |= {n["type"] for n in json.loads(path.read_text())["nodes"]} - FRONTEND_ONLY_TYPES
    return host_definitions(comfy_host.nodes.NODE_CLASS_MAPPINGS, types)


@pytest.fixture(scope="module")
def host_files(comfy_host, full_sd15_checkpoint_file, full_v3_motion_module_in_host, full_v3_motion_module_file):
    """Folder -> the host's file that replaces the users' model names; writes a LoRA and the input clips."""
    lora = comfy_host.models / "animatediff_motion_lora" / TEST_LORA
    if not lora.exists():
        write_random_motion_lora(full_v3_motion_module_file, lora)
    assert len(load_motion_lora(lora)[0]) == 2 * 160  # q, k, v, out of all 40 v3 attention blocks
    input_dir = Path(comfy_host.folder_paths.get_input_directory())
    for name in bw.USER_FILES["input"]:  # the workflows' own clip names; only their existence is validated
        if not (input_dir / name).exists():
            write_video(input_dir / name, moving_shapes_clip(frames=bw.FRAMES, height=64, width=64).frames, fps=8)
    return {"checkpoints": SD15_CHECKPOINT_NAME, "animatediff_models": full_v3_motion_module_in_host,
            "animatediff_motion_lora": TEST_LORA}


def test_the_folder_holds_exactly_the_built_workflows():
    assert sorted(p.stem for p in WORKFLOW_DIR.glob("*.json")) == NAMES


def test_committed_workflows_are_what_the_builder_makes(definitions):
    if os.environ.get("SMA_WRITE_WORKFLOWS") == "1":
        bw.write_all(definitions)
    built = bw.build_all(definitions)
    stale = [name for name, graph in built.items()
             if (WORKFLOW_DIR / f"{name}.json").read_text() != bw.dumps(graph.ui())]
    assert not stale, f"{stale} differ from what workflows/build_workflows.py builds; rebuild with\n    {REBUILD}"
    for graph in built.values():  # the builder's API graph is what its UI file converts back to
        assert ui_to_api(graph.ui(), definitions) == graph.api()


@pytest.mark.parametrize("name", NAMES)
def test_workflow_fits_the_host_definitions(name, definitions):
    workflow = committed(name)
    assert check_workflow(workflow, definitions, bw.USER_FILES) == []
    frontend_only = {n["type"] for n in workflow["nodes"]} - set(definitions)
    assert frontend_only == {bw.NOTE_TYPE}


@pytest.mark.parametrize("name", NAMES)
def test_host_validates_the_converted_prompt(name, comfy_host, definitions, host_files):
    prompt = replace_files(ui_to_api(committed(name), definitions), host_files)
    input_dir = Path(comfy_host.folder_paths.get_input_directory())
    for node in prompt.values():  # every file input names a file the host has (0.3.64 checks only some of them)
        for key, value in node["inputs"].items():
            folder = FILE_INPUTS.get((node["class_type"], key))
            if folder == "input":
                assert (input_dir / value).is_file()
            elif folder is not None:
                assert value in comfy_host.folder_paths.get_filename_list(folder), (folder, value)
    valid, error, outputs, node_errors = comfy_host.validate(prompt)
    assert valid, (error, node_errors)
    assert node_errors == {}
    assert set(outputs) == {i for i, n in prompt.items() if definitions[n["class_type"]]["output_node"]}


@pytest.mark.parametrize("name", NAMES)
def test_layout_is_readable(name):
    workflow = committed(name)
    assert layout_problems(workflow) == []
    x = {n["id"]: n["pos"][0] for n in workflow["nodes"]}
    assert [link for link in workflow["links"] if x[link[1]] > x[link[3]]] == [], "links should run left to right"
    groups = workflow["groups"]
    assert groups and all(g["title"] for g in groups)
    notes = [n for n in workflow["nodes"] if n["type"] == bw.NOTE_TYPE]
    for group in groups:  # every stage explains itself
        gx, gy, gw, gh = group["bounding"]
        assert any(gx <= n["pos"][0] < gx + gw and gy <= n["pos"][1] < gy + gh for n in notes), group["title"]


def test_workflows_wire_the_pack_as_documented(definitions):
    train = ui_to_api(committed("sma_train_motion_lora"), definitions)
    trainer = only(train, "SMA_TrainMotionLoRA")
    checkpoint = only(train, "CheckpointLoaderSimple")
    inputs = train[trainer]["inputs"]
    assert (inputs["model"], inputs["vae"]) == ([checkpoint, 0], [checkpoint, 2])
    assert inputs["frames"] == [only(train, "SMA_LoadReferenceVideo"), 0]
    assert inputs["positive"] == [only(train, "CLIPTextEncode"), 0]
    shown = {tuple(n["inputs"]["images"]) for n in train.values() if n["class_type"] == "PreviewImage"}
    assert shown == {(trainer, 1), (trainer, 2)}  # the loss curve and the preview

    apply = ui_to_api(committed("sma_apply_motion_lora"), definitions)
    ade = only(apply, "ADE_ApplyAnimateDiffModelSimple")
    assert apply[ade]["inputs"]["motion_lora"] == [only(apply, "SMA_ApplyMotionLoRA"), 0]
    assert apply[ade]["inputs"]["motion_model"] == [only(apply, "ADE_LoadAnimateDiffModel"), 0]
    sampling = only(apply, "ADE_UseEvolvedSampling")
    assert apply[sampling]["inputs"]["m_models"] == [ade, 0]
    assert apply[only(apply, "KSampler")]["inputs"]["model"] == [sampling, 0]
    assert apply[only(apply, "CreateVideo")]["inputs"]["images"] == [only(apply, "VAEDecode"), 0]
    assert apply[only(apply, "SaveVideo")]["inputs"]["video"] == [only(apply, "CreateVideo"), 0]
    assert apply[only(apply, "EmptyLatentImage")]["inputs"]["batch_size"] == 16

    compare = ui_to_api(committed("sma_spectra_compare"), definitions)
    loaders = sorted(i for i, n in compare.items() if n["class_type"] == "SMA_LoadReferenceVideo")
    spectra = compare[only(compare, "SMA_VisualizeSpectra")]["inputs"]
    fidelity = compare[only(compare, "SMA_MotionFidelity")]["inputs"]
    assert [spectra["video"], spectra["compare_video"]] == [fidelity["reference"], fidelity["generated"]]
    assert sorted([spectra["video"][0], spectra["compare_video"][0]]) == loaders


def test_train_and_apply_is_one_queue_while_its_lora_is_missing(comfy_host, definitions, host_files):
    """What the workflow's note promises: the trainer's lora_name feeds Apply Motion LoRA, so a prompt whose LoRA
    file does not exist yet validates whole, the generation included (it runs after the training)."""
    prompt = ui_to_api(committed("sma_train_and_apply"), definitions)
    trainer, lora = only(prompt, "SMA_TrainMotionLoRA"), only(prompt, "SMA_ApplyMotionLoRA")
    assert prompt[lora]["inputs"]["trained_lora"] == [trainer, 0]
    assert prompt[trainer]["inputs"]["lora_name"] + ".safetensors" == prompt[lora]["inputs"]["lora_name"]
    assert prompt[only(prompt, "ADE_ApplyAnimateDiffModelSimple")]["inputs"]["motion_lora"] == [lora, 0]
    checkpoint = only(prompt, "CheckpointLoaderSimple")  # one checkpoint, shared by both rows
    assert prompt[only(prompt, "ADE_UseEvolvedSampling")]["inputs"]["model"] == [checkpoint, 0]
    missing = {**host_files, "animatediff_motion_lora": "not_trained_yet.safetensors"}
    valid, _, outputs, node_errors = comfy_host.validate(replace_files(prompt, missing))
    assert valid and not node_errors
    output_nodes = {i for i, n in prompt.items() if definitions[n["class_type"]]["output_node"]}
    assert set(outputs) == output_nodes and only(prompt, "SaveVideo") in outputs
    # without the link the missing file is reported on the Apply node, and only the generation is dropped
    del prompt[lora]["inputs"]["trained_lora"]
    valid, _, outputs, node_errors = comfy_host.validate(replace_files(prompt, missing))
    assert "no motion LoRA named 'not_trained_yet.safetensors'" in str(node_errors[lora]["errors"])
    assert only(prompt, "SaveVideo") not in outputs


def test_validator_and_layout_check_find_broken_workflows(definitions):
    good = committed("sma_train_motion_lora")
    trainer = next(n for n in good["nodes"] if n["type"] == "SMA_TrainMotionLoRA")
    names = [s.name for s in widget_slots(definitions["SMA_TrainMotionLoRA"])]

    def problems(change) -> list[str]:
        workflow = copy.deepcopy(good)
        change(workflow, next(n for n in workflow["nodes"] if n["id"] == trainer["id"]))
        return check_workflow(workflow, definitions, bw.USER_FILES)

    def set_widget(name, value):
        return lambda wf, node: node["widgets_values"].__setitem__(names.index(name), value)

    assert problems(lambda wf, node: None) == []
    assert "below the minimum 1" in problems(set_widget("steps", 0))[0]
    assert "not one of the options" in problems(set_widget("sma_mode", "fast"))[0]
    assert "not a boolean" in problems(set_widget("resume", "no"))[0]
    assert "not an integer" in problems(set_widget("rank", 3.5))[0]
    assert "expected file names" in problems(set_widget("motion_model", "other_mm.ckpt"))[0]
    assert "widget values" in problems(lambda wf, node: node["widgets_values"].pop())[0]
    assert "unknown type" in problems(lambda wf, node: node.__setitem__("type", "SMA_Gone"))[0]

    def retype(wf, node):  # the frames link now claims to carry a LATENT
        link = next(link for link in wf["links"] if link[3] == node["id"] and link[5] == "IMAGE")
        link[5] = "LATENT"
    assert any("saved as LATENT" in p for p in problems(retype))

    def unplug(wf, node):
        entry = next(e for e in node["inputs"] if e["name"] == "vae")
        wf["links"] = [link for link in wf["links"] if link[0] != entry["link"]]
        entry["link"] = None
    assert any("required input vae is not connected" in p for p in problems(unplug))

    moved = copy.deepcopy(good)
    loader = next(n for n in moved["nodes"] if n["type"] == "CheckpointLoaderSimple")
    loader["pos"] = list(next(n for n in moved["nodes"] if n["type"] == "CLIPTextEncode")["pos"])
    assert any("overlap" in p for p in layout_problems(moved))


# The frontend's own format for a small graph, written by hand from what comfyui-frontend-package 1.27.10 saves
# (docs/workflow-format.md; the browser test compares this converter with the real graphToPrompt).
HAND_DEFINITIONS = {
    "Loader": {
        "input": {"required": {"video": ["COMBO", {"options": ["a.mp4", "b.mp4"], "video_upload": True}],
                               "frames": ["INT", {"default": 16, "min": 1, "max": 64}]},
                  "optional": {"images": ["IMAGE"], "label": ["STRING", {"default": ""}]}},
        "input_order": {"required": ["video", "frames"], "optional": ["images", "label"]},
        "output": ["IMAGE", "INT"], "output_name": ["frames", "count"], "output_node": False},
    "Sampler": {
        "input": {"required": {"images": ["IMAGE"],
                               "seed": ["INT", {"default": 0, "min": 0, "max": 2**32, "control_after_generate": True}],
                               "mode": [["fast", "slow"]], "enabled": ["BOOLEAN", {"default": True}]}},
        "input_order": {"required": ["images", "seed", "mode", "enabled"]},
        "output": [], "output_name": [], "output_node": True},
}
HAND_WORKFLOW = {
    "last_node_id": 9, "last_link_id": 1, "version": 0.4, "groups": [],
    "links": [[1, 3, 0, 5, 0, "IMAGE"]],
    "nodes": [
        {"id": 3, "type": "Loader", "pos": [0, 0], "size": [300, 200], "flags": {}, "order": 0, "mode": 0,
         "inputs": [{"name": "images", "shape": 7, "type": "IMAGE", "link": None},
                    {"name": "video", "type": "COMBO", "widget": {"name": "video"}, "link": None},
                    {"name": "frames", "type": "INT", "widget": {"name": "frames"}, "link": None},
                    {"name": "upload", "type": "IMAGEUPLOAD", "widget": {"name": "upload"}, "link": None},
                    {"name": "label", "type": "STRING", "widget": {"name": "label"}, "link": None}],
         "outputs": [{"name": "frames", "type": "IMAGE", "links": [1]},
                     {"name": "count", "type": "INT", "links": None}],
         "properties": {}, "widgets_values": ["b.mp4", 8, "image", "x"]},
        {"id": 5, "type": "Sampler", "pos": [400, 0], "size": [300, 160], "flags": {}, "order": 1, "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 1},
                    {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": None},
                    {"name": "mode", "type": "COMBO", "widget": {"name": "mode"}, "link": None},
                    {"name": "enabled", "type": "BOOLEAN", "widget": {"name": "enabled"}, "link": None}],
         "outputs": [], "properties": {}, "widgets_values": [7, "randomize", "slow", False]},
        {"id": 9, "type": "Note", "pos": [0, 300], "size": [300, 88], "flags": {}, "order": 2, "mode": 0,
         "properties": {}, "widgets_values": ["hello"]},
    ],
}


def test_ui_to_api_follows_the_frontend_widget_layout():
    assert [(s.name, s.role) for s in widget_slots(HAND_DEFINITIONS["Loader"])] == [
        ("video", "value"), ("frames", "value"), ("upload", "upload"), ("label", "value")]
    assert [(s.name, s.role) for s in widget_slots(HAND_DEFINITIONS["Sampler"])] == [
        ("seed", "value"), ("control_after_generate", "control"), ("mode", "value"), ("enabled", "value")]
    assert ui_to_api(HAND_WORKFLOW, HAND_DEFINITIONS) == {
        "3": {"class_type": "Loader", "inputs": {"video": "b.mp4", "frames": 8, "label": "x"}},
        "5": {"class_type": "Sampler", "inputs": {"seed": 7, "mode": "slow", "enabled": False, "images": ["3", 0]}},
    }
    untouched = replace_files(ui_to_api(HAND_WORKFLOW, HAND_DEFINITIONS), {"input": "c.mp4"})
    assert untouched["3"]["inputs"]["video"] == "b.mp4"  # "Loader" is no FILE_INPUTS node
    short = copy.deepcopy(HAND_WORKFLOW)
    short["nodes"][1]["widgets_values"] = [7, "slow", False]  # without the seed's control value
    with pytest.raises(ValueError, match="3 widget values for 4 widgets"):
        ui_to_api(short, HAND_DEFINITIONS)
