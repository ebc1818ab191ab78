"""API-format prompts (the JSON ``/prompt`` takes) for host tests: AnimateDiff text-to-video with ADE Gen2 nodes.

The graph::

    CheckpointLoaderSimple -> CLIPTextEncode (positive, negative)
    ADE_LoadAnimateDiffModel -> ADE_ApplyAnimateDiffModelSimple (<- optional ADE_AnimateDiffLoRALoader chain)
        -> ADE_UseEvolvedSampling(model) -> KSampler(EmptyLatentImage [F, 4, H/8, W/8]) -> VAEDecode -> output

Node ids are the readable constants below, so tests can patch inputs (``prompt[SAMPLER]["inputs"]["seed"]``)
and read outputs (``comfy_host.output(DECODE)`` is the IMAGE batch ``[F, H, W, 3]``).
"""
from __future__ import annotations

from collections.abc import Sequence

CHECKPOINT = "checkpoint"
POSITIVE = "positive"
NEGATIVE = "negative"
MOTION_MODEL = "motion_model"
APPLY_MOTION_MODEL = "apply_motion_model"
EVOLVED_SAMPLING = "evolved_sampling"
LATENT = "latent"
SAMPLER = "sampler"
DECODE = "decode"
OUTPUT = "output"
MOTION_LORA = "motion_lora_{}"  # .format(index) for the index-th loader of the chain

Link = list  # [node_id, output_slot]


def link(node_id: str, slot: int = 0) -> Link:
    """An input that takes output ``slot`` of node ``node_id``."""
    return [node_id, slot]


def motion_lora_chain(loras: Sequence[tuple[str, float]]) -> tuple[dict, Link | None]:
    """``ADE_AnimateDiffLoRALoader`` nodes chained by ``prev_motion_lora`` in the given order.

    ``loras``: (file name in ``animatediff_motion_lora``, strength) pairs. Returns the nodes
    (ids ``MOTION_LORA.format(i)``) and a link to the last one's MOTION_LORA, or None when empty.
    """
    nodes: dict = {}
    previous: Link | None = None
    for index, (name, strength) in enumerate(loras):
        inputs: dict = {"name": name, "strength": float(strength)}
        if previous is not None:
            inputs["prev_motion_lora"] = previous
        node_id = MOTION_LORA.format(index)
        nodes[node_id] = {"class_type": "ADE_AnimateDiffLoRALoader", "inputs": inputs}
        previous = link(node_id)
    return nodes, previous


def animatediff_prompt(
    checkpoint: str,
    motion_model: str | None,
    *,
    motion_loras: Sequence[tuple[str, float]] = (),
    positive: str = "a red ball rolling on grass",
    negative: str = "blurry",
    width: int = 64,
    height: int = 64,
    frames: int = 4,
    seed: int = 0,
    steps: int = 1,
    cfg: float = 2.0,
    sampler: str = "euler",
    scheduler: str = "normal",
    beta_schedule: str = "autoselect",
    output: str = "PreviewImage",
) -> dict:
    """The AnimateDiff text-to-video prompt of the module docstring.

    ``checkpoint``: a name ComfyUI lists under ``checkpoints``; ``motion_model``: one under
    ``animatediff_models``, or None for the same graph without a motion model (evolved sampling of the
    image model alone); ``motion_loras``: see :func:`motion_lora_chain` (needs a motion model). The
    ``frames`` latents are sampled as one video; ``output`` is the class of the output node fed by the
    decoded images.
    """
    if motion_model is None and motion_loras:
        raise ValueError("motion_loras need a motion_model")
    evolved_inputs: dict = {"model": link(CHECKPOINT, 0), "beta_schedule": beta_schedule}
    motion_nodes: dict = {}
    if motion_model is not None:
        lora_nodes, lora_link = motion_lora_chain(motion_loras)
        apply_inputs: dict = {"motion_model": link(MOTION_MODEL)}
        if lora_link is not None:
            apply_inputs["motion_lora"] = lora_link
        motion_nodes = {
            MOTION_MODEL: {"class_type": "ADE_LoadAnimateDiffModel", "inputs": {"model_name": motion_model}},
            **lora_nodes,
            APPLY_MOTION_MODEL: {"class_type": "ADE_ApplyAnimateDiffModelSimple", "inputs": apply_inputs},
        }
        evolved_inputs["m_models"] = link(APPLY_MOTION_MODEL)
    return {
        CHECKPOINT: {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        POSITIVE: {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": link(CHECKPOINT, 1)}},
        NEGATIVE: {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": link(CHECKPOINT, 1)}},
        **motion_nodes,
        EVOLVED_SAMPLING: {"class_type": "ADE_UseEvolvedSampling", "inputs": evolved_inputs},
        LATENT: {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": frames}},
        SAMPLER: {"class_type": "KSampler",
                  "inputs": {"model": link(EVOLVED_SAMPLING), "seed": seed, "steps": steps, "cfg": cfg,
                             "sampler_name": sampler, "scheduler": scheduler, "positive": link(POSITIVE),
                             "negative": link(NEGATIVE), "latent_image": link(LATENT), "denoise": 1.0}},
        DECODE: {"class_type": "VAEDecode", "inputs": {"samples": link(SAMPLER), "vae": link(CHECKPOINT, 2)}},
        OUTPUT: {"class_type": output, "inputs": {"images": link(DECODE)}},
    }
