"""The Markdown notes of the example workflows: one overview per workflow and one note per step."""
from __future__ import annotations

TRAIN_OVERVIEW = """
## Train a motion LoRA (SMA)

Teaches AnimateDiff the **motion** of one reference clip and saves it as a motion LoRA for AnimateDiff-Evolved.

1. Pick an SD1.5 checkpoint and describe the clip in the prompt.
2. Upload your clip in **Load Reference Video**.
3. **Queue**. Training shows a progress bar and a live preview. **Cancel** stops at the next step and still saves.
4. The LoRA is saved as `models/animatediff_motion_lora/sma_motion.safetensors`. Generate with it in the
   *sma_apply_motion_lora* workflow.

**Needs:** ComfyUI-AnimateDiff-Evolved, and `v3_sd15_mm.ckpt` in `models/animatediff_models`
(train against the motion module you will generate with).

**Memory:** on 8 GB cards set width and height to 384. Still out of memory: fewer frames
(`frame_load_cap` 12 or 8), a lower rank, or `spatial_path` off.
"""

MODEL_NOTE = """
**SD1.5 checkpoint** — the base the motion is learned on.

The prompt says what the clip shows. The spatial path learns the clip's look, so the LoRA keeps the motion.
"""

REFERENCE_NOTE = """
**Upload a short clip** (mp4, webm, mov, mkv, gif, avi).

16 frames, scaled and centre-cropped to 512 × 512. `select_every_nth` 2 doubles the motion per frame;
`skip_first_frames` moves to the part you want.
"""

TRAIN_NOTE = """
**Defaults suit one clip:** 400 steps, rank 32, learning rate 5e-4.

`sma_mode` *plus* = Spectral Motion Alignment (recommended), *paper* = the paper's formulas, *off* = plain
MotionDirector. A checkpoint is kept every 100 steps; `resume` continues from the last one.
Queueing an unchanged graph again does not retrain.
"""

RESULTS_NOTE = """
The saved file name, the **loss curve** (each loss component) and the last **preview** of the model's estimate
of the clean clip.
"""

APPLY_OVERVIEW = """
## Generate with a learned motion

An AnimateDiff-Evolved (Gen2) text-to-video graph with a motion LoRA from **Train Motion LoRA (SMA)**:
your prompt, the reference clip's motion.

1. Pick the SD1.5 checkpoint and the motion module the LoRA was trained with.
2. Pick the LoRA in **Apply Motion LoRA** (press **R** to refresh the lists after training).
3. Write a prompt and **Queue**. The video is saved to `output/sma/`.

To check the motion, compare the video with the reference clip in the *sma_spectra_compare* workflow.
"""

MODELS_NOTE = """
**Motion module + motion LoRA.** `strength` 1.0 applies the motion as trained; try 0.6-0.9 when it
overpowers the prompt. Chain more LoRAs through `prev_motion_lora`.
"""

PROMPT_NOTE = """
Describe the new scene: the motion comes from the LoRA.
"""

ANIMATEDIFF_NOTE = """
**Apply AnimateDiff Model** takes the motion module and the LoRA; **Use Evolved Sampling** puts them into the
model. *LoRA info* shows what the LoRA was trained with (after a run).
"""

SAMPLE_NOTE = """
**16 frames** (`batch_size`) at 512 × 512, the clip length AnimateDiff v3 was trained on. The seed is
fixed; change it for another take.
"""

SAVE_NOTE = """
The frames become an 8 fps video in `output/sma/`.
"""

BOTH_OVERVIEW = """
## Train, then generate

The **top row** learns the motion of the reference clip as a motion LoRA; the **bottom row** generates a
new video with it.

**First Queue:** trains (progress bar, live preview). **Load AnimateDiff LoRA** is outlined red because its
file does not exist yet; ComfyUI runs the training alone.

**Queue again:** training is cached (not repeated) and the video is generated.

A node output cannot fill a file list, so the name is typed twice: Train's `lora_name` *sma_motion* is the
file *sma_motion.safetensors* picked in step 5.

**Needs:** ComfyUI-AnimateDiff-Evolved and `v3_sd15_mm.ckpt` in `models/animatediff_models`.
On 8 GB cards set the reference's width and height to 384.
"""

GENERATE_HINT = """
### Generate

Uses the checkpoint of step 1 and the LoRA of step 3. After training with new settings, queue once more: a
generation queued together with the training may still read the previous file.
"""

ADE_LORA_NOTE = """
**Motion module + the trained LoRA**, loaded by AnimateDiff-Evolved's own loader: ComfyUI checks its file list
before running, so the first Queue trains even though the file is not there yet. *Apply Motion LoRA (SMA)*
reads the same files (see *sma_apply_motion_lora*).
"""

ANIMATEDIFF_NOTE_SHORT = """
**Apply AnimateDiff Model** takes the motion module and the LoRA; **Use Evolved Sampling** puts them into the
model.
"""

SPECTRA_OVERVIEW = """
## Compare motion: reference vs generated

Draws what Spectral Motion Alignment compares, for two clips side by side, and measures how closely the
generated clip's motion follows the reference.

1. Upload the reference clip and a generated one, e.g. the video of *sma_apply_motion_lora*
   (from `output/sma/`), with at least 16 frames each.
2. **Queue**.
"""

REFERENCE_CLIP_NOTE = """
The clip whose motion was learned, loaded as for training: 16 frames, here at 256 px (small frames are
enough for the spectra).
"""

GENERATED_CLIP_NOTE = """
A generated clip, same settings. To measure a generation directly, connect its **VAE Decode** IMAGE to
`images` here.
"""

COMPARE_NOTE = """
**Spectra**, per clip: wavelet scalogram of the motion over time (global motion), amplitude and phase spectra
of the frame-to-frame motion (local motion), motion energy per frame pair, on shared colour scales.

**Fidelity:** *cosine* 1 = the same motion, -1 = the opposite; *global / local distance* = SMA's wavelet and
Fourier distances, 0 = identical. The same numbers the trainer logs.
"""
