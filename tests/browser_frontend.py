"""The real ComfyUI frontend in headless Chromium (Playwright, offline) for the browser tests: a server with a user
folder that skips the first-run dialog, a ready page of its frontend, and the script that loads a workflow there.

Needs the host, ``pip install playwright`` (never ``playwright install``: the system Chromium is used) and
``apt-get install chromium``; without them the tests skip, under CI they fail.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import comfy_server
from synthetic_clips import moving_shapes_clip
from sma.video import write_video

VIEWPORT = {"width": 1600, "height": 1000}
SETTINGS = {
    "Comfy.TutorialCompleted": True,  # no "Get Started with a Template" dialog on a fresh user folder
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,  # draw titles and widgets at any zoom (screenshots)
    "Comfy.Minimap.Visible": False,
    "Comfy.Graph.CanvasInfo": False,
    "Comfy.Graph.CanvasMenu": False,
}
READY = ("() => !!(window.app?.vueAppReady && app.graph && app.canvas "
         "&& app.extensionManager?.workflow?.activeWorkflow)")
# The Queue button: a button inside the element of this test id (frontend 1.27) or the element itself (1.49).
QUEUE_BUTTON = "[data-testid=queue-button] button, button[data-testid=queue-button]"
# Thrown by a setting's onChange at every startup of frontend 1.27.10 (docs/workflow-format.md); harmless.
BENIGN_PAGE_ERRORS = ("Cannot read properties of undefined (reading 'id')",)

LOAD_JS = """
async ([url, name, given]) => {  // the workflow served at url (a template), or the given one
    const response = given ? null : await fetch(url);
    const workflow = given ?? await response.json();
    await app.loadGraphData(workflow, true, true, name);
    await new Promise((resolve) => setTimeout(resolve, 400));  // dialogs and toasts render on later ticks
    const { output } = await app.graphToPrompt();
    const notes = app.graph.nodes.filter((n) => n.type === "MarkdownNote").map((n) => {
        const box = n.widgets[0].element;
        const text = box.querySelector(".ProseMirror");
        const bottom = Math.max(...[...text.children].map((c) => c.offsetTop + c.offsetHeight));
        return { id: n.id, visible: box.clientHeight, text: bottom };
    });
    return {
        status: response?.status,
        dialogs: [...document.querySelectorAll("div.p-dialog.global-dialog[role=dialog]")]
            .map((d) => `${d.getAttribute("aria-labelledby")}: ${d.innerText.slice(0, 300)}`),
        warnings: [...document.querySelectorAll(".p-toast-message-warn, .p-toast-message-error")]
            .map((t) => t.innerText.slice(0, 300)),
        unregistered: app.graph.nodes.map((n) => n.type).filter((t) => !(t in LiteGraph.registered_node_types)),
        saved: JSON.stringify(app.graph.serialize()),
        prompt: JSON.stringify(output),
        notes,
    };
}
"""


def require_browser() -> str:
    """The system Chromium; skip without it or without Playwright (fail under CI)."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("pip install playwright  (not 'playwright install': the system Chromium is used)")
    chromium = os.environ.get("SMA_CHROMIUM") or shutil.which("chromium")
    if not chromium or not os.path.exists(chromium):
        missing.append("apt-get install -y --no-install-recommends chromium (or SMA_CHROMIUM=<path>)")
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("browser tests need: " + "; ".join(missing))
    return chromium


def get(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def serve(base: Path):
    """``comfy_server`` on ``base`` with a user folder whose settings skip the first-run dialog."""
    user = base / "user"
    (user / "default").mkdir(parents=True)
    (user / "default" / "comfy.settings.json").write_text(json.dumps(SETTINGS))
    return comfy_server(base, "--user-directory", str(user))


def write_clip(path: Path, frames: int, size: int, seed: int = 0) -> None:
    """A real video file of moving shapes, ``frames`` frames of ``size`` x ``size`` at 8 fps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, moving_shapes_clip(frames=frames, height=size, width=size, seed=seed).frames, fps=8)


@contextlib.contextmanager
def frontend(url: str):
    """A page of the ready frontend served at ``url``; yields ``SimpleNamespace(page, errors, messages)``: the
    page errors and the server's websocket messages (decoded JSON; binary previews left out) seen so far."""
    executable = require_browser()
    from playwright.sync_api import sync_playwright

    def record(payload) -> None:
        if isinstance(payload, str):
            messages.append(json.loads(payload))

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = chromium.new_context(viewport=VIEWPORT)
            context.route(lambda u: u.startswith("http") and not u.startswith(url),
                          lambda route: route.abort())  # offline and deterministic: only the local server
            page = context.new_page()
            errors: list[str] = []
            messages: list[dict] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("websocket", lambda socket: socket.on("framereceived", record))
            page.goto(url)
            page.wait_for_function(READY, timeout=60_000)
            yield SimpleNamespace(page=page, errors=errors, messages=messages)
        finally:
            chromium.close()
