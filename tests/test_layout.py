"""The library stays a library: ``sma/`` never imports ComfyUI, and imports without it."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "server",
                "execution", "latent_preview", "node_helpers", "app", "utils"}


def _imported_top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_sma_sources_do_not_import_comfyui():
    offenders = {}
    for path in sorted((REPO_ROOT / "sma").rglob("*.py")):
        bad = _imported_top_level_names(path) & HOST_MODULES
        if bad:
            offenders[str(path.relative_to(REPO_ROOT))] = sorted(bad)
    assert not offenders, f"sma/ must not import ComfyUI: {offenders}"


def test_every_sma_module_imports_without_comfyui():
    modules = sorted(".".join(p.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for p in (REPO_ROOT / "sma").rglob("*.py") if p.name != "__main__.py")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HOST_MODULES)!r})\n"
        "assert not loaded, loaded\n"
        "print(len(sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_sma_imports_itself_relatively():
    """Inside ComfyUI the library is ``<pack>.sma``, not a top-level ``sma``: absolute self-imports break there."""
    offenders = {}
    for path in sorted((REPO_ROOT / "sma").rglob("*.py")):
        if "sma" in _imported_top_level_names(path):
            offenders[str(path.relative_to(REPO_ROOT))] = "imports 'sma' absolutely; use 'from .x import y'"
    assert not offenders, offenders
