"""Builds the example workflows ``workflows/*.json`` (ComfyUI's UI format) and writes them.

The parts: :mod:`workflows.graphs` defines each workflow (nodes, settings, groups), :mod:`workflows.notes`
holds the Markdown note of each step, :mod:`workflows.layout` places the nodes and renders the UI file, and
:mod:`workflows.ui_format` knows the frontend's format rules. Positions, sizes, links and widget values are
derived from the host's node definitions (``/object_info``), so the files cannot drift from the nodes:
``tests/test_host_workflows.py`` rebuilds them with the real host and fails when a committed file differs.

Rebuild after changing a graph, a note or a node's inputs, either with the in-process host::

    SMA_WRITE_WORKFLOWS=1 python -m pytest -q tests/test_host_workflows.py -k committed

or from a running ComfyUI that has this pack and AnimateDiff-Evolved (run from the repository root)::

    python -m workflows.build_workflows --object-info http://127.0.0.1:8188/object_info
"""
from __future__ import annotations

import argparse
import json
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from sma.atomic import atomic_write_path

from .graphs import FRAMES, NODE_TYPES, USER_FILES, WORKFLOWS
from .layout import NOTE_TYPE, Definitions, Graph

__all__ = ["FRAMES", "NODE_TYPES", "NOTE_TYPE", "USER_FILES", "WORKFLOWS", "build_all", "dumps", "write_all"]

HERE = Path(__file__).resolve().parent


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
