"""SD1.5 prompts offline: CLIP's BPE tokenizer from files already on disk, and prompt encoding.

transformers' ``CLIPTokenizer`` needs CLIP's vocabulary (49408 entries) and BPE merges; built from a
folder without them it silently becomes a 2-token tokenizer (docs/model-loading.md). Nothing is downloaded.
Sources, in this order (:data:`TOKENIZER_SOURCES_HELP`):

1. an explicit folder with ``vocab.json`` + ``merges.txt`` (a diffusers model folder with a
   ``tokenizer/`` sub-folder works too);
2. ComfyUI's ``comfy/sd1_tokenizer/``: under ``$COMFYUI_PATH``, or found relative to this package when
   the pack sits in ``ComfyUI/custom_nodes/``;
3. the ``open_clip`` package's ``bpe_simple_vocab_16e6.txt.gz`` (CLIP's original merge list), turned
   into a vocabulary the way CLIP builds it (:func:`clip_vocab_from_merges`).

Every tokenizer is checked (:func:`check_clip_tokenizer`) before use.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import SMAInputError

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

CLIP_VOCAB_SIZE = 49408
CLIP_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - 2
"""Merges CLIP uses: the vocabulary is 256 bytes, 256 end-of-word bytes, the merges, 2 special tokens."""
MAX_TOKENS = 77
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"
CHECK_PROMPT = "a photo of a cat"
CHECK_IDS = (49406, 320, 1125, 539, 320, 2368, 49407)
"""What CLIP's tokenizer gives for :data:`CHECK_PROMPT` (start and end tokens included)."""
VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"
COMFY_TOKENIZER = Path("comfy") / "sd1_tokenizer"
OPEN_CLIP_BPE = "bpe_simple_vocab_16e6.txt.gz"
TOKENIZER_SOURCES_HELP = (
    "CLIP tokenizer sources, in order: (1) --tokenizer DIR, a folder with vocab.json + merges.txt (e.g. "
    "ComfyUI/comfy/sd1_tokenizer, or the 'tokenizer' folder of a diffusers SD1.5 model); (2) ComfyUI's "
    "comfy/sd1_tokenizer under $COMFYUI_PATH or above this pack when it sits in ComfyUI/custom_nodes; "
    f"(3) the open_clip package's {OPEN_CLIP_BPE} (pip install open_clip_torch). Nothing is downloaded."
)

log = logging.getLogger(__name__)


# --- CLIP's vocabulary from its merge list --------------------------------------------------------------

def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map of the 256 byte values to printable characters.

    Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) map to themselves; the other bytes,
    in increasing order, to ``chr(256)``, ``chr(257)``, ... The dict's order is the vocabulary's order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def clip_vocab_from_merges(merges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """CLIP's token -> id table: the byte characters, the same with ``</w>``, each merge joined, then
    ``<|startoftext|>`` and ``<|endoftext|>``. With CLIP's 48894 merges: 49408 entries."""
    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(pair) for pair in merges), START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def _merge_pairs(lines: Sequence[str], source: str) -> list[tuple[str, str]]:
    pairs = [tuple(line.split()) for line in lines]
    bad = [i for i, pair in enumerate(pairs) if len(pair) != 2]
    if bad:
        raise SMAInputError(f"{source}: line {bad[0] + 2} is not a BPE merge ('left right'); the file is damaged.")
    return pairs  # type: ignore[return-value]


def read_bpe_merges(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The merges CLIP uses from a gzipped BPE list (``bpe_simple_vocab_16e6.txt.gz``): the lines after
    the header line, the first :data:`CLIP_MERGES` of them."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise SMAInputError(f"cannot read the BPE merge list {path}: {error}.") from error
    merges = [line for line in lines[1:CLIP_MERGES + 1] if line]
    return _merge_pairs(merges, str(path))


def read_tokenizer_folder(folder: str | os.PathLike) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """``(vocab, merges)`` of a Hugging Face tokenizer folder (``vocab.json`` + ``merges.txt``)."""
    folder = Path(folder)
    try:
        vocab = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
        lines = (folder / MERGES_FILE).read_text(encoding="utf-8").split("\n")
    except (OSError, ValueError) as error:
        raise SMAInputError(f"cannot read the tokenizer files in {folder}: {error}.") from error
    if not isinstance(vocab, dict):
        raise SMAInputError(f"{folder / VOCAB_FILE} is not a token -> id table.")
    merges = [line for line in lines if line and not line.startswith("#version")]
    return vocab, _merge_pairs(merges, str(folder / MERGES_FILE))


# --- building and checking ----------------------------------------------------------------------------

def check_clip_tokenizer(tokenizer: CLIPTokenizer, source: str) -> None:
    """Raise SMAInputError unless ``tokenizer`` is CLIP's: 49408 entries and the known ids of a prompt."""
    size = tokenizer.vocab_size
    if size != CLIP_VOCAB_SIZE:
        raise SMAInputError(
            f"the CLIP tokenizer from {source} has {size} entries, SD1.5's has {CLIP_VOCAB_SIZE}: the files are "
            f"not CLIP ViT-L/14's vocabulary. {TOKENIZER_SOURCES_HELP}"
        )
    ids = tuple(tokenizer(CHECK_PROMPT).input_ids)
    if ids != CHECK_IDS:
        raise SMAInputError(
            f"the CLIP tokenizer from {source} turns {CHECK_PROMPT!r} into {list(ids)}, CLIP gives {list(CHECK_IDS)}; "
            f"the vocabulary or merges do not belong together. {TOKENIZER_SOURCES_HELP}"
        )


def build_clip_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], source: str) -> CLIPTokenizer:
    """A checked ``CLIPTokenizer`` from vocabulary and merges (padding with ``<|endoftext|>``, as SD1.5)."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, pad_token=END_TOKEN)
    tokenizer.model_max_length = MAX_TOKENS
    check_clip_tokenizer(tokenizer, source)
    return tokenizer


# --- where the files are -------------------------------------------------------------------------------

def _has_tokenizer_files(folder: Path) -> bool:
    return (folder / VOCAB_FILE).is_file() and (folder / MERGES_FILE).is_file()


def comfyui_tokenizer_dirs() -> list[Path]:
    """Existing ``comfy/sd1_tokenizer`` folders: under ``$COMFYUI_PATH``, then above this package
    (``ComfyUI/custom_nodes/<pack>/sma/text.py``, symlinked packs followed both ways)."""
    roots = []
    if os.environ.get("COMFYUI_PATH"):
        roots.append(Path(os.environ["COMFYUI_PATH"]))
    for here in (Path(__file__).absolute(), Path(__file__).resolve()):
        parents = here.parents  # ComfyUI/custom_nodes/<pack>/sma/text.py
        if len(parents) > 3 and parents[2].name == "custom_nodes":
            roots.append(parents[3])
    found: list[Path] = []
    for root in roots:
        folder = root / COMFY_TOKENIZER
        if _has_tokenizer_files(folder) and folder.resolve() not in {f.resolve() for f in found}:
            found.append(folder)
    return found


def open_clip_bpe_file() -> Path | None:
    """The ``open_clip`` package's BPE merge list, if the package is installed (it is not imported)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / OPEN_CLIP_BPE
        if path.is_file():
            return path
    return None


def _explicit_folder(path: str | os.PathLike) -> Path:
    folder = Path(path).expanduser()
    for candidate in (folder, folder / "tokenizer"):
        if _has_tokenizer_files(candidate):
            return candidate
    if not folder.is_dir():
        raise SMAInputError(f"tokenizer folder not found: {folder}. It must hold {VOCAB_FILE} and {MERGES_FILE}.")
    raise SMAInputError(f"the tokenizer folder {folder} has no {VOCAB_FILE} + {MERGES_FILE} (nor a 'tokenizer' "
                        f"sub-folder with them). {TOKENIZER_SOURCES_HELP}")


def load_clip_tokenizer(explicit_dir: str | os.PathLike | None = None) -> CLIPTokenizer:
    """SD1.5's CLIP tokenizer from the first source that exists (see :data:`TOKENIZER_SOURCES_HELP`).

    A given ``explicit_dir`` must work (no fallback). The result is checked with
    :func:`check_clip_tokenizer`.

    Raises:
        SMAInputError: no source found, or the files found are not CLIP's tokenizer.
    """
    if explicit_dir is not None:
        folder = _explicit_folder(explicit_dir)
        return build_clip_tokenizer(*read_tokenizer_folder(folder), source=str(folder))
    comfy = comfyui_tokenizer_dirs()
    if comfy:
        return build_clip_tokenizer(*read_tokenizer_folder(comfy[0]), source=str(comfy[0]))
    bpe = open_clip_bpe_file()
    if bpe is not None:
        merges = read_bpe_merges(bpe)
        return build_clip_tokenizer(clip_vocab_from_merges(merges), merges, source=str(bpe))
    raise SMAInputError(f"no CLIP tokenizer files found on this machine. {TOKENIZER_SOURCES_HELP}")


# --- prompts --------------------------------------------------------------------------------------------

def tokenize_prompts(tokenizer: CLIPTokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids ``[N, 77]`` (start, tokens, end, padded with end tokens; longer prompts cut to 77)."""
    if isinstance(prompts, str) or not prompts:
        raise SMAInputError("prompts must be a non-empty list of strings.")
    for prompt in prompts:
        used = len(tokenizer(prompt).input_ids)
        if used > MAX_TOKENS:
            log.warning("prompt %r has %d tokens; SD1.5 reads the first %d.", prompt[:60], used, MAX_TOKENS)
    return tokenizer(list(prompts), padding="max_length", max_length=MAX_TOKENS, truncation=True,
                     return_tensors="pt").input_ids


@torch.no_grad()
def encode_prompts(text_encoder: torch.nn.Module, tokenizer: CLIPTokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Prompt embeddings ``[N, 77, D]`` (SD1.5: D = 768), float32 on the CPU: the text encoder's last
    hidden state (after its final layer norm), as SD1.5 conditions on."""
    ids = tokenize_prompts(tokenizer, prompts)
    device = next(text_encoder.parameters()).device
    hidden = text_encoder(input_ids=ids.to(device)).last_hidden_state
    return hidden.float().cpu()
