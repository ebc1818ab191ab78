"""The layout engine of the example workflows: an API graph placed into titled groups laid out in columns.

A :class:`Graph` collects nodes (and Markdown notes) column by column, row by row, as a workflow's definition
adds them, and renders two views from the host's node definitions (``/object_info``): the API prompt
(:meth:`Graph.api`) and the UI-format workflow with positions, sizes, groups, links and widget values
(:meth:`Graph.ui`). Nothing here knows which workflows exist; see :mod:`workflows.graphs`.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .ui_format import (
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
