"""Queue in the real ComfyUI frontend: one press trains a motion LoRA and generates a video with it, a second press
of the unchanged graph takes the training from the cache, and a changed setting trains again.

The user's path through ``sma_train_and_apply`` (and ``sma_train_motion_lora``) on a server that has the
random-weight full-size SD1.5 checkpoint and v3 motion module (the host tests' files, linked under their own names)
and no LoRA yet: the workflow is opened from the template route, turned down in the page the way a user would (the
model files picked, a 4-frame 64 px clip, 1 training step, 1 sampling step), and the Queue button is clicked three
times in the same page: once as it is, once unchanged (by then the frontend shows the clip's preview on the loader,
a display-only widget whose value it sends too), once with one more training step. About four minutes on 2 CPU
cores, most of it the three training steps.

Its own module: the in-process host (whose fixtures make the model files) must boot while no Playwright event loop
runs, so after the other browser tests have closed theirs. Needs what ``tests/test_browser.py`` needs.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from browser_frontend import (BENIGN_PAGE_ERRORS, LOAD_JS, QUEUE_BUTTON, frontend, get, require_browser, serve,
                              write_clip)
from conftest import PACK_DIR_NAME, REPO_ROOT, place_model_file
from sma.lora import load_motion_lora
from sma.video import read_video
from workflows import build_workflows as bw
from workflows.graphs import LORA_FILE

NAME = "sma_train_and_apply"
RUN_FRAMES, RUN_SIZE = 4, 64
CHEAP_SETTINGS = {  # what a user turns down for a first try: a short small clip, 1 training step, 1 sampling step
    "SMA_LoadReferenceVideo": {"frame_load_cap": RUN_FRAMES, "width": RUN_SIZE, "height": RUN_SIZE},
    "SMA_TrainMotionLoRA": {"steps": 1},
    "EmptyLatentImage": {"width": RUN_SIZE, "height": RUN_SIZE, "batch_size": RUN_FRAMES},
    "KSampler": {"steps": 1},
}
SET_WIDGETS_JS = """
(settings) => {  // {type: {widget: value}} on every node of that type, as the user's edits do; read back
    const seen = {};
    for (const node of app.graph.nodes.filter((n) => n.type in settings)) {
        for (const [name, value] of Object.entries(settings[node.type])) {
            const widget = node.widgets.find((w) => w.name === name);
            if (!widget) throw new Error(`${node.type} has no widget ${name}`);
            widget.value = value;
            widget.callback?.(value, app.canvas, node);
        }
        seen[node.id] = Object.fromEntries(Object.keys(settings[node.type])
            .map((name) => [name, node.widgets.find((w) => w.name === name).value]));
    }
    app.graph.setDirtyCanvas(true, true);
    return seen;
}
"""

PREVIEW = "video-preview"  # the display-only widget the frontend adds to a video loader once its clip has loaded
HIDE_PREVIEW_JS = """
([id, name]) => {  // the loader as it is before its clip's preview has loaded: no preview widget yet
    const node = app.graph.getNodeById(Number(id));
    const at = node.widgets.findIndex((w) => w.name === name);
    if (at >= 0) {
        node.widgets[at].onRemove?.();
        node.widgets.splice(at, 1);
    }
    node.videoContainer = undefined;
    app.graph.setDirtyCanvas(true, true);
}
"""
SHOW_PREVIEW_JS = """
(id) => {  // what picking the clip in the loader's list does: the frontend loads and shows its preview
    const node = app.graph.getNodeById(Number(id));
    const combo = node.widgets.find((w) => w.name === "video");
    combo.callback?.(combo.value, app.canvas, node);
    app.graph.setDirtyCanvas(true, true);
}
"""
HAS_PREVIEW_JS = "([id, name]) => app.graph.getNodeById(Number(id)).widgets.some((w) => w.name === name)"


@pytest.fixture(scope="module")
def trainer_server(tmp_path_factory, full_sd15_checkpoint_file, full_v3_motion_module_file):
    """ComfyUI with the random-weight full-size SD1.5 checkpoint and v3 motion module linked into its model folders
    (their own names), an empty motion LoRA folder and a short reference clip under the workflows' name."""
    require_browser()  # before the server boots
    base = tmp_path_factory.mktemp("browser_run")
    names = {}
    for folder, source in (("checkpoints", full_sd15_checkpoint_file),
                           ("animatediff_models", full_v3_motion_module_file)):
        (base / "models" / folder).mkdir(parents=True)
        names[folder] = place_model_file(base / "models" / folder, source)
    (base / "models" / "animatediff_motion_lora").mkdir()
    write_clip(base / "input" / bw.USER_FILES["input"][0], RUN_FRAMES, RUN_SIZE)
    with serve(base) as server:
        yield SimpleNamespace(url=server.url, base=base, names=names)


def _finished(browser: SimpleNamespace, url: str, prompt_id: str, timeout: float) -> dict:
    """The prompt's ``/history`` entry once it has finished and the page has had the server's last message about
    it (polled; the page's waits let its events arrive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = any(m["type"] == "executing" and m["data"] == {"node": None, "prompt_id": prompt_id}
                   for m in browser.messages)
        entry = json.loads(get(f"{url}/history/{prompt_id}")[2]).get(prompt_id)
        if done and entry:
            return entry
        browser.page.wait_for_timeout(500)
    raise AssertionError(f"prompt {prompt_id} did not finish in {timeout:.0f} s")


def _open(browser: SimpleNamespace, name: str, settings: dict) -> dict[str, str]:
    """Open workflow ``name`` from the template route and set ``settings`` ({type: {widget: value}}) as a user
    does; returns {node type: node id}."""
    workflow = json.loads((REPO_ROOT / "workflows" / f"{name}.json").read_text())
    by_type = {n["type"]: str(n["id"]) for n in workflow["nodes"]}
    state = browser.page.evaluate(LOAD_JS, [f"/api/workflow_templates/{PACK_DIR_NAME}/{name}.json", name, None])
    assert state["status"] == 200 and state["dialogs"] == [] and state["unregistered"] == []
    _set(browser, by_type, settings)
    return by_type


def _set(browser: SimpleNamespace, by_type: dict[str, str], settings: dict) -> None:
    """Set widgets in the page as the user's edits do, and check they read back."""
    seen = browser.page.evaluate(SET_WIDGETS_JS, settings)
    assert seen == {by_type[t]: values for t, values in settings.items()}


def _first_press(browser: SimpleNamespace, url: str, by_type: dict[str, str]) -> SimpleNamespace:
    """Queue before the loader's clip preview has loaded (a user who presses Queue right after picking the clip):
    the prompt carries no preview value."""
    loader = by_type["SMA_LoadReferenceVideo"]
    browser.page.evaluate(HIDE_PREVIEW_JS, [loader, PREVIEW])
    first = _press_queue(browser, url)
    assert PREVIEW not in first.sent[loader]["inputs"]
    return first


def _press_queue(browser: SimpleNamespace, url: str) -> SimpleNamespace:
    """Click Queue once and wait for the prompt; returns ``SimpleNamespace(prompt_id, sent, entry, executed,
    cached)``: the prompt the frontend sent, its history entry, and the ids of the nodes that ran and of those
    that came from the cache."""
    page = browser.page
    with page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST") as posted:
        page.locator(QUEUE_BUTTON).first.click()
    sent, answer = posted.value.request.post_data_json["prompt"], posted.value.json()
    assert answer["node_errors"] == {}
    prompt_id = answer["prompt_id"]
    entry = _finished(browser, url, prompt_id, timeout=600)
    assert entry["status"]["status_str"] == "success", entry["status"]["messages"]
    mine = [m for m in browser.messages if isinstance(m.get("data"), dict) and m["data"].get("prompt_id") == prompt_id]
    executed = [m["data"]["node"] for m in mine if m["type"] == "executing" and m["data"]["node"] is not None]
    cached = {node for m in mine if m["type"] == "execution_cached" for node in m["data"]["nodes"]}
    assert [e for e in browser.errors if not e.startswith(BENIGN_PAGE_ERRORS)] == []
    return SimpleNamespace(prompt_id=prompt_id, sent=sent, entry=entry, executed=executed, cached=cached)


def _model_settings(server: SimpleNamespace, lora_name: str | None = None) -> dict:
    """``CHEAP_SETTINGS`` with the server's model files picked (and the trainer's ``lora_name``, if given)."""
    trainer = {**CHEAP_SETTINGS["SMA_TrainMotionLoRA"], "motion_model": server.names["animatediff_models"]}
    if lora_name:
        trainer["lora_name"] = lora_name
    return {**CHEAP_SETTINGS, "SMA_TrainMotionLoRA": trainer,
            "CheckpointLoaderSimple": {"ckpt_name": server.names["checkpoints"]},
            "ADE_LoadAnimateDiffModel": {"model_name": server.names["animatediff_models"]}}


def _assert_requeues(browser: SimpleNamespace, server: SimpleNamespace, by_type: dict[str, str],
                     lora_path: Path) -> None:
    """The second press of the unchanged graph, now with the clip's preview shown, trains nothing; a third, with
    ``steps`` 2, trains again."""
    trainer, loader = by_type["SMA_TrainMotionLoRA"], by_type["SMA_LoadReferenceVideo"]
    browser.page.evaluate(SHOW_PREVIEW_JS, loader)
    browser.page.wait_for_function(HAS_PREVIEW_JS, arg=[loader, PREVIEW], timeout=30_000)
    trained = lora_path.stat().st_mtime_ns
    again = _press_queue(browser, server.url)
    assert PREVIEW in again.sent[loader]["inputs"]  # the frontend sends the display-only widget's value too
    assert {trainer, loader} <= again.cached and trainer not in again.executed, (again.cached, again.executed)
    assert lora_path.stat().st_mtime_ns == trained
    assert load_motion_lora(lora_path)[1]["steps_done"] == 1
    _set(browser, by_type, {"SMA_TrainMotionLoRA": {"steps": 2}})
    changed = _press_queue(browser, server.url)
    assert trainer in changed.executed and trainer not in changed.cached
    assert loader in changed.cached  # upstream of the change: still from the cache
    assert lora_path.stat().st_mtime_ns > trained
    assert load_motion_lora(lora_path)[1]["steps_done"] == 2


def test_one_queue_of_train_and_apply_trains_then_generates_and_requeues_from_the_cache(trainer_server):
    """The user's path: open the workflow, turn it down, press Queue once; the LoRA is trained and the video is
    generated with it, in that order. Queue again unchanged: nothing is trained; change ``steps``: retrained."""
    lora_dir = trainer_server.base / "models" / "animatediff_motion_lora"
    settings = _model_settings(trainer_server)
    with frontend(trainer_server.url) as browser:
        by_type = _open(browser, NAME, settings)
        assert list(lora_dir.iterdir()) == []  # the first Queue: no LoRA file yet
        first = _first_press(browser, trainer_server.url, by_type)
        for node_type, values in settings.items():
            assert first.sent[by_type[node_type]]["inputs"].items() >= values.items()
        assert json.loads(get(f"{trainer_server.url}/history")[2]).keys() == {first.prompt_id}  # one prompt
        entry, executing = first.entry, first.executed
        # the trainer named its file, and that file is a motion LoRA trained against the chosen module for 1 step
        lora_name = entry["outputs"][by_type["PreviewAny"]]["text"][0]
        assert lora_name == LORA_FILE
        lora_path = lora_dir / lora_name
        state_dict, metadata = load_motion_lora(lora_path)
        assert metadata["steps_done"] == 1 and metadata["motion_module"] == trainer_server.names["animatediff_models"]
        assert len(state_dict) == 2 * 160  # v3: every motion-module attention projection (q, k, v, out)
        assert any(t.abs().max() > 0 for k, t in state_dict.items() if k.endswith(".up.weight"))  # zero before a step
        # the generation: an mp4 of RUN_FRAMES frames at RUN_SIZE, written after the LoRA
        saved = entry["outputs"][by_type["SaveVideo"]]["images"]
        assert len(saved) == 1
        video = trainer_server.base / "output" / saved[0]["subfolder"] / saved[0]["filename"]
        clip = read_video(video, min_frames=1)
        assert tuple(clip.frames.shape) == (RUN_FRAMES, RUN_SIZE, RUN_SIZE, 3) and float(clip.frames.std()) > 0.01
        assert lora_path.stat().st_mtime_ns <= video.stat().st_mtime_ns
        order = [by_type[t] for t in ("SMA_TrainMotionLoRA", "SMA_ApplyMotionLoRA", "KSampler", "SaveVideo")]
        assert set(order) <= set(executing) and sorted(order, key=executing.index) == order, executing
        _assert_requeues(browser, trainer_server, by_type, lora_path)


def test_train_only_workflow_requeues_from_the_cache(trainer_server):
    """``sma_train_motion_lora``: the first press trains, an unchanged second press trains nothing, a changed
    setting trains again."""
    lora_name = "sma_train_only"
    lora_path = trainer_server.base / "models" / "animatediff_motion_lora" / f"{lora_name}.safetensors"
    settings = {t: v for t, v in _model_settings(trainer_server, lora_name).items()
                if t in ("SMA_LoadReferenceVideo", "SMA_TrainMotionLoRA", "CheckpointLoaderSimple")}
    with frontend(trainer_server.url) as browser:
        by_type = _open(browser, "sma_train_motion_lora", settings)
        first = _first_press(browser, trainer_server.url, by_type)
        assert by_type["SMA_TrainMotionLoRA"] in first.executed
        assert first.entry["outputs"][by_type["PreviewAny"]]["text"][0] == lora_path.name
        assert load_motion_lora(lora_path)[1]["steps_done"] == 1
        _assert_requeues(browser, trainer_server, by_type, lora_path)
