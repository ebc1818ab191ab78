"""The example workflows' graphs: which nodes, with which settings, in which group, with which note."""
from __future__ import annotations

from collections.abc import Callable

from .layout import GROUP_COLORS, Definitions, Graph, NodeRef
from .notes import (
    ADE_LORA_NOTE,
    ANIMATEDIFF_NOTE,
    ANIMATEDIFF_NOTE_SHORT,
    APPLY_OVERVIEW,
    BOTH_OVERVIEW,
    COMPARE_NOTE,
    GENERATE_HINT,
    GENERATED_CLIP_NOTE,
    MODEL_NOTE,
    MODELS_NOTE,
    PROMPT_NOTE,
    REFERENCE_CLIP_NOTE,
    REFERENCE_NOTE,
    RESULTS_NOTE,
    SAMPLE_NOTE,
    SAVE_NOTE,
    SPECTRA_OVERVIEW,
    TRAIN_NOTE,
    TRAIN_OVERVIEW,
)

# The file names users have (what the workflows select); tests swap in their own files.
CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
MOTION_MODULE = "v3_sd15_mm.ckpt"
LORA_STEM = "sma_motion"
LORA_FILE = f"{LORA_STEM}.safetensors"
REFERENCE_VIDEO = "reference.mp4"
GENERATED_VIDEO = "generated.mp4"
USER_FILES = {
    "checkpoints": (CHECKPOINT,),
    "animatediff_models": (MOTION_MODULE,),
    "animatediff_motion_lora": (LORA_FILE,),
    "input": (REFERENCE_VIDEO, GENERATED_VIDEO),
}

FRAMES = 16
SIZE = 512
FPS = 8.0

TRAIN_PROMPT = "a car driving on a road"
GENERATE_PROMPT = "a red vintage truck driving through a snowy forest, cinematic lighting, highly detailed"
NEGATIVE_PROMPT = "blurry, low quality, deformed, watermark, text"
LOADER_HEIGHT = 600  # Load Reference Video grows to show the clip


def _reference_loader(g: Graph, video: str, size: int, title: str | None = None) -> NodeRef:
    return g.add("SMA_LoadReferenceVideo", {
        "video": video, "frame_load_cap": FRAMES, "skip_first_frames": 0, "select_every_nth": 1, "force_rate": 0.0,
        "width": size, "height": size}, title=title, height=LOADER_HEIGHT)


def _checkpoint_and_prompt(g: Graph) -> tuple[NodeRef, NodeRef]:
    with g.column("1 · Model and prompt", GROUP_COLORS["model"]):
        g.note(MODEL_NOTE, 90)
        checkpoint = g.add("CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT})
        prompt = g.add("CLIPTextEncode", {"text": TRAIN_PROMPT, "clip": checkpoint["CLIP"]},
                       title="Prompt describing the clip", height=120)
    return checkpoint, prompt


def _training(g: Graph) -> NodeRef:
    """Steps 1-4: checkpoint and prompt, reference clip, Train Motion LoRA, its results."""
    checkpoint, prompt = _checkpoint_and_prompt(g)
    with g.column("2 · Reference clip", GROUP_COLORS["clip"]):
        g.note(REFERENCE_NOTE, 100)
        video = _reference_loader(g, REFERENCE_VIDEO, SIZE)
    with g.column("3 · Train", GROUP_COLORS["train"]):
        g.note(TRAIN_NOTE, 130)
        train = g.add("SMA_TrainMotionLoRA", {  # every training setting at the node's default
            "model": checkpoint["MODEL"], "vae": checkpoint["VAE"], "positive": prompt["CONDITIONING"],
            "frames": video["frames"], "motion_model": MOTION_MODULE, "lora_name": LORA_STEM})
    with g.column("4 · Results", GROUP_COLORS["result"], width=400):
        g.note(RESULTS_NOTE, 70)
        g.add("PreviewAny", {"source": train["lora_name"]}, title="Saved LoRA", height=90)
        g.add("PreviewImage", {"images": train["loss_curve"]}, title="Loss curve", height=260)
        g.add("PreviewImage", {"images": train["preview"]}, title="Last preview", height=200)
    return checkpoint


def _generation(g: Graph, checkpoint: NodeRef | None, step: int) -> None:
    """The ADE Gen2 text-to-video graph with the motion LoRA, its groups numbered from ``step``.

    Alone (no ``checkpoint`` given) it has its own checkpoint loader and Apply Motion LoRA (SMA). After a training
    row it shares that row's checkpoint and loads the LoRA with ADE's own loader: ComfyUI 0.3.64 checks that
    loader's file list before running (it does not check V3 nodes' lists), so while the file does not exist yet
    only the generation branch is dropped and the training runs.
    """
    standalone = checkpoint is None
    with g.column(f"{step} · Models" if standalone else f"{step} · Motion models", GROUP_COLORS["model"]):
        g.note(MODELS_NOTE if standalone else ADE_LORA_NOTE, 80 if standalone else 100)
        if checkpoint is None:
            checkpoint = g.add("CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT})
        motion = g.add("ADE_LoadAnimateDiffModel", {"model_name": MOTION_MODULE})
        if standalone:
            lora = g.add("SMA_ApplyMotionLoRA", {"lora_name": LORA_FILE, "strength": 1.0})
            motion_lora = lora["motion_lora"]
        else:
            motion_lora = g.add("ADE_AnimateDiffLoRALoader", {"name": LORA_FILE, "strength": 1.0})["MOTION_LORA"]
    with g.column(f"{step + 1} · Prompt", GROUP_COLORS["clip"]):
        g.note(PROMPT_NOTE, 60)
        positive = g.add("CLIPTextEncode", {"text": GENERATE_PROMPT, "clip": checkpoint["CLIP"]},
                         title="Positive prompt", height=120)
        negative = g.add("CLIPTextEncode", {"text": NEGATIVE_PROMPT, "clip": checkpoint["CLIP"]},
                         title="Negative prompt", height=90)
    with g.column(f"{step + 2} · AnimateDiff (Gen2)", GROUP_COLORS["animatediff"]):
        g.note(ANIMATEDIFF_NOTE if standalone else ANIMATEDIFF_NOTE_SHORT, 90)
        apply = g.add("ADE_ApplyAnimateDiffModelSimple",
                      {"motion_model": motion["MOTION_MODEL"], "motion_lora": motion_lora})
        sampling = g.add("ADE_UseEvolvedSampling",
                         {"model": checkpoint["MODEL"], "m_models": apply["M_MODELS"], "beta_schedule": "autoselect"})
        if standalone:
            g.add("PreviewAny", {"source": lora["info"]}, title="LoRA info", height=120)
    with g.column(f"{step + 3} · Sample", GROUP_COLORS["sample"]):
        g.note(SAMPLE_NOTE, 70)
        latent = g.add("EmptyLatentImage", {"width": SIZE, "height": SIZE, "batch_size": FRAMES})
        sampler = g.add("KSampler", {
            "model": sampling["MODEL"], "seed": 42, "steps": 20, "cfg": 7.5, "sampler_name": "euler_ancestral",
            "scheduler": "normal", "positive": positive["CONDITIONING"], "negative": negative["CONDITIONING"],
            "latent_image": latent["LATENT"], "denoise": 1.0}, control="fixed")
    with g.column(f"{step + 4} · Decode and save", GROUP_COLORS["save"], width=380):
        g.note(SAVE_NOTE, 60)
        frames = g.add("VAEDecode", {"samples": sampler["LATENT"], "vae": checkpoint["VAE"]})
        video = g.add("CreateVideo", {"images": frames["IMAGE"], "fps": FPS})
        g.add("SaveVideo", {"video": video["VIDEO"], "filename_prefix": "sma/motion", "format": "auto",
                            "codec": "auto"}, height=300)


def _overview(g: Graph, text: str, height: int, title: str = "Read me") -> None:
    with g.column(None, width=360):
        g.note(text, height, title)


def train_motion_lora(definitions: Definitions) -> Graph:
    g = Graph(definitions)
    _overview(g, TRAIN_OVERVIEW, 310)
    _training(g)
    return g


def apply_motion_lora(definitions: Definitions) -> Graph:
    g = Graph(definitions)
    _overview(g, APPLY_OVERVIEW, 230)
    _generation(g, None, 1)
    return g


def train_and_apply(definitions: Definitions) -> Graph:
    g = Graph(definitions)
    _overview(g, BOTH_OVERVIEW, 270)
    checkpoint = _training(g)
    g.new_row()
    _overview(g, GENERATE_HINT, 110, "Then generate")
    _generation(g, checkpoint, 5)
    return g


def spectra_compare(definitions: Definitions) -> Graph:
    g = Graph(definitions)
    _overview(g, SPECTRA_OVERVIEW, 190)
    clips = []
    for step, (video, what) in enumerate(((REFERENCE_VIDEO, "Reference"), (GENERATED_VIDEO, "Generated")), 1):
        with g.column(f"{step} · {what} clip", GROUP_COLORS["clip"]):
            g.note(REFERENCE_CLIP_NOTE if step == 1 else GENERATED_CLIP_NOTE, 80)
            clips.append(_reference_loader(g, video, 256, f"{what} clip")["frames"])
    reference, generated = clips
    with g.column("3 · Compare the motion", GROUP_COLORS["result"], width=620):
        g.note(COMPARE_NOTE, 100)
        g.add("SMA_VisualizeSpectra", {"video": reference, "compare_video": generated, "label": "reference",
                                       "compare_label": "generated"}, height=480)
        fidelity = g.add("SMA_MotionFidelity", {"reference": reference, "generated": generated})
        g.add("PreviewAny", {"source": fidelity["summary"]}, title="Fidelity summary", height=100)
    return g


WORKFLOWS: dict[str, Callable[[Definitions], Graph]] = {
    "sma_train_motion_lora": train_motion_lora,
    "sma_apply_motion_lora": apply_motion_lora,
    "sma_train_and_apply": train_and_apply,
    "sma_spectra_compare": spectra_compare,
}
NODE_TYPES = (  # every backend node type the workflows use
    "CheckpointLoaderSimple", "CLIPTextEncode", "PreviewImage", "PreviewAny", "EmptyLatentImage", "KSampler",
    "VAEDecode", "CreateVideo", "SaveVideo", "ADE_LoadAnimateDiffModel", "ADE_ApplyAnimateDiffModelSimple",
    "ADE_UseEvolvedSampling", "ADE_AnimateDiffLoRALoader", "SMA_LoadReferenceVideo", "SMA_TrainMotionLoRA",
    "SMA_ApplyMotionLoRA", "SMA_VisualizeSpectra", "SMA_MotionFidelity",
)
