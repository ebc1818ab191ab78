"""``python -m sma``: demo, train, inspect, help and error handling.

The demo and several error paths run as real subprocesses (exit codes, no tracebacks); the ``train``
pipeline runs in-process with tiny models through ``sma.cli.train.run``'s model-source parameter: real
argument parsing, video reading, tokenizer, VAE / text-encoder encoding, training, previews, checkpoints
and resume, with tiny random VAE / text encoder / UNet instead of a 2 GB checkpoint (whose loaders are
tested in test_models.py).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from PIL import Image
from conftest import DEMO_TEST_STEPS
from tiny_encoders import tiny_text_encoder, tiny_vae

from sma import text
from sma.cli import build_parser, main
from sma.toyworld.recipe import TOY_RANK
from sma.cli import train as train_cmd
from sma.errors import SMAInputError
from sma.lora import load_motion_lora, lora_rank
from sma.models.build import build_motion_unet, motion_module_state_dict
from sma.models.config import unet_config
from synthetic_clips import moving_shapes_clip
from sma.video import write_video
from sma.viz import LOSS_CURVE_SIZE

REPO_ROOT = Path(__file__).resolve().parents[1]
V3_LORA_LAYERS = 160  # attention q/k/v/out of every v3 motion module (docs/lora-format.md)
DEMO_LORA_LAYERS = 240  # the demo also trains ff (2) and proj_in/out: 12 layers in each of the 20 motion modules


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "sma", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


def assert_input_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def main_error(capsys, argv: list[str], *needles: str) -> str:
    """Run ``main(argv)`` in-process; it must return 2 and print ``error: ...`` containing ``needles``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(r"(^|\n)error: ", err) and "Traceback" not in err  # notes may come before the error
    for needle in needles:
        assert needle in err, err
    return err


def _train_argv(inputs, **changes: str) -> list[str]:
    values = {"--checkpoint": inputs["unet"], "--motion-module": inputs["motion"], "--video": inputs["video"],
              "--out": inputs["folder"] / "x.safetensors", **changes}
    return ["train", *[str(part) for flag, value in values.items() for part in (flag, value)]]


# --- fixtures ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(demo_run) -> tuple[subprocess.CompletedProcess, Path]:
    """The demo's LoRA and outputs, run once per session (``conftest.demo_run``)."""
    return demo_run


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Two short videos, a tiny v3 motion module, tiny UNet weights (diffusers naming), a garbage video."""
    folder = tmp_path_factory.mktemp("inputs")
    first = moving_shapes_clip(frames=10, height=64, width=64, seed=1)
    second = moving_shapes_clip(frames=9, height=48, width=64, seed=2, motion="rotate")
    write_video(folder / "squares.mp4", first.frames, 8.0)
    write_video(folder / "turning.mp4", second.frames, 8.0)
    safetensors.torch.save_file(motion_module_state_dict("v3", "tiny", torch.float32, seed=3),
                                str(folder / "tiny_mm.safetensors"))
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        unet = UNet2DConditionModel.from_config(unet_config("tiny"))
    safetensors.torch.save_file({k: v.contiguous() for k, v in unet.state_dict().items()},
                                str(folder / "tiny_unet.safetensors"))
    (folder / "broken.mp4").write_text("not a video\n", encoding="utf-8")
    return {"video": folder / "squares.mp4", "video2": folder / "turning.mp4", "motion": folder / "tiny_mm.safetensors",
            "unet": folder / "tiny_unet.safetensors", "broken": folder / "broken.mp4", "folder": folder}


def need_tokenizer() -> None:
    try:
        text.load_clip_tokenizer()
    except SMAInputError as error:
        pytest.skip(f"needs CLIP tokenizer files (set COMFYUI_PATH to the host's ComfyUI): {error}")


class TinySource:
    """Tiny random VAE and text encoder; tiny UNet weights read from --checkpoint; the real motion module."""

    def __init__(self, plan: train_cmd.TrainPlan, motion: dict[str, torch.Tensor]) -> None:
        self.unet_weights = safetensors.torch.load_file(str(plan.checkpoint))
        self.motion = motion

    def vae(self):
        return tiny_vae()

    def text_encoder(self):
        return tiny_text_encoder()

    def motion_unet(self, dtype: torch.dtype):
        return build_motion_unet(self.unet_weights, self.motion, dtype, unet_config=unet_config("tiny"))


def train_tiny(inputs: dict[str, Path], out: Path, *extra: str) -> int:
    argv = ["train", "--checkpoint", inputs["unet"], "--motion-module", inputs["motion"], "--video", inputs["video"],
            "--out", out, "--width", "64", "--frames", "8", "--rank", "4", "--device", "cpu", "--precision", "fp32",
            "--no-gradient-checkpointing", *extra]
    return train_cmd.run(build_parser().parse_args([str(a) for a in argv]), source_factory=TinySource)


# --- inspect -------------------------------------------------------------------------------------------

def test_inspect_our_lora(demo):
    _, out = demo
    path = out / "motion_lora.safetensors"
    result = run_cli("inspect", path)
    assert result.returncode == 0, result.stderr
    parameters = sum(t.numel() for t in safetensors.torch.load_file(str(path)).values())
    assert f"layers: {DEMO_LORA_LAYERS} LoRA pairs" in result.stdout
    assert f"rank: {TOY_RANK}\n" in result.stdout
    assert f"dtypes: float16 ({2 * DEMO_LORA_LAYERS} tensors)" in result.stdout
    assert f"parameters: {parameters:,}" in result.stdout
    assert ("down_blocks.0: motion modules [0, 1], 24 layers: attn1(q,k,v,out) attn2(q,k,v,out) ff(out,in) proj_in "
            "proj_out") in result.stdout
    assert "up_blocks.3: motion modules [0, 1, 2], 36 layers" in result.stdout
    assert "mid_block" not in result.stdout  # v3 has no mid-block motion module
    metadata = result.stdout.split("metadata:", 1)[1]
    assert f"steps            {DEMO_TEST_STEPS}" in metadata and f"steps_done       {DEMO_TEST_STEPS}" in metadata and "family           v3" in metadata and "demo             true" in metadata


def test_inspect_reads_a_peft_layout_file(demo, tmp_path, capsys):
    """The demo LoRA renamed to diffusers/peft keys with alpha = rank / 2 in the peft metadata."""
    from sma.lora.keys import diffusers_module, parse_lora_key

    state, _ = load_motion_lora(demo[1] / "motion_lora.safetensors")
    peft = {}
    for key, tensor in state.items():
        parsed = parse_lora_key(key)
        role = "lora_A" if parsed.role == "down" else "lora_B"
        peft[f"unet.{diffusers_module(parsed.module)}.{role}.weight"] = tensor.float()
    rank = TOY_RANK
    config = json.dumps({"unet.r": rank, "unet.lora_alpha": rank / 2})
    path = tmp_path / "peft_lora.safetensors"
    safetensors.torch.save_file(peft, str(path), metadata={"lora_adapter_metadata": config})
    assert main(["inspect", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "converted from the file's layout" in printed
    assert f"layers: {DEMO_LORA_LAYERS} LoRA pairs" in printed and f"rank: {rank}\n" in printed
    assert f"dtypes: float32 ({2 * DEMO_LORA_LAYERS} tensors)" in printed
    assert "lora_adapter_metadata" in printed


def test_inspect_refuses_non_lora_files(inputs):
    assert_input_error(run_cli("inspect", inputs["motion"]), "motion module (full weights), not a motion LoRA")


def test_inspect_missing_file(capsys, tmp_path):
    main_error(capsys, ["inspect", str(tmp_path / "nothing.safetensors")], "not found")


# --- help ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[], ["demo"], ["train"], ["inspect"]])
def test_help(command, capsys):
    if command:  # in-process; the entry point itself runs as a subprocess once, for the top-level help
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        stdout = capsys.readouterr().out
    else:
        result = run_cli("--help")
        assert result.returncode == 0, result.stderr
        stdout = result.stdout
    assert stdout.startswith(f"usage: python -m sma {' '.join(command)}".rstrip())
    if command == ["train"]:
        flat = " ".join(stdout.split())  # argparse wraps help lines
        for needle in ("--tokenizer DIR", "sd1_tokenizer", "COMFYUI_PATH", "open_clip", "--sma-mode", "--resume",
                       "--preview-every", "(default: 400)"):
            assert needle in flat, needle


def test_no_command_is_a_usage_error():
    result = run_cli()
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr


# --- train: argument and input errors ----------------------------------------------------------------------

def test_train_missing_checkpoint_exits_2(inputs):
    result = run_cli("train", "--checkpoint", inputs["folder"] / "missing.safetensors", "--motion-module",
                     inputs["motion"], "--video", inputs["video"], "--out", inputs["folder"] / "x.safetensors")
    assert_input_error(result, "--checkpoint: file not found", "missing.safetensors")


def test_train_bad_video(capsys, inputs):
    main_error(capsys, _train_argv(inputs, **{"--video": inputs["broken"]}), "could not decode broken.mp4")
    main_error(capsys, _train_argv(inputs, **{"--video": inputs["folder"] / "none.mp4"}), "none.mp4' does not exist")


@pytest.mark.parametrize("changes, needles", [
    ({"--checkpoint": "clip.mp4"}, ["--checkpoint: file not found"]),
    ({"--out": "lora.ckpt"}, ["--out must be a .safetensors file"]),
    ({"--steps": "0"}, ["steps must be a whole number >= 1, got 0"]),
    ({"--learning-rate": "-1"}, ["learning_rate must be a finite number > 0"]),
    ({"--rank": "2000"}, ["rank must be at most 1024"]),
    ({"--targets": "attention,everything"}, ["LoRA targets must include 'attention'"]),
    ({"--every-nth": "0"}, ["select_every_nth must be 1 or more"]),
    ({"--resume": "no_such_folder"}, ["--resume: no_such_folder does not exist"]),
    ({"--tokenizer": "no_such_tokenizer"}, ["tokenizer folder not found"]),
])
def test_train_argument_errors(capsys, inputs, changes, needles):
    main_error(capsys, _train_argv(inputs, **changes), *needles)


def test_train_wrong_file_types(capsys, inputs, demo):
    main_error(capsys, _train_argv(inputs, **{"--checkpoint": inputs["video"]}), "squares.mp4 is not a weights file")
    main_error(capsys, _train_argv(inputs, **{"--motion-module": demo[1] / "motion_lora.safetensors"}),
               "looks like a LoRA file, not a motion module")
    main_error(capsys, _train_argv(inputs, **{"--motion-module": inputs["unet"]}),
               "not an AnimateDiff motion module (it looks like a diffusers UNet)")


def test_train_prompt_count_must_fit(capsys, inputs):
    argv = _train_argv(inputs) + ["--video", str(inputs["video2"]), "--prompt", "a", "--prompt", "b", "--prompt", "c"]
    main_error(capsys, argv, "got 2 --video and 3 --prompt")


def test_train_checkpoint_that_is_not_sd15(capsys, inputs):
    need_tokenizer()
    main_error(capsys, _train_argv(inputs, **{"--checkpoint": inputs["motion"]}),
               "no Stable Diffusion UNet found in the checkpoint")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_train_cuda_without_cuda(capsys, inputs):
    main_error(capsys, _train_argv(inputs, **{"--device": "cuda"}), "no CUDA device")


def test_bad_choice_is_an_argparse_usage_error(capsys, inputs):
    with pytest.raises(SystemExit) as exit_info:
        main(_train_argv(inputs, **{"--sma-mode": "magic"}))
    assert exit_info.value.code == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err


# --- train: the pipeline with tiny models -------------------------------------------------------------------

def test_encode_frames_in_chunks_is_the_scaled_posterior_mean():
    vae = tiny_vae()
    frames = torch.rand(5, 48, 64, 3, generator=torch.Generator().manual_seed(1))
    latents = train_cmd.encode_frames(vae, frames, chunk=2)
    assert latents.shape == (5, 4, 6, 8)
    with torch.no_grad():
        expected = vae.encode(frames.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean * 0.18215
    torch.testing.assert_close(latents, expected, atol=1e-5, rtol=1e-5)


def test_train_two_clips_with_previews(tmp_path, inputs, capsys):
    need_tokenizer()
    out = tmp_path / "loras" / "my_motion.safetensors"
    rc = train_tiny(inputs, out, "--video", inputs["video2"], "--prompt", "squares sliding", "--prompt",
                    "discs turning", "--steps", "3", "--preview-every", "3")
    assert rc == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "2 clip(s)" in printed
    state, metadata = load_motion_lora(out)
    assert len(state) // 2 == V3_LORA_LAYERS and lora_rank(state) == 4
    assert metadata["steps"] == 3 and metadata["clips"] == 2 and metadata["family"] == "v3"
    assert metadata["prompts"] == ["squares sliding", "discs turning"]
    assert metadata["videos"] == ["squares.mp4", "turning.mp4"]
    assert metadata["checkpoint"] == "tiny_unet.safetensors" and metadata["motion_module"] == "tiny_mm.safetensors"
    assert sorted(map(tuple, metadata["sizes"])) == [(64, 48), (64, 64)]
    assert metadata["frames"] == 8  # window: the shorter clip's frames (both capped at --frames 8)
    with Image.open(out.with_name("my_motion_loss.png")) as png:
        assert png.size == LOSS_CURVE_SIZE[::-1]
    previews = out.with_name("my_motion_previews")
    assert sorted(p.name for p in previews.iterdir()) == ["step_000003.gif", "step_000003.png"]
    with Image.open(previews / "step_000003.gif") as gif:
        assert gif.n_frames == 8 and gif.size in {(32, 32), (32, 24)}  # latent size x 4


def test_train_resume_continues_bit_for_bit(tmp_path, inputs):
    need_tokenizer()
    straight = tmp_path / "straight.safetensors"
    resumed = tmp_path / "resumed.safetensors"
    assert train_tiny(inputs, straight, "--steps", "4") == 0
    assert train_tiny(inputs, resumed, "--steps", "2", "--checkpoint-every", "2") == 0
    assert (tmp_path / "resumed_checkpoints" / "checkpoint-000002.safetensors").is_file()
    assert train_tiny(inputs, resumed, "--steps", "4", "--resume") == 0
    a, _ = load_motion_lora(straight)
    b, meta_b = load_motion_lora(resumed)
    assert meta_b["steps"] == 4 and a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_train_with_validation_samples_changes_no_weight(tmp_path, inputs, capsys):
    need_tokenizer()
    plain, sampled = tmp_path / "plain.safetensors", tmp_path / "sampled.safetensors"
    assert train_tiny(inputs, plain, "--steps", "2") == 0
    assert train_tiny(inputs, sampled, "--steps", "2", "--validation-prompt", "a dog running", "--validation-every",
                      "1", "--validation-steps", "2") == 0
    strips = sorted((tmp_path / "sampled_checkpoints").glob("validation-*.webp"))
    assert [p.name for p in strips] == ["validation-000001.webp", "validation-000002.webp"]
    with Image.open(strips[-1]) as webp:
        assert webp.n_frames == 8 and webp.size == (64, 64)  # latent size x 8: the video's
    a, b = load_motion_lora(plain)[0], load_motion_lora(sampled)[0]
    assert all(torch.equal(a[key], b[key]) for key in a)
    main_error(capsys, _train_argv(inputs, **{"--validation-every": "5"}), "--validation-every needs --validation-prompt")


# --- train: every setting reaches the config ---------------------------------------------------------------

def _config_of(*options: str):
    args = build_parser().parse_args(["train", "--checkpoint", "c.safetensors", "--motion-module", "m.safetensors",
                                      "--video", "v.mp4", "--out", "o.safetensors", *options])
    return train_cmd.train_config(args, Path("ckpts"))


def test_train_options_reach_the_config_and_defaults_come_from_it():
    from sma.training import DEFAULTS, TrainConfig

    config = _config_of("--learning-rate", "0.002", "--spatial-learning-rate", "3e-4", "--rank", "8",
                        "--targets", "attention,ff", "--sma-mode", "paper", "--lambda-global", "0.3",
                        "--wavelet-levels", "2", "--level-weights", "1,0.5,0.25", "--wavelet", "db2",
                        "--wavelet-mode", "reflect", "--weight-delta", "0.1", "--weight-base", "0.5",
                        "--weight-sharpness", "2", "--snr-gamma", "0", "--phase-loss", "raw", "--window", "12",
                        "--no-spatial-path", "--no-gradient-checkpointing", "--timestep-max", "900")
    flat = config.flat()
    assert (flat["learning_rate"], flat["spatial_learning_rate"], flat["window"]) == (0.002, 3e-4, 12)
    assert config.lora.rank == 8 and config.lora.targets == ("attention", "ff")
    assert (config.sma.sma_mode, config.sma.lambda_global, config.sma.wavelet_levels) == ("paper", 0.3, 2)
    assert config.sma.level_weights == (1.0, 0.5, 0.25) and config.sma.wavelet == "db2"
    assert (config.sma.wavelet_mode, config.sma.weight_delta, config.sma.weight_base) == ("reflect", 0.1, 0.5)
    assert (config.sma.weight_sharpness, config.sma.snr_gamma, config.sma.phase_loss) == (2.0, None, "raw")
    assert not flat["spatial_path"] and not flat["gradient_checkpointing"] and flat["timestep_max"] == 900
    # 0 and "auto" are the automatic choice, as on the node; options not given keep the config's defaults
    assert _config_of("--wavelet-levels", "0", "--window", "0", "--wavelet-mode", "auto", "--alpha", "0") == \
        TrainConfig.from_flat(checkpoint_dir="ckpts")
    assert _config_of().flat() == {**DEFAULTS, "checkpoint_dir": "ckpts"}
    shown = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert f"--learning-rate LEARNING_RATE learning rate of the motion (temporal) LoRA (default: " \
           f"{DEFAULTS['learning_rate']})" in shown
    assert "--wavelet-levels WAVELET_LEVELS wavelet levels, 0 = the deepest the window allows (default: 0)" in shown
    assert "--sma-mode {plus,paper,off}" in shown and "(default: auto)" in shown  # --precision
    for earlier in ("--lr ", "--levels ", "--no-spatial ", "--lr-spatial "):
        assert earlier not in shown
