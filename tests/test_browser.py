"""The example workflows in the real ComfyUI frontend: headless Chromium, offline, driven by Playwright.

The real server (``main.py`` with AnimateDiff-Evolved and this pack in ``custom_nodes``) serves its pinned
frontend; empty model files carry the workflows' model names so the widget lists contain them. Each workflow is
fetched from the server's template route (as the template browser does) and loaded with ``app.loadGraphData``;
then no dialog or warning may appear, every node type must be registered, the frontend must save exactly the
file's nodes, sizes, widget values, links and groups back, and its ``graphToPrompt`` must equal
``workflows.ui_format.ui_to_api``. A screenshot of each is taken; ``SMA_WRITE_SCREENSHOTS=1`` writes them to
``docs/workflow_<name>.png`` and the template thumbnails ``workflows/<name>.jpg``.

Needs the host, ``pip install playwright`` (never ``playwright install``: the system Chromium is used) and
``apt-get install chromium``; without them the tests skip, under CI they fail.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from browser_frontend import BENIGN_PAGE_ERRORS, LOAD_JS, VIEWPORT, frontend, get, serve, write_clip
from conftest import PACK_DIR_NAME, REPO_ROOT, require_host
from sma.atomic import atomic_write_path
from workflows import build_workflows as bw
from workflows.ui_format import DEFINITION_KEYS, FRONTEND_ONLY_TYPES, input_specs, ui_to_api

NAMES = sorted(bw.WORKFLOWS)
WORKFLOW_DIR = REPO_ROOT / "workflows"
DOCS_DIR = REPO_ROOT / "docs"
MAX_SCREENSHOT_BYTES = 400_000
THUMBNAIL_SIZE = (480, 300)
# Display-only widgets the frontend adds (the clip preview of a loader, PreviewAny's text); graphToPrompt sends
# them as "" and the server ignores them.
DISPLAY_WIDGETS = {"video-preview", "preview"}

FIT_JS = """
() => {  // the whole drawing, group titles included, centred in the canvas
    const rects = [...app.graph.nodes.map((n) => n.boundingRect), ...app.graph.groups.map((g) => g._bounding)];
    const x0 = Math.min(...rects.map((r) => r[0])), y0 = Math.min(...rects.map((r) => r[1]));
    const x1 = Math.max(...rects.map((r) => r[0] + r[2])), y1 = Math.max(...rects.map((r) => r[1] + r[3]));
    const { clientWidth: width, clientHeight: height } = app.canvas.canvas;
    const margin = 24;
    const scale = Math.min((width - 2 * margin) / (x1 - x0), (height - 2 * margin) / (y1 - y0));
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset = [(width / scale - (x1 - x0)) / 2 - x0, (height / scale - (y1 - y0)) / 2 - y0];
    app.canvas.setDirty(true, true);
    return scale;
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """ComfyUI serving its frontend, with ADE and this pack, empty model files under the workflows' names,
    real clips in ``input/`` (the loaders show them) and a user folder whose settings skip the first-run dialog."""
    require_host()
    base = tmp_path_factory.mktemp("browser")
    for folder, names in bw.USER_FILES.items():
        target = base / folder if folder == "input" else base / "models" / folder
        target.mkdir(parents=True, exist_ok=True)
        for seed, name in enumerate(names):
            if folder == "input":
                write_clip(target / name, 16, 128, seed)
            else:
                (target / name).touch()
    with serve(base) as server:
        yield server


@pytest.fixture(scope="module")
def browser(server):
    """A page of the ready frontend (focus mode: canvas only), and the page errors seen so far."""
    with frontend(server.url) as browser:
        browser.page.evaluate("() => app.extensionManager.command.execute('Workspace.ToggleFocusMode')")
        yield browser


def test_the_pack_serves_its_workflows_as_templates(server):
    status, _, body = get(f"{server.url}/workflow_templates")
    templates = json.loads(body)
    assert status == 200 and sorted(templates[PACK_DIR_NAME]) == NAMES  # each once: one folder holds them
    for name in NAMES:
        status, _, body = get(f"{server.url}/api/workflow_templates/{PACK_DIR_NAME}/{name}.json")
        assert status == 200 and json.loads(body) == json.loads((WORKFLOW_DIR / f"{name}.json").read_text())
        if (WORKFLOW_DIR / f"{name}.jpg").exists():  # the template browser's thumbnail
            status, kind, _ = get(f"{server.url}/api/workflow_templates/{PACK_DIR_NAME}/{name}.jpg")
            assert status == 200 and kind == "image/jpeg"


def test_the_files_are_what_the_builder_makes_from_the_served_definitions(server):
    definitions = {t: {k: server.object_info[t][k] for k in DEFINITION_KEYS} for t in bw.NODE_TYPES}
    for name, graph in bw.build_all(definitions).items():
        assert (WORKFLOW_DIR / f"{name}.json").read_text() == bw.dumps(graph.ui()), name


def test_frontend_only_types_are_registered_by_the_frontend_alone(server, browser):
    registered = browser.page.evaluate("(types) => types.filter((t) => t in LiteGraph.registered_node_types)",
                                       sorted(FRONTEND_ONLY_TYPES))
    assert registered == sorted(FRONTEND_ONLY_TYPES)
    assert not FRONTEND_ONLY_TYPES & set(server.object_info)


def _saved_view(workflow: dict) -> dict:
    """What must survive a load / save round trip through the frontend."""
    def node_view(n: dict) -> tuple:
        return (n["type"], n.get("title"), [float(v) for v in n["pos"]], [float(v) for v in n["size"]],
                n.get("widgets_values"), [(e["name"], e["type"], e.get("link")) for e in n.get("inputs", [])],
                [(e["name"], e["type"], e.get("links")) for e in n.get("outputs", [])])

    return {
        "nodes": {n["id"]: node_view(n) for n in workflow["nodes"]},
        "links": [list(link) for link in workflow["links"]],
        "groups": [(g["title"], [float(v) for v in g["bounding"]]) for g in workflow["groups"]],
    }


def _declared_inputs(prompt: dict, definitions: dict) -> tuple[dict, set[str]]:
    """``graphToPrompt``'s output without ``_meta`` and without inputs the node does not declare (the server
    ignores those), and the names of the inputs left out."""
    out, extra = {}, set()
    for node_id, node in prompt.items():
        declared = {s.name for s in input_specs(definitions[node["class_type"]])}
        out[node_id] = {"class_type": node["class_type"],
                        "inputs": {k: v for k, v in node["inputs"].items() if k in declared}}
        extra |= {k for k, v in node["inputs"].items() if k not in declared and v == ""}
        assert all(k in declared or v == "" for k, v in node["inputs"].items()), node
    return out, extra


def _save_screenshot(png: bytes, name: str, tmp_path: Path) -> Path:
    """Optimised PNG (and, when writing the docs, the template thumbnail); returns the PNG's path."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    write = os.environ.get("SMA_WRITE_SCREENSHOTS") == "1"
    path = (DOCS_DIR if write else tmp_path) / f"workflow_{name}.png"
    with atomic_write_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    if write:
        with atomic_write_path(WORKFLOW_DIR / f"{name}.jpg") as tmp:
            image.resize(THUMBNAIL_SIZE, Image.LANCZOS).save(tmp, format="JPEG", quality=85)
    return path


@pytest.mark.parametrize("name", NAMES)
def test_workflow_loads_cleanly_and_round_trips(name, server, browser, tmp_path):
    page = browser.page
    workflow = json.loads((WORKFLOW_DIR / f"{name}.json").read_text())
    state = page.evaluate(LOAD_JS, [f"/api/workflow_templates/{PACK_DIR_NAME}/{name}.json", name, None])
    assert state["status"] == 200
    assert state["dialogs"] == []  # no missing nodes, missing models or load error
    assert state["warnings"] == []  # no "Invalid workflow against zod schema" toast
    assert state["unregistered"] == []
    saved = json.loads(state["saved"])
    assert len(saved["nodes"]) == len(workflow["nodes"])
    assert _saved_view(saved) == _saved_view(workflow)  # sizes kept: nothing grew over its neighbours
    definitions = {t: server.object_info[t] for t in {n["type"] for n in workflow["nodes"]} - FRONTEND_ONLY_TYPES}
    prompt, display = _declared_inputs(json.loads(state["prompt"]), definitions)
    assert prompt == ui_to_api(workflow, definitions)
    assert display <= DISPLAY_WIDGETS
    clipped = [note for note in state["notes"] if note["text"] > note["visible"]]
    assert len(state["notes"]) >= len(workflow["groups"]) and not clipped, clipped

    scale = page.evaluate(FIT_JS)
    assert scale > 0.45, "too large to read in one screenshot"
    page.wait_for_function("() => [...document.querySelectorAll('video')].every((v) => v.readyState >= 2)",
                           timeout=20_000)  # the loaders' clip previews show a frame
    page.wait_for_timeout(300)
    path = _save_screenshot(page.screenshot(), name, tmp_path)
    assert path.stat().st_size < MAX_SCREENSHOT_BYTES
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        assert image.size == (VIEWPORT["width"], VIEWPORT["height"])
        assert max(ImageStat.Stat(image.convert("L")).stddev) > 10  # a drawn graph (an empty canvas: 2.4)
    for button in page.query_selector_all(".p-toast-message .p-toast-close-button"):
        button.click()
    assert [e for e in browser.errors if not e.startswith(BENIGN_PAGE_ERRORS)] == []


def test_the_checks_see_a_broken_workflow(browser):
    """The dialog, toast and registry checks above are live: a missing node type and a schema error show."""
    workflow = json.loads((WORKFLOW_DIR / "sma_spectra_compare.json").read_text())
    workflow["nodes"][-1]["type"] = "SMA_NoSuchNode"
    workflow["nodes"][0]["order"] = "first"  # the schema wants a number
    state = browser.page.evaluate(LOAD_JS, [None, "broken", workflow])
    try:
        assert state["unregistered"] == ["SMA_NoSuchNode"]
        assert any(d.startswith("global-load-workflow-warning") and "SMA_NoSuchNode" in d for d in state["dialogs"])
        assert any("zod" in w for w in state["warnings"])
    finally:
        browser.page.keyboard.press("Escape")
        for button in browser.page.query_selector_all(".p-toast-message .p-toast-close-button"):
            button.click()

