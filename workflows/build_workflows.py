"""Builds the example workflows ``workflows/*.json`` (ComfyUI's UI format) from API-format graphs and a layout.

Each workflow is written below as nodes with their inputs (the API graph), placed into titled groups laid out in
columns, left to right, with a Markdown note that explains each step. Positions, sizes, links and widget values
are derived here, from the host's node definitions (``/object_info``), so the files cannot drift from the nodes:
``tests/test_host_workflows.py`` rebuilds them with the real host and fails when a committed file differs.

Rebuild after changing a graph, a note or a node's inputs, either with the in-process host::

    SMA_WRITE_WORKFLOWS=1 python -m pytest -q tests/test_host_workflows.py -k committed

or from a running ComfyUI that has this pack and AnimateDiff-Evolved::

    python workflows/build_workflows.py --object-info http://127.0.0.1:8188/object_info
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _path in (HERE.parent, HERE.parent / "tests"):  # the library, and the format helpers shared with the tests
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from sma.atomic import atomic_write_path  # noqa: E402

from workflow_tools import (  # noqa: E402
    GROUP_TITLE_HEIGHT,
    NODE_TITLE_HEIGHT,
    UPLOAD_VALUE,
    InputSpec,
    input_specs,
    min_node_height,
    ui_inputs,
    ui_outputs,
    widget_slots,
)

# The file names users have (what the workflows select); tests swap in their own files.
CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
MOTION_MODULE = "v3_sd15_mm.ckpt"
LORA_STEM = "sma_motion"
LORA_FILE = f"{LORA_STEM}.safetensors"
REFERENCE_VIDEO = "reference.mp4"
GENERATED_VIDEO = "generated.mp4"
USER_FILES = {
    "checkpoints": (CHECKPOINT,),
    "animatediff_models": (MOTION_MODULE,),
    "animatediff_motion_lora": (LORA_FILE,),
    "input": (REFERENCE_VIDEO, GENERATED_VIDEO),
}

FRAMES = 16
SIZE = 512
FPS = 8.0
NOTE_TYPE = "MarkdownNote"
NOTE_COLORS = {"color": "#432", "bgcolor": "#653"}  # the frontend's note colours
NOTE_MIN_HEIGHT = 88  # the frontend's smallest note body
GROUP_COLORS = {  # LiteGraph's group palette
    "model": "#3f789e", "clip": "#8A8", "train": "#a1309b", "result": "#b58b2a",
    "animatediff": "#88A", "sample": "#8AA", "save": "#b06634",
}

PAD = 20          # group border to its nodes
ITEM_GAP = 40     # between stacked nodes (room for the node-source badge above a title bar)
COLUMN_GAP = 40   # between groups of a row
ROW_GAP = 60      # between rows of groups
ORIGIN = (0.0, 0.0)

Definitions = Mapping[str, Mapping]


@dataclass(frozen=True)
class Link:
    """Output ``slot`` of node ``node`` (an API-format link)."""

    node: int
    slot: int


@dataclass
class Item:
    """A node (or note) to place: API inputs, optional title, and its minimum body height."""

    id: int
    type: str
    inputs: dict[str, Any]
    title: str | None = None
    height: int = 0
    control: str | None = None
    text: str | None = None


@dataclass
class Column:
    """A stack of items; drawn as a group when it has a title."""

    title: str | None
    color: str | None
    width: int
    items: list[Item] = field(default_factory=list)


@dataclass(frozen=True)
class NodeRef:
    id: int
    outputs: tuple[str, ...]

    def __getitem__(self, output_name: str) -> Link:
        return Link(self.id, self.outputs.index(output_name))


class Graph:
    """An API graph being built, with the column layout its UI file gets (see the module docstring)."""

    def __init__(self, definitions: Definitions) -> None:
        self.definitions = definitions
        self.rows: list[list[Column]] = [[]]
        self.items: dict[int, Item] = {}
        self._column: Column | None = None

    def new_row(self) -> None:
        self.rows.append([])

    @contextlib.contextmanager
    def column(self, title: str | None, color: str | None = None, width: int = 340) -> Iterator[Column]:
        """Place the nodes added inside the ``with`` in a new column (a group when titled) of the current row."""
        column = Column(title, color, width)
        self.rows[-1].append(column)
        self._column = column
        try:
            yield column
        finally:
            self._column = None

    def _place(self, item: Item) -> None:
        if self._column is None:
            raise RuntimeError("add nodes inside a column")
        self.items[item.id] = item
        self._column.items.append(item)

    def note(self, text: str, height: int, title: str = "About this step") -> None:
        """A Markdown note (frontend only) of the given body height."""
        self._place(Item(len(self.items) + 1, NOTE_TYPE, {}, title=title, height=height, text=text.strip()))

    def add(self, class_type: str, inputs: Mapping[str, Any], *, title: str | None = None, height: int = 0,
            control: str | None = None) -> NodeRef:
        """Add a node; ``inputs`` are widget values or :class:`Link` s (unset widgets take their default);
        ``control`` is the value of a ``control_after_generate`` companion; ``height`` a minimum body height."""
        inputs = dict(inputs)
        definition = self.definitions[class_type]
        known = {s.name for s in input_specs(definition)}
        unknown = set(inputs) - known
        if unknown:
            raise ValueError(f"{class_type} has no input(s) {sorted(unknown)}")
        item = Item(len(self.items) + 1, class_type, inputs, title, height, control)
        self._place(item)
        return NodeRef(item.id, tuple(definition["output_name"]))

    # --- the API view -------------------------------------------------------------------------------------

    def _widget_value(self, item: Item, spec: InputSpec) -> Any:
        if spec.name in item.inputs:
            value = item.inputs[spec.name]
            if isinstance(value, Link):
                raise ValueError(f"{item.type}.{spec.name}: linked widgets are not supported")
            return value
        if "default" in spec.options:
            return spec.options["default"]
        raise ValueError(f"{item.type}.{spec.name} needs a value")

    def api(self) -> dict:
        """The API-format prompt (notes left out): ``{str(id): {"class_type", "inputs"}}``."""
        prompt = {}
        for item in self.items.values():
            if item.type == NOTE_TYPE:
                continue
            inputs: dict[str, Any] = {}
            for spec in input_specs(self.definitions[item.type]):
                if spec.is_widget:
                    inputs[spec.name] = self._widget_value(item, spec)
                elif spec.name in item.inputs:
                    link = item.inputs[spec.name]
                    inputs[spec.name] = [str(link.node), link.slot]
            prompt[str(item.id)] = {"class_type": item.type, "inputs": inputs}
        return prompt

    # --- the UI view --------------------------------------------------------------------------------------

    def _height(self, item: Item) -> int:
        if item.type == NOTE_TYPE:
            return max(item.height, NOTE_MIN_HEIGHT)
        return max(item.height, min_node_height(self.definitions[item.type]))

    def _layout(self) -> tuple[dict[int, tuple[float, float, float, float]], list[dict]]:
        """Body boxes ``{id: (x, y, w, h)}`` and the groups, column by column, row by row."""
        boxes: dict[int, tuple[float, float, float, float]] = {}
        groups: list[dict] = []
        top = ORIGIN[1]
        for row in self.rows:
            x = ORIGIN[0]
            heights = []
            for column in row:
                y = top + GROUP_TITLE_HEIGHT + PAD
                for item in column.items:
                    h = self._height(item)
                    boxes[item.id] = (x + PAD, y + NODE_TITLE_HEIGHT, column.width, h)
                    y += NODE_TITLE_HEIGHT + h + ITEM_GAP
                heights.append(y - ITEM_GAP + PAD - top)
                x += column.width + 2 * PAD + COLUMN_GAP
            row_height = max(heights, default=0)
            x = ORIGIN[0]
            for column in row:
                if column.title:
                    groups.append({"id": len(groups) + 1, "title": column.title,
                                   "bounding": [x, top, column.width + 2 * PAD, row_height],
                                   "color": column.color, "font_size": 24, "flags": {}})
                x += column.width + 2 * PAD + COLUMN_GAP
            top += row_height + ROW_GAP
        return boxes, groups

    def _execution_order(self) -> dict[int, int]:
        """A topological order (ready nodes by id), as the frontend stores in ``order``."""
        waiting = {i: {v.node for v in item.inputs.values() if isinstance(v, Link)} for i, item in self.items.items()}
        order: dict[int, int] = {}
        while waiting:
            ready = sorted(i for i, deps in waiting.items() if deps <= set(order))
            if not ready:
                raise ValueError("the graph has a cycle")
            for i in ready:
                order[i] = len(order)
                del waiting[i]
        return order

    def _widgets_values(self, item: Item) -> list:
        values = []
        for slot in widget_slots(self.definitions[item.type]):
            if slot.role == "value":
                values.append(self._widget_value(item, slot.spec))
            elif slot.role == "control":
                values.append(item.control or "fixed")
            else:
                values.append(UPLOAD_VALUE)
        return values

    def ui(self) -> dict:
        """The UI-format workflow (what the frontend saves and loads)."""
        boxes, groups = self._layout()
        order = self._execution_order()
        nodes: dict[int, dict] = {}
        for item in self.items.values():
            x, y, w, h = boxes[item.id]
            node: dict[str, Any] = {"id": item.id, "type": item.type, "pos": [x, y], "size": [w, h], "flags": {},
                                    "order": order[item.id], "mode": 0}
            if item.title:
                node["title"] = item.title
            if item.type == NOTE_TYPE:
                node.update(inputs=[], outputs=[], properties={}, widgets_values=[item.text], **NOTE_COLORS)
            else:
                definition = self.definitions[item.type]
                node.update(inputs=ui_inputs(definition), outputs=ui_outputs(definition),
                            properties={"Node name for S&R": item.type}, widgets_values=self._widgets_values(item))
            nodes[item.id] = node
        links = []
        for item in self.items.values():
            for name, value in item.inputs.items():
                if not isinstance(value, Link):
                    continue
                link_id = len(links) + 1
                target = nodes[item.id]
                slot = next(i for i, e in enumerate(target["inputs"]) if e["name"] == name)
                output = nodes[value.node]["outputs"][value.slot]
                target["inputs"][slot]["link"] = link_id
                output["links"] = [*(output["links"] or []), link_id]
                links.append([link_id, value.node, value.slot, item.id, slot, output["type"]])
        return {"last_node_id": max(nodes), "last_link_id": len(links), "nodes": list(nodes.values()),
                "links": links, "groups": groups, "config": {}, "extra": {}, "version": 0.4}


# --- the graphs -------------------------------------------------------------------------------------------

TRAIN_PROMPT = "a car driving on a road"
GENERATE_PROMPT = "a red vintage truck driving through a snowy forest, cinematic lighting, highly detailed"
NEGATIVE_PROMPT = "blurry, low quality, deformed, watermark, text"
LOADER_HEIGHT = 600  # Load Reference Video grows to show the clip


def _reference_loader(g: Graph, video: str, size: int, title: str | None = None) -> NodeRef:
    return g.add("SMA_LoadReferenceVideo", {
        "video": video, "frame_load_cap": FRAMES, "skip_first_frames": 0, "select_every_nth": 1, "force_rate": 0.0,
        "width": size, "height": size}, title=title, height=LOADER_HEIGHT)


def _checkpoint_and_prompt(g: Graph) -> tuple[NodeRef, NodeRef]:
    with g.column("1 · Model and prompt", GROUP_COLORS["model"]):
        g.note(MODEL_NOTE, 90)
        checkpoint = g.add("CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT})
        prompt = g.add("CLIPTextEncode", {"text": TRAIN_PROMPT, "clip": checkpoint["CLIP"]},
                       title="Prompt describing the clip", height=120)
    return checkpoint, prompt


def _training(g: Graph) -> NodeRef:
    """Steps 1-4: checkpoint and prompt, reference clip, Train Motion LoRA, its results."""
    checkpoint, prompt = _checkpoint_and_prompt(g)
    with g.column("2 · Reference clip", GROUP_COLORS["clip"]):
        g.note(REFERENCE_NOTE, 100)
        video = _reference_loader(g, REFERENCE_VIDEO, SIZE)
    with g.column("3 · Train", GROUP_COLORS["train"]):
        g.note(TRAIN_NOTE, 130)
        train = g.add("SMA_TrainMotionLoRA", {
            "model": checkpoint["MODEL"], "vae": checkpoint["VAE"], "positive": prompt["CONDITIONING"],
            "frames": video["frames"], "motion_model": MOTION_MODULE, "lora_name": LORA_STEM, "steps": 400,
            "learning_rate": 5e-4, "spatial_learning_rate": 1e-4, "rank": 32, "sma_mode": "plus",
            "lambda_global": 0.4, "lambda_local": 0.2, "wavelet_levels": 0, "spatial_path": True, "seed": 0,
            "checkpoint_every": 100, "preview_every": 25, "resume": False})
    with g.column("4 · Results", GROUP_COLORS["result"], width=400):
        g.note(RESULTS_NOTE, 70)
        g.add("PreviewAny", {"source": train["lora_name"]}, title="Saved LoRA", height=90)
        g.add("PreviewImage", {"images": train["loss_curve"]}, title="Loss curve", height=260)
        g.add("PreviewImage", {"images": train["preview"]}, title="Last preview", height=200)
    return checkpoint


def _generation(g: Graph, checkpoint: NodeRef | None, step: int) -> None:
    """The ADE Gen2 text-to-video graph with the motion LoRA, its groups numbered from ``step``.

    Alone (no ``checkpoint`` given) it has its own checkpoint loader and Apply Motion LoRA (SMA). After a training
    row it shares that row's checkpoint and loads the LoRA with ADE's own loader: ComfyUI 0.3.64 checks that
    loader's file list before running (it does not check V3 nodes' lists), so while the file does not exist yet
    only the generation branch is dropped and the training runs.
    """
    standalone = checkpoint is None
    with g.column(f"{step} · Models" if standalone else f"{step} · Motion models", GROUP_COLORS["model"]):
        g.note(MODELS_NOTE if standalone else ADE_LORA_NOTE, 80 if standalone else 100)
        if checkpoint is None:
            checkpoint = g.add("CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT})
        motion = g.add("ADE_LoadAnimateDiffModel", {"model_name": MOTION_MODULE})
        if standalone:
            lora = g.add("SMA_ApplyMotionLoRA", {"lora_name": LORA_FILE, "strength": 1.0})
            motion_lora = lora["motion_lora"]
        else:
            motion_lora = g.add("ADE_AnimateDiffLoRALoader", {"name": LORA_FILE, "strength": 1.0})["MOTION_LORA"]
    with g.column(f"{step + 1} · Prompt", GROUP_COLORS["clip"]):
        g.note(PROMPT_NOTE, 60)
        positive = g.add("CLIPTextEncode", {"text": GENERATE_PROMPT, "clip": checkpoint["CLIP"]},
                         title="Positive prompt", height=120)
        negative = g.add("CLIPTextEncode", {"text": NEGATIVE_PROMPT, "clip": checkpoint["CLIP"]},
                         title="Negative prompt", height=90)
    with g.column(f"{step + 2} · AnimateDiff (Gen2)", GROUP_COLORS["animatediff"]):
        g.note(ANIMATEDIFF_NOTE if standalone else ANIMATEDIFF_NOTE_SHORT, 90)
        apply = g.add("ADE_ApplyAnimateDiffModelSimple",
                      {"motion_model": motion["MOTION_MODEL"], "motion_lora": motion_lora})
        sampling = g.add("ADE_UseEvolvedSampling",
                         {"model": checkpoint["MODEL"], "m_models": apply["M_MODELS"], "beta_schedule": "autoselect"})
        if standalone:
            g.add("PreviewAny", {"source": lora["info"]}, title="LoRA info", height=120)
    with g.column(f"{step + 3} · Sample", GROUP_COLORS["sample"]):
        g.note(SAMPLE_NOTE, 70)
        latent = g.add("EmptyLatentImage", {"width": SIZE, "height": SIZE, "batch_size": FRAMES})
        sampler = g.add("KSampler", {
            "model": sampling["MODEL"], "seed": 42, "steps": 20, "cfg": 7.5, "sampler_name": "euler_ancestral",
            "scheduler": "normal", "positive": positive["CONDITIONING"], "negative": negative["CONDITIONING"],
            "latent_image": latent["LATENT"], "denoise": 1.0}, control="fixed")
    with g.column(f"{step + 4} · Decode and save", GROUP_COLORS["save"], width=380):
        g.note(SAVE_NOTE, 60)
        frames = g.add("VAEDecode", {"samples": sampler["LATENT"], "vae": checkpoint["VAE"]})
        video = g.add("CreateVideo", {"images": frames["IMAGE"], "fps": FPS})
        g.add("SaveVideo", {"video": video["VIDEO"], "filename_prefix": "sma/motion", "format": "auto",
                            "codec": "auto"}, height=300)


def _overview(g: Graph, text: str, height: int, title: str = "Read me") -> None:
    with g.column(None, width=360):
        g.note(text, height, title)


def train_motion_lora(definitions: Definitions) -> Graph:
    g = Graph(definitions)
    _overview(g, TRAIN_OVERVIEW, 310)
    _training(g)
    return g


def apply_motion_lora(definitions: Definitions) -> Graph:
    g = Graph(definitions)
    _overview(g, APPLY_OVERVIEW, 230)
    _generation(g, None, 1)
    return g


def train_and_apply(definitions: Definitions) -> Graph:
    g = Graph(definitions)
    _overview(g, BOTH_OVERVIEW, 270)
    checkpoint = _training(g)
    g.new_row()
    _overview(g, GENERATE_HINT, 110, "Then generate")
    _generation(g, checkpoint, 5)
    return g


def spectra_compare(definitions: Definitions) -> Graph:
    g = Graph(definitions)
    _overview(g, SPECTRA_OVERVIEW, 190)
    clips = []
    for step, (video, what) in enumerate(((REFERENCE_VIDEO, "Reference"), (GENERATED_VIDEO, "Generated")), 1):
        with g.column(f"{step} · {what} clip", GROUP_COLORS["clip"]):
            g.note(REFERENCE_CLIP_NOTE if step == 1 else GENERATED_CLIP_NOTE, 80)
            clips.append(_reference_loader(g, video, 256, f"{what} clip")["frames"])
    reference, generated = clips
    with g.column("3 · Compare the motion", GROUP_COLORS["result"], width=620):
        g.note(COMPARE_NOTE, 100)
        g.add("SMA_VisualizeSpectra", {"video": reference, "compare_video": generated, "label": "reference",
                                       "compare_label": "generated"}, height=480)
        fidelity = g.add("SMA_MotionFidelity", {"reference": reference, "generated": generated})
        g.add("PreviewAny", {"source": fidelity["summary"]}, title="Fidelity summary", height=100)
    return g


WORKFLOWS: dict[str, Callable[[Definitions], Graph]] = {
    "sma_train_motion_lora": train_motion_lora,
    "sma_apply_motion_lora": apply_motion_lora,
    "sma_train_and_apply": train_and_apply,
    "sma_spectra_compare": spectra_compare,
}
NODE_TYPES = (  # every backend node type the workflows use
    "CheckpointLoaderSimple", "CLIPTextEncode", "PreviewImage", "PreviewAny", "EmptyLatentImage", "KSampler",
    "VAEDecode", "CreateVideo", "SaveVideo", "ADE_LoadAnimateDiffModel", "ADE_ApplyAnimateDiffModelSimple",
    "ADE_UseEvolvedSampling", "ADE_AnimateDiffLoRALoader", "SMA_LoadReferenceVideo", "SMA_TrainMotionLoRA",
    "SMA_ApplyMotionLoRA", "SMA_VisualizeSpectra", "SMA_MotionFidelity",
)


def build_all(definitions: Definitions) -> dict[str, Graph]:
    """Every workflow, by file stem."""
    return {name: make(definitions) for name, make in WORKFLOWS.items()}


def dumps(workflow: Mapping) -> str:
    """The file text of a workflow (stable formatting)."""
    return json.dumps(workflow, indent=2, ensure_ascii=False) + "\n"


def write_all(definitions: Definitions, folder: Path = HERE) -> list[Path]:
    """Write every workflow into ``folder`` atomically; return the paths."""
    paths = []
    for name, graph in build_all(definitions).items():
        path = folder / f"{name}.json"
        with atomic_write_path(path) as tmp:
            Path(tmp).write_text(dumps(graph.ui()), encoding="utf-8")
        paths.append(path)
    return paths


# --- the notes --------------------------------------------------------------------------------------------

TRAIN_OVERVIEW = """
## Train a motion LoRA (SMA)

Teaches AnimateDiff the **motion** of one reference clip and saves it as a motion LoRA for AnimateDiff-Evolved.

1. Pick an SD1.5 checkpoint and describe the clip in the prompt.
2. Upload your clip in **Load Reference Video**.
3. **Queue**. Training shows a progress bar and a live preview. **Cancel** stops at the next step and still saves.
4. The LoRA is saved as `models/animatediff_motion_lora/sma_motion.safetensors`. Generate with it in the
   *sma_apply_motion_lora* workflow.

**Needs:** ComfyUI-AnimateDiff-Evolved, and `v3_sd15_mm.ckpt` in `models/animatediff_models`
(train against the motion module you will generate with).

**Memory:** on 8 GB cards set width and height to 384. Still out of memory: fewer frames
(`frame_load_cap` 12 or 8), a lower rank, or `spatial_path` off.
"""

MODEL_NOTE = """
**SD1.5 checkpoint** — the base the motion is learned on.

The prompt says what the clip shows. The spatial path learns the clip's look, so the LoRA keeps the motion.
"""

REFERENCE_NOTE = """
**Upload a short clip** (mp4, webm, mov, mkv, gif, avi).

16 frames, scaled and centre-cropped to 512 × 512. `select_every_nth` 2 doubles the motion per frame;
`skip_first_frames` moves to the part you want.
"""

TRAIN_NOTE = """
**Defaults suit one clip:** 400 steps, rank 32, learning rate 5e-4.

`sma_mode` *plus* = Spectral Motion Alignment (recommended), *paper* = the paper's formulas, *off* = plain
MotionDirector. A checkpoint is kept every 100 steps; `resume` continues from the last one.
Queueing an unchanged graph again does not retrain.
"""

RESULTS_NOTE = """
The saved file name, the **loss curve** (each loss component) and the last **preview** of the model's estimate
of the clean clip.
"""

APPLY_OVERVIEW = """
## Generate with a learned motion

An AnimateDiff-Evolved (Gen2) text-to-video graph with a motion LoRA from **Train Motion LoRA (SMA)**:
your prompt, the reference clip's motion.

1. Pick the SD1.5 checkpoint and the motion module the LoRA was trained with.
2. Pick the LoRA in **Apply Motion LoRA** (press **R** to refresh the lists after training).
3. Write a prompt and **Queue**. The video is saved to `output/sma/`.

To check the motion, compare the video with the reference clip in the *sma_spectra_compare* workflow.
"""

MODELS_NOTE = """
**Motion module + motion LoRA.** `strength` 1.0 applies the motion as trained; try 0.6-0.9 when it
overpowers the prompt. Chain more LoRAs through `prev_motion_lora`.
"""

PROMPT_NOTE = """
Describe the new scene: the motion comes from the LoRA.
"""

ANIMATEDIFF_NOTE = """
**Apply AnimateDiff Model** takes the motion module and the LoRA; **Use Evolved Sampling** puts them into the
model. *LoRA info* shows what the LoRA was trained with (after a run).
"""

SAMPLE_NOTE = """
**16 frames** (`batch_size`) at 512 × 512, the clip length AnimateDiff v3 was trained on. The seed is
fixed; change it for another take.
"""

SAVE_NOTE = """
The frames become an 8 fps video in `output/sma/`.
"""

BOTH_OVERVIEW = """
## Train, then generate

The **top row** learns the motion of the reference clip as a motion LoRA; the **bottom row** generates a
new video with it.

**First Queue:** trains (progress bar, live preview). **Load AnimateDiff LoRA** is outlined red because its
file does not exist yet; ComfyUI runs the training alone.

**Queue again:** training is cached (not repeated) and the video is generated.

A node output cannot fill a file list, so the name is typed twice: Train's `lora_name` *sma_motion* is the
file *sma_motion.safetensors* picked in step 5.

**Needs:** ComfyUI-AnimateDiff-Evolved and `v3_sd15_mm.ckpt` in `models/animatediff_models`.
On 8 GB cards set the reference's width and height to 384.
"""

GENERATE_HINT = """
### Generate

Uses the checkpoint of step 1 and the LoRA of step 3. After training with new settings, queue once more: a
generation queued together with the training may still read the previous file.
"""

ADE_LORA_NOTE = """
**Motion module + the trained LoRA**, loaded by AnimateDiff-Evolved's own loader: ComfyUI checks its file list
before running, so the first Queue trains even though the file is not there yet. *Apply Motion LoRA (SMA)*
reads the same files (see *sma_apply_motion_lora*).
"""

ANIMATEDIFF_NOTE_SHORT = """
**Apply AnimateDiff Model** takes the motion module and the LoRA; **Use Evolved Sampling** puts them into the
model.
"""

SPECTRA_OVERVIEW = """
## Compare motion: reference vs generated

Draws what Spectral Motion Alignment compares, for two clips side by side, and measures how closely the
generated clip's motion follows the reference.

1. Upload the reference clip and a generated one, e.g. the video of *sma_apply_motion_lora*
   (from `output/sma/`), with at least 16 frames each.
2. **Queue**.
"""

REFERENCE_CLIP_NOTE = """
The clip whose motion was learned, loaded as for training: 16 frames, here at 256 px (small frames are
enough for the spectra).
"""

GENERATED_CLIP_NOTE = """
A generated clip, same settings. To measure a generation directly, connect its **VAE Decode** IMAGE to
`images` here.
"""

COMPARE_NOTE = """
**Spectra**, per clip: wavelet scalogram of the motion over time (global motion), amplitude and phase spectra
of the frame-to-frame motion (local motion), motion energy per frame pair, on shared colour scales.

**Fidelity:** *cosine* 1 = the same motion, -1 = the opposite; *global / local distance* = SMA's wavelet and
Fourier distances, 0 = identical. The same numbers the trainer logs.
"""


def _load_object_info(source: str) -> dict:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=60) as response:
            return json.load(response)
    return json.loads(Path(source).read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--object-info", required=True,
                        help="URL of a running ComfyUI's /object_info (with this pack and ADE), or a saved copy")
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: workflows/)")
    args = parser.parse_args(argv)
    info = _load_object_info(args.object_info)
    missing = sorted(set(NODE_TYPES) - set(info))
    if missing:
        parser.error(f"/object_info lacks {missing}: load AnimateDiff-Evolved and this pack")
    for path in write_all({t: info[t] for t in NODE_TYPES}, args.out):
        print(path)


if __name__ == "__main__":
    main()
