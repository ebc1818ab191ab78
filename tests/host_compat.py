"""What differs between the ComfyUI hosts the pack is tested on (0.3.64 and 0.33.0), in one place.

The in-process harness (``conftest.comfy_host``) builds its prompt server stub, its executor and its cache reads
through these functions; no test checks a version itself. Each difference is detected by what the host offers,
not by its version number:

- 0.33's ``comfy_api`` registers node replacements on ``PromptServer.instance.node_replace_manager``;
- 0.33's ``PromptExecutor`` takes ``cache_args`` where 0.3.64 took ``cache_size``;
- 0.33's ``caches.outputs.get`` is a coroutine whose result holds the outputs in ``.outputs``.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Any


def add_host_services(stub: Any) -> Any:
    """Give the prompt server stub the services the host's modules reach for at import; returns ``stub``."""
    try:
        from app.node_replace_manager import NodeReplaceManager
    except ImportError:  # 0.3.64: no node replacements
        return stub
    stub.node_replace_manager = NodeReplaceManager()
    return stub


def make_executor(server: Any, cache_type: Any) -> Any:
    """``execution.PromptExecutor`` for ``server`` with ``cache_type``, as the host's ``main.py`` builds it."""
    import execution

    parameters = inspect.signature(execution.PromptExecutor).parameters
    if "cache_args" in parameters:  # 0.33: the RAM-pressure cache's and the LRU cache's settings in one dict
        return execution.PromptExecutor(server, cache_type=cache_type,
                                        cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})
    return execution.PromptExecutor(server, cache_type=cache_type)


def cached_outputs(executor: Any, node_id: str) -> Any:
    """The raw outputs (one list per slot) the executor's output cache holds for ``node_id``, or None."""
    entry = executor.caches.outputs.get(node_id)
    if inspect.isawaitable(entry):
        entry = asyncio.run(entry)
    return getattr(entry, "outputs", entry)
