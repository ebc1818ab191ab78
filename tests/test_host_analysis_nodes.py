"""The analysis nodes in the real ComfyUI host: Load Reference Video -> Visualize Motion Spectra -> PreviewImage,
and -> Motion Fidelity -> PreviewAny, with clips written into the host's input folder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sma.metrics import motion_fidelity
from synthetic_clips import moving_shapes_clip
from sma.video import write_video
from sma.viz import COLUMN_WIDTH, PANEL_HEIGHT

FRAMES, SIZE = 16, 64
FORWARD, BACKWARD, OTHER = "sma_analysis_forward.mp4", "sma_analysis_backward.mp4", "sma_analysis_other.mp4"


@pytest.fixture(scope="module")
def input_clips(comfy_host) -> dict[str, str]:
    """Three clips in the host's input folder: a moving-shapes clip, the same played backwards, and a
    clip with another motion (rotation)."""
    folder = Path(comfy_host.folder_paths.get_input_directory())
    forward = moving_shapes_clip(FRAMES, SIZE, SIZE, seed=11).frames
    other = moving_shapes_clip(FRAMES, SIZE, SIZE, seed=12, motion="rotate").frames
    for name, frames in ((FORWARD, forward), (BACKWARD, forward.flip(0)), (OTHER, other)):
        write_video(folder / name, frames, fps=8.0)
    return {"forward": FORWARD, "backward": BACKWARD, "other": OTHER}


def load(name: str, frames: int = FRAMES) -> dict:
    return {"class_type": "SMA_LoadReferenceVideo",
            "inputs": {"video": name, "frame_load_cap": frames, "skip_first_frames": 0, "select_every_nth": 1,
                       "force_rate": 0.0, "width": SIZE, "height": SIZE}}


def fidelity(reference: str, generated: str) -> dict:
    return {"class_type": "SMA_MotionFidelity", "inputs": {"reference": [reference, 0], "generated": [generated, 0]}}


def preview_text(source: str, slot: int) -> dict:
    return {"class_type": "PreviewAny", "inputs": {"source": [source, slot]}}


def test_spectra_panel_and_fidelity_in_the_host(comfy_host, input_clips):
    prompt = {
        "fwd": load(input_clips["forward"]),
        "bwd": load(input_clips["backward"]),
        "oth": load(input_clips["other"]),
        "panel": {"class_type": "SMA_VisualizeSpectra",
                  "inputs": {"video": ["fwd", 0], "compare_video": ["bwd", 0], "label": "forward",
                             "compare_label": "backward"}},
        "show": {"class_type": "PreviewImage", "inputs": {"images": ["panel", 0]}},
        "same": fidelity("fwd", "fwd"),
        "same_text": preview_text("same", 3),
        "reversed": fidelity("fwd", "bwd"),
        "reversed_text": preview_text("reversed", 3),
        "reversed_cosine": preview_text("reversed", 0),
        "rotation": fidelity("fwd", "oth"),
        "rotation_text": preview_text("rotation", 3),
    }
    ui = comfy_host.run(prompt)

    panel = comfy_host.output("panel")
    assert panel.shape == (1, PANEL_HEIGHT, 2 * COLUMN_WIDTH, 3) and panel.dtype == torch.float32
    assert 0.0 <= float(panel.min()) and float(panel.max()) <= 1.0 and float(panel.std()) > 0.1
    for node in ("panel", "show"):  # the node shows its own preview, and PreviewImage shows the output
        (saved,) = ui[node]["images"]
        path = Path(comfy_host.folder_paths.get_temp_directory()) / saved["subfolder"] / saved["filename"]
        assert path.is_file()

    assert comfy_host.output("same", 0) == pytest.approx(1.0, abs=1e-9)
    assert comfy_host.output("same", 1) == 0.0 and comfy_host.output("same", 2) == 0.0
    (same_text,) = ui["same_text"]["text"]
    assert same_text.startswith("motion cosine 1.000 (1 = same motion") and "16 frames" in same_text
    assert list(ui["same"]["text"]) == [same_text]  # shown on the node itself too

    # the node's numbers are the library's on the frames the loader decoded
    expected = motion_fidelity(comfy_host.output("fwd"), comfy_host.output("bwd"))
    reversed_ = [comfy_host.output("reversed", slot) for slot in range(3)]
    assert reversed_ == pytest.approx([expected.cosine, expected.global_distance, expected.local_distance], rel=1e-6)
    assert list(ui["reversed_text"]["text"]) == [expected.summary()]
    assert float(ui["reversed_cosine"]["text"][0]) == pytest.approx(expected.cosine)
    # the trajectory score of tracked points: 1 for the same clip, the library's value for the reversed one
    assert comfy_host.output("same", 4) == pytest.approx(1.0) and "points tracked" in same_text
    assert comfy_host.output("reversed", 4) == pytest.approx(expected.trajectory_score)
    assert expected.trajectory_score < 0.9
    rotation = [comfy_host.output("rotation", slot) for slot in range(3)]
    for value in (reversed_[0], rotation[0]):
        assert value < 0.5
    for distances in (reversed_[1:], rotation[1:]):
        assert all(d > 0 for d in distances)


def test_latent_inputs(comfy_host):
    """The LATENT path: an empty latent batch (8 frames, no motion) draws, and measures as 'same motion'."""
    prompt = {
        "lat": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 8}},
        "panel": {"class_type": "SMA_VisualizeSpectra",
                  "inputs": {"latent": ["lat", 0], "label": "empty latent", "compare_label": "unused"}},
        "m": {"class_type": "SMA_MotionFidelity", "inputs": {"reference_latent": ["lat", 0],
                                                              "generated_latent": ["lat", 0]}},
    }
    ui = comfy_host.run(prompt)
    panel = comfy_host.output("panel")
    assert panel.shape == (1, PANEL_HEIGHT, COLUMN_WIDTH, 3) and float(panel.std()) > 0.1
    assert [comfy_host.output("m", slot) for slot in range(3)] == [1.0, 0.0, 0.0]  # both still: they agree
    assert "over 8 frames" in ui["m"]["text"][0]


@pytest.mark.parametrize(("nodes", "message"), [
    ({"a": load(FORWARD, 2), "m": fidelity("a", "a")},
     "Motion Fidelity: reference has 2 frame(s): motion metrics need at least 3 frames"),
    ({"a": load(FORWARD), "b": load(BACKWARD, 8), "m": fidelity("a", "b")},
     "Motion Fidelity: reference has 16 frames but generated has 8"),
    ({"m": {"class_type": "SMA_MotionFidelity", "inputs": {}}},
     "Motion Fidelity: connect reference and generated"),
    ({"m": {"class_type": "SMA_VisualizeSpectra", "inputs": {"label": "a", "compare_label": "b"}}},
     "Visualize Motion Spectra: connect a clip to video (IMAGE) or latent (LATENT)"),
    ({"a": load(FORWARD, 2),
      "m": {"class_type": "SMA_VisualizeSpectra", "inputs": {"video": ["a", 0], "label": "a", "compare_label": "b"}}},
     "Visualize Motion Spectra: video has 2 frame(s)"),
])
def test_bad_inputs_give_the_node_error(comfy_host, input_clips, nodes, message):
    comfy_host.run(nodes, expect_success=False)
    errors = comfy_host.errors()
    assert len(errors) == 1
    assert errors[0]["node_id"] == "m" and errors[0]["exception_type"] == "ValueError"
    assert message in errors[0]["exception_message"]
