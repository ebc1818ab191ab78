"""The declared dependencies tell the truth: the requirements files and ``pyproject.toml`` list the same
packages, and every third-party package the pack imports is declared."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from test_layout import HOST_MODULES, REPO_ROOT, _imported_top_level_names

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"PIL": "pillow", "pywt": "PyWavelets"}
NOT_DECLARED = {
    "torch": "ComfyUI's torch stays; the README installs torch itself",
    "bitsandbytes": "optional 8-bit AdamW, used only when installed",
}


def _requirements(path: Path) -> list[str]:
    """The requirement lines of a pip requirements file, comments and blank lines left out."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def _distribution(requirement: str) -> str:
    """PEP 503 normalised distribution name of a requirement (``PyWavelets>=1.6`` -> ``pywavelets``)."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert name, f"not a requirement: {requirement!r}"
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def test_requirements_txt_equals_pyproject_dependencies():
    assert _requirements(REPO_ROOT / "requirements.txt") == PYPROJECT["project"]["dependencies"]


def test_requirements_test_txt_equals_pyproject_test_extra():
    assert _requirements(REPO_ROOT / "requirements-test.txt") == PYPROJECT["project"]["optional-dependencies"]["test"]


def test_every_third_party_import_of_the_pack_is_declared():
    sources = [REPO_ROOT / "__init__.py", *sorted((REPO_ROOT / "sma").rglob("*.py")),
               *sorted((REPO_ROOT / "nodes").rglob("*.py"))]
    imported = set().union(*(_imported_top_level_names(path) for path in sources))
    third_party = imported - set(sys.stdlib_module_names) - HOST_MODULES - set(NOT_DECLARED)
    assert {"diffusers", "pywt", "PIL", "safetensors"} <= third_party  # the scan sees the pack's imports
    declared = {_distribution(r) for r in _requirements(REPO_ROOT / "requirements.txt")}
    undeclared = sorted(m for m in third_party if _distribution(DISTRIBUTIONS.get(m, m)) not in declared)
    assert not undeclared, f"imported but not in requirements.txt: {undeclared}"


def test_distribution_names_are_normalised():
    assert _distribution("PyWavelets>=1.6") == "pywavelets"
    assert _distribution("diffusers>=0.42,<0.43") == "diffusers"
    assert _distribution("Foo_Bar.baz[extra]>=1") == "foo-bar-baz"
