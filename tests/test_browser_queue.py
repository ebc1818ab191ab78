"""One press of Queue in the real ComfyUI frontend trains a motion LoRA and generates a video with it.

The user's path through ``sma_train_and_apply`` on a server that has the random-weight full-size SD1.5 checkpoint and
v3 motion module (the host tests' files, linked under their own names) and no LoRA yet: the workflow is opened from
the template route, turned down in the page the way a user would (the model files picked, a 4-frame 64 px clip,
1 training step, 1 sampling step), the Queue button is clicked once, and that one prompt must train the LoRA, then
generate and save the video with it. About a minute and a half on 2 CPU cores, most of it the training step.

Its own module: the in-process host (whose fixtures make the model files) must boot while no Playwright event loop
runs, so after the other browser tests have closed theirs. Needs what ``tests/test_browser.py`` needs.
"""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from browser_frontend import BENIGN_PAGE_ERRORS, LOAD_JS, frontend, get, require_browser, serve, write_clip
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


def test_one_queue_of_train_and_apply_trains_then_generates(trainer_server):
    """The user's path: open the workflow, turn it down, press Queue once; the LoRA is trained and the video is
    generated with it, in that order."""
    workflow = json.loads((REPO_ROOT / "workflows" / f"{NAME}.json").read_text())
    by_type = {n["type"]: str(n["id"]) for n in workflow["nodes"]}
    models = {"CheckpointLoaderSimple": {"ckpt_name": trainer_server.names["checkpoints"]},
              "ADE_LoadAnimateDiffModel": {"model_name": trainer_server.names["animatediff_models"]}}
    settings = {**CHEAP_SETTINGS, **models, "SMA_TrainMotionLoRA": {
        **CHEAP_SETTINGS["SMA_TrainMotionLoRA"], "motion_model": trainer_server.names["animatediff_models"]}}
    lora_dir = trainer_server.base / "models" / "animatediff_motion_lora"
    with frontend(trainer_server.url) as browser:
        page = browser.page
        state = page.evaluate(LOAD_JS, [f"/api/workflow_templates/{PACK_DIR_NAME}/{NAME}.json", NAME, None])
        assert state["status"] == 200 and state["dialogs"] == [] and state["unregistered"] == []
        seen = page.evaluate(SET_WIDGETS_JS, settings)
        assert seen == {by_type[t]: values for t, values in settings.items()}
        assert list(lora_dir.iterdir()) == []  # the first Queue: no LoRA file yet
        with page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST") as posted:
            page.locator("[data-testid=queue-button] button").first.click()
        sent, answer = posted.value.request.post_data_json["prompt"], posted.value.json()
        assert answer["node_errors"] == {}
        for node_type, values in settings.items():
            assert sent[by_type[node_type]]["inputs"].items() >= values.items()
        entry = _finished(browser, trainer_server.url, answer["prompt_id"], timeout=600)
        executing = [m["data"]["node"] for m in browser.messages
                     if m["type"] == "executing" and m["data"].get("prompt_id") == answer["prompt_id"]]
        assert [e for e in browser.errors if not e.startswith(BENIGN_PAGE_ERRORS)] == []
    assert entry["status"]["status_str"] == "success", entry["status"]["messages"]
    assert json.loads(get(f"{trainer_server.url}/history")[2]).keys() == {answer["prompt_id"]}  # one prompt
    # the trainer named its file, and that file is a motion LoRA trained against the chosen module for 1 step
    lora_name = entry["outputs"][by_type["PreviewAny"]]["text"][0]
    assert lora_name == LORA_FILE
    lora_path = lora_dir / lora_name
    state_dict, metadata = load_motion_lora(lora_path)
    assert metadata["steps"] == 1 and metadata["motion_module"] == trainer_server.names["animatediff_models"]
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
