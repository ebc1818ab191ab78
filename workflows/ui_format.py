"""ComfyUI's two graph formats and the bridge between them, from the host's node definitions.

* A **node definition** is one entry of ComfyUI's ``/object_info``: ``input`` ({"required": {name: spec},
  "optional": ...}), ``input_order``, ``output`` (types), ``output_name`` and ``output_node``. A spec is
  ``[TYPE, {options}]``, or ``[[option, ...], {options}]`` for a legacy combo.
* The **UI format** (``workflows/*.json``, what the frontend saves) lists nodes with positions, a ``links`` table
  ``[link_id, origin_id, origin_slot, target_id, target_slot, type]`` and each node's ``widgets_values`` in the
  frontend's widget order (:func:`widget_slots`).
* The **API format** (what ``/prompt`` takes) is ``{node_id: {"class_type", "inputs"}}`` with links as
  ``[origin_id, slot]``.

The frontend rules used here were measured on comfyui-frontend-package 1.27.10 (``docs/workflow-format.md``); the
browser test checks them against the real frontend.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

# Node types the frontend registers by itself (no backend class): they appear in UI files only.
FRONTEND_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
# A combo with one of these flags gets an extra "upload" button widget whose saved value is "image".
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
UPLOAD_WIDGET = "upload"
UPLOAD_VALUE = "image"
CONTROL_WIDGET = "control_after_generate"
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
MODE_ALWAYS = 0
OPTIONAL_SLOT_SHAPE = 7  # how the frontend marks an optional input (hollow dot)

# Inputs whose combo lists files (models, input videos): (class_type, input) -> the folder that lists them.
FILE_INPUTS = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("ADE_LoadAnimateDiffModel", "model_name"): "animatediff_models",
    ("SMA_TrainMotionLoRA", "motion_model"): "animatediff_models",
    ("SMA_ApplyMotionLoRA", "lora_name"): "animatediff_motion_lora",
    ("ADE_AnimateDiffLoRALoader", "name"): "animatediff_motion_lora",
    ("SMA_LoadReferenceVideo", "video"): "input",
}

# LiteGraph geometry (1.27.10): a node's title bar sits above ``pos``; a slot row and a widget row.
NODE_TITLE_HEIGHT = 30
SLOT_HEIGHT = 20
WIDGET_HEIGHT = 24
GROUP_TITLE_HEIGHT = 34  # font_size 24 * 1.4


@dataclass(frozen=True)
class InputSpec:
    """One input of a node definition (required first, then optional, each in ``input_order``)."""

    name: str
    type: str
    options: dict
    optional: bool
    choices: tuple | None  # combo options, None for other types

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES

    def accepts(self, output_type: str) -> bool:
        """Whether a link from an output of ``output_type`` may end here (``*`` matches anything)."""
        return output_type == "*" or self.type == "*" or output_type in self.type.split(",")


@dataclass(frozen=True)
class WidgetSlot:
    """One entry of ``widgets_values``: an input's value, or a frontend-only companion value."""

    name: str
    role: Literal["value", "control", "upload"]
    spec: InputSpec | None = None


DEFINITION_KEYS = ("input", "input_order", "output", "output_name", "output_node")


def definition_of(node_class: type) -> dict:
    """``/object_info``'s entry for a loaded node class, as JSON types (what the server would send)."""
    if hasattr(node_class, "GET_NODE_INFO_V1"):  # V3 nodes describe themselves
        info = node_class.GET_NODE_INFO_V1()
    else:
        types = node_class.INPUT_TYPES()
        info = {
            "input": types,
            "input_order": {key: list(value) for key, value in types.items()},
            "output": node_class.RETURN_TYPES,
            "output_name": getattr(node_class, "RETURN_NAMES", node_class.RETURN_TYPES),
            "output_node": getattr(node_class, "OUTPUT_NODE", False) is True,
        }
    return json.loads(json.dumps({key: info[key] for key in DEFINITION_KEYS}))


def host_definitions(class_mappings: Mapping[str, type], class_types: Iterable[str]) -> dict[str, dict]:
    """Definitions of ``class_types`` from ComfyUI's ``NODE_CLASS_MAPPINGS`` (unknown types are left out)."""
    return {t: definition_of(class_mappings[t]) for t in sorted(set(class_types)) if t in class_mappings}


def input_specs(definition: Mapping) -> list[InputSpec]:
    """Required then optional inputs of a definition, in ``input_order`` (hidden inputs left out)."""
    specs = []
    for section in ("required", "optional"):
        entries = definition["input"].get(section, {})
        for name in definition.get("input_order", {}).get(section, list(entries)):
            raw = entries[name]
            options = raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {}
            if isinstance(raw[0], list):  # legacy combo: the options list in place of the type
                specs.append(InputSpec(name, "COMBO", options, section == "optional", tuple(raw[0])))
            else:
                choices = tuple(options["options"]) if raw[0] == "COMBO" else None
                specs.append(InputSpec(name, raw[0], options, section == "optional", choices))
    return specs


def widget_slots(definition: Mapping) -> list[WidgetSlot]:
    """The frontend's ``widgets_values`` layout: required widgets, then one upload button if a required combo
    uploads files, then optional widgets; an input with ``control_after_generate`` is followed by its control."""
    slots: list[WidgetSlot] = []
    specs = input_specs(definition)
    for optional in (False, True):
        for spec in (s for s in specs if s.optional == optional and s.is_widget):
            slots.append(WidgetSlot(spec.name, "value", spec))
            if spec.options.get(CONTROL_WIDGET):
                slots.append(WidgetSlot(CONTROL_WIDGET, "control"))
        if not optional and any(s.options.get(flag) for s in specs if not s.optional for flag in UPLOAD_FLAGS):
            slots.append(WidgetSlot(UPLOAD_WIDGET, "upload"))
    return slots


def ui_inputs(definition: Mapping) -> list[dict]:
    """A node's ``inputs`` list as the frontend saves it: sockets first, then one entry per widget."""
    entries = []
    specs = input_specs(definition)
    for spec in (s for s in specs if not s.is_widget):
        shape = {"shape": OPTIONAL_SLOT_SHAPE} if spec.optional else {}
        entries.append({"localized_name": spec.name, "name": spec.name, **shape, "type": spec.type, "link": None})
    for slot in widget_slots(definition):
        if slot.role == "control":
            continue
        kind = slot.spec.type if slot.spec is not None else "IMAGEUPLOAD"
        entries.append({"localized_name": slot.name, "name": slot.name, "type": kind,
                        "widget": {"name": slot.name}, "link": None})
    return entries


def ui_outputs(definition: Mapping) -> list[dict]:
    """A node's ``outputs`` list as the frontend saves it (``links`` filled in by the caller)."""
    return [{"localized_name": name, "name": name, "type": kind, "links": None}
            for kind, name in zip(definition["output"], definition["output_name"])]


def min_node_height(definition: Mapping) -> int:
    """LiteGraph's computed body height for a node with one-row widgets only (taller widgets need more)."""
    sockets = sum(1 for s in input_specs(definition) if not s.is_widget)
    rows = max(sockets, len(definition["output"]), 1)
    widgets = len(widget_slots(definition))
    return rows * SLOT_HEIGHT + 6 + (widgets * WIDGET_HEIGHT + 8 if widgets else 0)


def backend_nodes(workflow: Mapping) -> list[dict]:
    """The nodes that reach the server (frontend-only types and muted nodes dropped)."""
    return [n for n in workflow["nodes"] if n["type"] not in FRONTEND_ONLY_TYPES and n.get("mode", 0) != 2]


def ui_to_api(workflow: Mapping, definitions: Mapping[str, Mapping]) -> dict:
    """Convert a UI-format workflow to the API prompt the frontend's ``graphToPrompt`` sends.

    Widget values map to inputs by :func:`widget_slots` (controls and upload buttons skipped); a linked input
    takes its link ``[str(origin_id), origin_slot]``; frontend-only and muted nodes are dropped.

    Raises:
        ValueError: a bypassed node, a link from a frontend-only node, or widgets_values of the wrong length.
    """
    links = {link[0]: link for link in workflow["links"]}
    nodes_by_id = {n["id"]: n for n in workflow["nodes"]}
    prompt = {}
    for node in backend_nodes(workflow):
        if node.get("mode", 0) != MODE_ALWAYS:
            raise ValueError(f"node {node['id']} ({node['type']}): mode {node['mode']} is not supported")
        slots = widget_slots(definitions[node["type"]])
        values = node.get("widgets_values", [])
        if len(values) != len(slots):
            raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget values "
                             f"for {len(slots)} widgets")
        inputs = {slot.name: value for slot, value in zip(slots, values) if slot.role == "value"}
        for entry in node.get("inputs", []):
            if entry.get("link") is None:
                continue
            _, origin_id, origin_slot, *_ = links[entry["link"]]
            if nodes_by_id[origin_id]["type"] in FRONTEND_ONLY_TYPES:
                raise ValueError(f"node {node['id']}: input {entry['name']} comes from a frontend-only node")
            inputs[entry["name"]] = [str(origin_id), origin_slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def replace_files(prompt: Mapping, names: Mapping[str, str]) -> dict:
    """A copy of an API prompt whose file inputs (:data:`FILE_INPUTS`) name ``names[folder]`` instead."""
    out = json.loads(json.dumps(prompt))
    for node in out.values():
        for name in node["inputs"]:
            folder = FILE_INPUTS.get((node["class_type"], name))
            if folder in names:
                node["inputs"][name] = names[folder]
    return out


def _value_problem(spec: InputSpec, value: Any) -> str | None:
    """Why ``value`` is not valid for a widget input (None when it is)."""
    kind, options = spec.type, spec.options
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else "not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else "not a string"
    if kind == "COMBO":
        return None if value in spec.choices else f"not one of the options {list(spec.choices)[:8]}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "INT" and not isinstance(value, int)):
        return f"not {'an integer' if kind == 'INT' else 'a number'}"
    if "min" in options and value < options["min"]:
        return f"below the minimum {options['min']}"
    if "max" in options and value > options["max"]:
        return f"above the maximum {options['max']}"
    return None


def _check_node(node: Mapping, definition: Mapping, file_names: Mapping[str, Iterable[str]]) -> list[str]:
    where = f"node {node['id']} ({node['type']})"
    problems = []
    expected_inputs = [(e["name"], e["type"]) for e in ui_inputs(definition)]
    if [(e["name"], e["type"]) for e in node.get("inputs", [])] != expected_inputs:
        names = [e["name"] for e in node.get("inputs", [])]
        problems.append(f"{where}: inputs {names} != {[n for n, _ in expected_inputs]}")
    expected_outputs = [(e["name"], e["type"]) for e in ui_outputs(definition)]
    if [(e["name"], e["type"]) for e in node.get("outputs", [])] != expected_outputs:
        problems.append(f"{where}: outputs differ from the definition {expected_outputs}")
    slots = widget_slots(definition)
    values = node.get("widgets_values", [])
    if len(values) != len(slots):
        return [*problems, f"{where}: {len(values)} widget values for the widgets {[s.name for s in slots]}"]
    for slot, value in zip(slots, values):
        if slot.role == "control":
            problem = None if value in CONTROL_VALUES else f"not one of {CONTROL_VALUES}"
        elif slot.role == "upload":
            problem = None if value == UPLOAD_VALUE else f"the upload widget saves {UPLOAD_VALUE!r}"
        elif (node["type"], slot.name) in FILE_INPUTS:
            allowed = set(file_names.get(FILE_INPUTS[node["type"], slot.name], ()))
            problem = None if value in allowed else f"not one of the expected file names {sorted(allowed)}"
        else:
            problem = _value_problem(slot.spec, value)
        if problem:
            problems.append(f"{where}: {slot.name} = {value!r}: {problem}")
    return problems


def check_workflow(workflow: Mapping, definitions: Mapping[str, Mapping],
                   file_names: Mapping[str, Iterable[str]]) -> list[str]:
    """Everything wrong with a UI-format workflow against the host's node definitions (empty when valid).

    Checks node types, each node's inputs / outputs / widget values (combos in their options; file combos, see
    :data:`FILE_INPUTS`, in ``file_names[folder]``), every link (ends exist, types match, both ends list it),
    that every required socket is connected, and the id counters.
    """
    problems = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    if len(nodes) != len(workflow["nodes"]):
        problems.append("duplicate node ids")
    links = {link[0]: link for link in workflow["links"]}
    if len(links) != len(workflow["links"]):
        problems.append("duplicate link ids")
    if nodes and workflow["last_node_id"] < max(nodes):
        problems.append(f"last_node_id {workflow['last_node_id']} < {max(nodes)}")
    if links and workflow["last_link_id"] < max(links):
        problems.append(f"last_link_id {workflow['last_link_id']} < {max(links)}")
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY_TYPES:
            if node.get("inputs") or node.get("outputs"):
                problems.append(f"node {node['id']} ({node['type']}) has slots")
            continue
        if node["type"] not in definitions:
            problems.append(f"node {node['id']}: unknown type {node['type']}")
            continue
        problems += _check_node(node, definitions[node["type"]], file_names)
        for spec, entry in zip((s for s in input_specs(definitions[node["type"]]) if not s.is_widget), node["inputs"]):
            if not spec.optional and entry.get("link") is None:
                problems.append(f"node {node['id']} ({node['type']}): required input {spec.name} is not connected")
    for link_id, origin_id, origin_slot, target_id, target_slot, kind in workflow["links"]:
        where = f"link {link_id}"
        origin, target = nodes.get(origin_id), nodes.get(target_id)
        if origin is None or target is None or origin["type"] not in definitions or target["type"] not in definitions:
            problems.append(f"{where}: ends at a missing or frontend-only node")
            continue
        output = origin["outputs"][origin_slot]
        entry = target["inputs"][target_slot]
        spec = {s.name: s for s in input_specs(definitions[target["type"]])}.get(entry["name"])
        if output["type"] != kind or spec is None or not spec.accepts(output["type"]):
            problems.append(f"{where}: {origin['type']}.{output['name']} ({output['type']}) -> "
                            f"{target['type']}.{entry['name']} ({spec.type if spec else '?'}), saved as {kind}")
        if link_id not in (output.get("links") or []) or entry.get("link") != link_id:
            problems.append(f"{where}: not listed by both of its ends")
    return problems


Box = tuple[float, float, float, float]  # x, y, width, height


def node_box(node: Mapping) -> Box:
    """A node's area on the canvas, title bar included."""
    (x, y), (w, h) = node["pos"], node["size"]
    return (x, y - NODE_TITLE_HEIGHT, w, h + NODE_TITLE_HEIGHT)


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def inside(inner: Box, outer: Box) -> bool:
    return (outer[0] <= inner[0] and inner[0] + inner[2] <= outer[0] + outer[2]
            and outer[1] <= inner[1] and inner[1] + inner[3] <= outer[1] + outer[3])


def layout_problems(workflow: Mapping) -> list[str]:
    """Overlapping nodes (notes included), nodes outside every group or under a group's title, overlapping groups."""
    problems = []
    nodes = workflow["nodes"]
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if overlaps(node_box(a), node_box(b)):
                problems.append(f"nodes {a['id']} ({a['type']}) and {b['id']} ({b['type']}) overlap")
    groups = workflow.get("groups", [])
    for i, g in enumerate(groups):
        for h in groups[i + 1:]:
            if overlaps(tuple(g["bounding"]), tuple(h["bounding"])):
                problems.append(f"groups {g['title']!r} and {h['title']!r} overlap")
    body = [(x, y + GROUP_TITLE_HEIGHT, w, h - GROUP_TITLE_HEIGHT) for x, y, w, h in (g["bounding"] for g in groups)]
    for node in nodes:
        homes = [g for g, area in zip(groups, body) if inside(node_box(node), area)]
        if node["type"] not in FRONTEND_ONLY_TYPES and len(homes) != 1:
            problems.append(f"node {node['id']} ({node['type']}) is inside {len(homes)} groups")
        if any(overlaps(node_box(node), tuple(g["bounding"])) for g in groups if g not in homes):
            problems.append(f"node {node['id']} ({node['type']}) crosses a group it is not in")
    return problems
