"""Keep display-only widget values out of the pack's nodes, so that an unchanged graph stays cached.

ComfyUI caches a node's output under a signature of every input the prompt carries for it. The frontend also sends
the values of widgets it adds for display only (for example the clip preview ``video-preview`` that appears on
Load Reference Video once its file has been shown), with no input behind them. Such a value can appear between two
presses of Queue, so the node and everything after it (the trainer) ran again on an unchanged graph. Before a prompt
is queued, :func:`drop_undeclared_inputs` removes from each of the pack's nodes every input its schema does not
declare; ComfyUI never passes those to a node anyway.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from comfy_api.v0_0_2 import io

logger = logging.getLogger(__name__)


def declared_inputs(node_class: type[io.ComfyNode]) -> frozenset[str]:
    """The names of every required, optional and hidden input of ``node_class``'s schema."""
    return frozenset(name for section in node_class.INPUT_TYPES().values() for name in section)


def drop_undeclared_inputs(request: dict, node_classes: Iterable[type[io.ComfyNode]]) -> dict:
    """``request`` (the JSON of a POST /prompt) with the inputs no schema declares removed from the nodes whose
    ``class_type`` is one of ``node_classes``; other nodes and malformed entries are left for ComfyUI to judge."""
    prompt = request.get("prompt")
    if not isinstance(prompt, dict):
        return request
    declared = {cls.GET_SCHEMA().node_id: declared_inputs(cls) for cls in node_classes}
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        names = declared.get(node.get("class_type")) if isinstance(inputs, dict) else None
        if names is None:
            continue
        for key in [k for k in inputs if k not in names]:
            del inputs[key]
    return request


def register_prompt_filter(node_classes: Iterable[type[io.ComfyNode]]) -> bool:
    """Run :func:`drop_undeclared_inputs` on every prompt the server receives; False where the server offers no
    prompt handlers (an in-process host without an HTTP server)."""
    import server

    instance = getattr(server.PromptServer, "instance", None)
    add_handler = getattr(instance, "add_on_prompt_handler", None)
    if add_handler is None:
        logger.debug("SMA: no prompt server to filter display-only inputs on")
        return False
    classes = tuple(node_classes)
    add_handler(lambda request: drop_undeclared_inputs(request, classes))
    return True
