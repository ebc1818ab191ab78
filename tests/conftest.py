"""Shared fixtures: the real ComfyUI host (in-process) and the random-weight model files host tests use.

Host tests need a ComfyUI (0.3.64 or newer; 0.3.64 and 0.33.0 are tested, their differences live in
``host_compat.py``) with AnimateDiff-Evolved in its ``custom_nodes`` and
``COMFYUI_PATH`` pointing at it (``.ci/run`` sets up ComfyUI 0.3.64 and exports it). Without a host
they skip with a message that says how to enable them; under CI (``CI`` set) they fail instead, and
any skipped host test fails the session.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ADE_DIR_NAME = "ComfyUI-AnimateDiff-Evolved"
PACK_DIR_NAME = "comfyui-sma"
HOST_HOWTO = (
    "host tests need a ComfyUI (0.3.64 or newer) with ComfyUI-AnimateDiff-Evolved in its custom_nodes folder and "
    "ComfyUI's requirements installed in this Python environment; point the tests at it with\n"
    "    export COMFYUI_PATH=/path/to/ComfyUI\n"
    "and run them again"
)

# MKL's multi-threaded kernels may round differently from run to run (memory alignment); conditional
# numerical reproducibility makes CPU training bit-exact across a resume. Must precede the first BLAS call.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
if "PYTEST_XDIST_WORKER" in os.environ:
    # One OpenMP thread per worker (and per subprocess it starts): workers side by side on a few cores
    # with several busy-waiting OpenMP threads each run many times slower.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def comfyui_path() -> Path | None:
    """The host's ComfyUI folder from ``COMFYUI_PATH``, or None when it is not set up."""
    value = os.environ.get("COMFYUI_PATH")
    if value and (Path(value) / "main.py").is_file():
        return Path(value).resolve()
    return None


def require_host() -> Path:
    """Return the host path; skip the test without a host (fail under CI)."""
    path = comfyui_path()
    if path is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(HOST_HOWTO)
    return path


XDIST_GROUPS = {"test_host_": "full_size", "test_browser": "full_size", "test_models.py": "full_size",
                "test_demo.py": "demo", "test_cli.py": "demo"}
"""Under ``pytest -n N`` (the README's test command; ``--dist loadgroup`` in pytest.ini), tests whose file name
starts with a key run in one worker: the host tests share one in-process ComfyUI and the model files; they
and the other tests of full-size models take 10-14 GB each, so they run one at a time; the demo's users
share one demo run."""


HOST_TEST_PREFIXES = ("test_host_", "test_browser")
"""The test files that run inside a ComfyUI host (in-process or its real server and frontend)."""
WORKFLOW_DEFINITION_TESTS = ("test_host_workflows.py", "test_browser.py")
"""The host test files that hold the committed workflow files against the host's node definitions (the files are
built from ComfyUI 0.3.64's; 0.33's CreateVideo, PreviewAny and PreviewImage differ from them)."""
TEST_SCOPES = {
    "all": lambda name: True,
    "host": lambda name: name.startswith(HOST_TEST_PREFIXES),
    "host-runtime": lambda name: name.startswith(HOST_TEST_PREFIXES) and name not in WORKFLOW_DEFINITION_TESTS,
}
"""``SMA_TEST_SCOPE``: which test files run. ``all`` (the default); ``host``, only those inside the host;
``host-runtime``, those of them that run the pack (boot, nodes, training, LoRAs, generation, merging, the
frontend's Queue), as CI runs them a second time against ComfyUI 0.33."""


def selected_scope() -> str:
    """The ``SMA_TEST_SCOPE`` in force (checked)."""
    scope = os.environ.get("SMA_TEST_SCOPE", "all")
    if scope not in TEST_SCOPES:
        raise pytest.UsageError(f"SMA_TEST_SCOPE={scope!r}; use one of {', '.join(TEST_SCOPES)}")
    return scope


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    in_scope = TEST_SCOPES[selected_scope()]
    outside = [item for item in items if not in_scope(Path(str(item.fspath)).name)]
    if outside:
        config.hook.pytest_deselected(items=outside)
        items[:] = [item for item in items if in_scope(Path(str(item.fspath)).name)]
    for item in items:
        name = Path(str(item.fspath)).name
        if name.startswith("test_host_"):
            item.add_marker(pytest.mark.host)
        group = next((group for prefix, group in XDIST_GROUPS.items() if name.startswith(prefix)), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_configure(config):
    config.addinivalue_line("markers", "host: runs inside the real ComfyUI + AnimateDiff-Evolved host")


_skipped_host_tests: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and "test_host_" in report.nodeid:
        _skipped_host_tests.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") and comfyui_path() is not None and _skipped_host_tests:
        print(f"\nCI: the host is set up but {len(_skipped_host_tests)} host test(s) skipped:", file=sys.stderr)
        for nodeid in _skipped_host_tests:
            print("   ", nodeid, file=sys.stderr)
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped_host_tests and comfyui_path() is None:
        terminalreporter.write_line(f"{len(_skipped_host_tests)} host tests skipped. {HOST_HOWTO}")


def run_sma(*args: str, timeout: float = 600) -> "subprocess.CompletedProcess":
    """``python -m sma ARGS`` as a user runs it (a subprocess in the repository root)."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "sma", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)


DEMO_TEST_STEPS = 30
DEMO_TEST_SAMPLES = 2
"""The demo as tests run it: the default model, clip and settings, fewer steps and samples (the README's first
command runs it at its defaults)."""


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple["subprocess.CompletedProcess", Path]:
    """``python -m sma demo``, run once per session (tests/test_demo.py, tests/test_cli.py)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    result = run_sma("demo", "--out", out, "--steps", DEMO_TEST_STEPS, "--samples", DEMO_TEST_SAMPLES)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, out


@pytest.fixture(scope="session")
def test_models_dir() -> Path:
    """Folder for generated random-weight model files, reused across host tests (and runs).

    ``SMA_TEST_MODELS`` overrides it; the default ``.test-models/`` in the repo is git-ignored.
    """
    path = Path(os.environ.get("SMA_TEST_MODELS", REPO_ROOT / ".test-models"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _generated_file(path: Path, make) -> Path:
    """Write ``make()``'s state dict to ``path`` once (atomically) and return the path."""
    if not path.is_file():
        import safetensors.torch

        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        safetensors.torch.save_file(make(), str(tmp))
        os.replace(tmp, path)
    return path


@pytest.fixture(scope="session")
def full_v3_motion_module_file(test_models_dir: Path) -> Path:
    """A full-size AnimateDiff v3 layout motion module with random fp16 values (original naming)."""
    import torch

    from sma.models.build import motion_module_state_dict

    return _generated_file(
        test_models_dir / "v3_sd15_mm_random.safetensors",
        lambda: motion_module_state_dict("v3", size="full", dtype=torch.float16, seed=0),
    )


class StubPromptServer:
    """The parts of ``server.PromptServer`` that execution and nodes touch; records messages."""

    def __init__(self) -> None:
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.messages: list = []

    def send_sync(self, event, data, sid=None) -> None:
        self.messages.append((event, data))

    def send_progress_text(self, text, node_id, sid=None) -> None:
        self.messages.append(("progress_text", {"node": node_id, "text": text}))

    def queue_updated(self) -> None:
        pass


def link_pack_as_custom_node(custom_nodes: Path) -> Path:
    """Install this repo into ``custom_nodes`` the way users do (a folder named ``comfyui-sma``)."""
    custom_nodes.mkdir(parents=True, exist_ok=True)
    link = custom_nodes / PACK_DIR_NAME
    if not link.exists():
        link.symlink_to(REPO_ROOT, target_is_directory=True)
    return link


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def comfy_server(base: Path, *extra_args: str, timeout: float = 120.0):
    """The real ComfyUI server (``main.py`` in a subprocess, CPU) on a free loopback port, with base folder
    ``base`` whose ``custom_nodes`` gets AnimateDiff-Evolved and this pack. Yields
    ``SimpleNamespace(url, object_info, log)`` once ``/object_info`` answers; stops the server afterwards."""
    import json
    import subprocess
    import time
    import urllib.request

    host = require_host()
    link_pack_as_custom_node(base / "custom_nodes")
    ade = base / "custom_nodes" / ADE_DIR_NAME
    if not ade.exists():
        ade.symlink_to(host / "custom_nodes" / ADE_DIR_NAME, target_is_directory=True)
    port = free_port()
    log_path = base / "server.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DO_NOT_TRACK="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory",
             str(base), "--database-url", "sqlite:///:memory:", "--disable-api-nodes", *extra_args],
            cwd=host, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"ComfyUI exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=10) as response:
                    object_info = json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"ComfyUI did not serve /object_info in {timeout:.0f} s:\n"
                                         f"{log_path.read_text()[-4000:]}") from None
                time.sleep(0.5)
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", object_info=object_info, log=log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def comfy_host(tmp_path_factory, test_models_dir):
    """ComfyUI + AnimateDiff-Evolved + this pack, booted in-process on the CPU (one per session).

    Returns a namespace with ``nodes`` (ComfyUI's module), ``folder_paths``, ``base`` (tmp root),
    ``models`` (folder with ``checkpoints``, ``animatediff_models``, ``animatediff_motion_lora``),
    ``packs`` (pack -> imported cleanly), ``pack_nodes`` (this pack's node ids),
    ``run(prompt) -> outputs`` and ``output(node_id, slot)``.
    """
    host = require_host()
    if str(host) not in sys.path:
        sys.path.insert(0, str(host))

    from comfy.cli_args import args

    args.cpu = True  # must precede the first import of comfy.model_management

    import folder_paths
    import utils.extra_config

    base = tmp_path_factory.mktemp("comfy")
    for name, setter in (("output", folder_paths.set_output_directory),
                         ("temp", folder_paths.set_temp_directory),
                         ("input", folder_paths.set_input_directory),
                         ("user", folder_paths.set_user_directory)):
        (base / name).mkdir()
        setter(str(base / name))

    models = base / "models"
    for sub in ("checkpoints", "animatediff_models", "animatediff_motion_lora"):
        (models / sub).mkdir(parents=True)
    yaml_path = base / "extra_model_paths.yaml"
    yaml_path.write_text(
        "tests:\n"
        f"    base_path: {models}\n"
        "    checkpoints: checkpoints\n"
        "    animatediff_models: animatediff_models\n"
        "    animatediff_motion_lora: animatediff_motion_lora\n"
    )
    utils.extra_config.load_extra_path_config(str(yaml_path))

    import execution
    import hook_breaker_ac10a0
    import nodes
    import server
    from host_compat import add_host_services, cached_outputs, make_executor

    stub = add_host_services(StubPromptServer())
    server.PromptServer.instance = stub

    hook_breaker_ac10a0.save_functions()
    failed_extras = asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    pack_dir = link_pack_as_custom_node(base / "custom_nodes")
    packs = {}
    before = set(nodes.NODE_CLASS_MAPPINGS)
    for name, path in ((ADE_DIR_NAME, host / "custom_nodes" / ADE_DIR_NAME), (PACK_DIR_NAME, pack_dir)):
        core_names = set(nodes.NODE_CLASS_MAPPINGS)
        packs[name] = asyncio.run(nodes.load_custom_node(str(path), ignore=core_names, module_parent="custom_nodes"))
    hook_breaker_ac10a0.restore_functions()
    pack_nodes = sorted(k for k in set(nodes.NODE_CLASS_MAPPINGS) - before
                        if getattr(nodes.NODE_CLASS_MAPPINGS[k], "RELATIVE_PYTHON_MODULE", "") == f"custom_nodes.{PACK_DIR_NAME}")

    executor = make_executor(stub, execution.CacheType.CLASSIC)

    def validate(prompt: dict):
        return asyncio.run(execution.validate_prompt(str(uuid.uuid4()), prompt, None))

    def run(prompt: dict, expect_success: bool = True) -> dict:
        """Validate and execute an API-format prompt; return ``{node_id: ui_output}``."""
        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
        assert valid, (error, node_errors)
        executor.execute(prompt, prompt_id, {}, outputs)
        if expect_success:
            assert executor.success, [m for m in executor.status_messages if m[0] == "execution_error"]
        return executor.history_result["outputs"]

    def errors() -> list[dict]:
        """The ``execution_error`` messages of the last run."""
        return [m[1] for m in executor.status_messages if m[0] == "execution_error"]

    def output(node_id: str, slot: int = 0):
        """Raw (cached) output of a node of the last run."""
        return cached_outputs(executor, node_id)[slot][0]

    return SimpleNamespace(nodes=nodes, folder_paths=folder_paths, base=base, models=models,
                           failed_extras=failed_extras, packs=packs, pack_nodes=pack_nodes,
                           executor=executor, server=stub, validate=validate, run=run,
                           errors=errors, output=output, path=host)


# --- generation fixtures: full-size random SD1.5 checkpoint + motion module placed in the host ---------
# (owned by the host-generation tests: tests/host_models.py, tests/host_graphs.py, tests/test_host_generation.py)

SD15_CHECKPOINT_NAME = "sd15_random.safetensors"


def place_model_file(folder: Path, source: Path, name: str | None = None) -> str:
    """Make ``source`` listable by the host in ``folder`` (a symlink named ``name``); return the file name."""
    name = name or source.name
    target = folder / name
    if not target.exists():
        target.symlink_to(source.resolve())
    return name


@pytest.fixture(scope="session")
def full_sd15_checkpoint_file(comfy_host, test_models_dir: Path) -> Path:
    """A full-size SD1.5 checkpoint with random fp16 values (~2.1 GB), listed by the host as
    ``SD15_CHECKPOINT_NAME`` under ``checkpoints`` (generated once into ``test_models_dir``)."""
    import torch

    from host_models import sd15_checkpoint_state_dict

    path = _generated_file(test_models_dir / SD15_CHECKPOINT_NAME,
                           lambda: sd15_checkpoint_state_dict(dtype=torch.float16, seed=0))
    place_model_file(comfy_host.models / "checkpoints", path, SD15_CHECKPOINT_NAME)
    return path


@pytest.fixture(scope="session")
def full_v3_motion_module_in_host(comfy_host, full_v3_motion_module_file: Path) -> str:
    """The full-size random v3 motion module, listed under ``animatediff_models``; returns its file name."""
    return place_model_file(comfy_host.models / "animatediff_models", full_v3_motion_module_file)
# --- end of generation fixtures ---------------------------------------------------------------------
