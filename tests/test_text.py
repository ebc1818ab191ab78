"""The offline CLIP tokenizer (sma.text): vocabulary construction, the three sources, prompt encoding.

Tests that need CLIP's real vocabulary read ComfyUI's ``comfy/sd1_tokenizer`` from the host
(``COMFYUI_PATH``); they skip with a message when it is not set up.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from tiny_encoders import tiny_text_encoder

from sma import text
from sma.errors import SMAInputError

CHECK_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]  # docs/model-loading.md: CLIP ViT-L/14 ids of "a photo of a cat"
PROMPTS = ["a photo of a cat", "A Dog, running on the BEACH at sunset!!", "naïve café — 3 birds", ""]


def comfy_tokenizer_dir() -> Path:
    root = os.environ.get("COMFYUI_PATH")
    folder = Path(root) / "comfy" / "sd1_tokenizer" if root else None
    if folder is None or not (folder / "vocab.json").is_file():
        pytest.skip("needs ComfyUI's comfy/sd1_tokenizer: set COMFYUI_PATH to your ComfyUI folder "
                    "(export COMFYUI_PATH=/path/to/ComfyUI)")
    return folder


def write_open_clip_bpe(folder: Path, merges_txt: Path) -> Path:
    """A file in open_clip's ``bpe_simple_vocab_16e6.txt.gz`` format: a header line, the merges, and
    more merges CLIP does not use (the real file lists ~262k)."""
    merges = [line for line in merges_txt.read_text(encoding="utf-8").split("\n")[1:] if line]
    path = folder / text.OPEN_CLIP_BPE
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(['"bpe_simple_vocab_16e6.txt#version: 0.2', *merges, "zq xj", "qz jx"]) + "\n")
    return path


# --- without the real vocabulary ----------------------------------------------------------------------

def test_bytes_to_unicode_matches_gpt2_clip_byte_map():
    table = text.bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    # well-known entries of the GPT-2 / CLIP byte encoder
    assert table[ord("!")] == "!" and table[ord("a")] == "a" and table[0xFF] == "ÿ"
    assert table[32] == "\u0120"  # space -> 'Ġ'
    assert table[10] == "\u010a"  # newline -> 'Ċ'
    assert table[0] == "\u0100"
    assert list(table.values())[:3] == ["!", '"', "#"]


def test_clip_vocab_from_merges_order():
    vocab = text.clip_vocab_from_merges([("h", "e"), ("he", "llo</w>")])
    assert len(vocab) == 256 + 256 + 2 + 2
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    assert vocab["he"] == 512 and vocab["hello</w>"] == 513
    assert vocab["<|startoftext|>"] == 514 and vocab["<|endoftext|>"] == 515


def test_small_vocabulary_is_refused(tmp_path):
    vocab = text.clip_vocab_from_merges([("h", "e")])
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nh e\n", encoding="utf-8")
    with pytest.raises(SMAInputError, match="515 entries, SD1.5's has 49408"):
        text.load_clip_tokenizer(tmp_path)


def test_missing_explicit_folder_says_what_it_needs(tmp_path):
    with pytest.raises(SMAInputError, match="tokenizer folder not found.*vocab.json and merges.txt"):
        text.load_clip_tokenizer(tmp_path / "nope")
    with pytest.raises(SMAInputError, match="has no vocab.json"):
        text.load_clip_tokenizer(tmp_path)


def test_no_source_found_lists_the_sources(monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setattr(text, "open_clip_bpe_file", lambda: None)
    if text.comfyui_tokenizer_dirs():
        pytest.skip("this checkout sits inside ComfyUI/custom_nodes, so ComfyUI's tokenizer is always found")
    with pytest.raises(SMAInputError, match=r"no CLIP tokenizer files found.*--tokenizer DIR.*sd1_tokenizer.*open_clip"):
        text.load_clip_tokenizer()


# --- against ComfyUI's sd1_tokenizer --------------------------------------------------------------------

def test_comfyui_folder_gives_clip_ids():
    folder = comfy_tokenizer_dir()
    tokenizer = text.load_clip_tokenizer(folder)
    assert tokenizer.vocab_size == 49408
    assert tokenizer("a photo of a cat").input_ids == CHECK_IDS


def test_same_ids_as_transformers_loading_the_folder():
    from transformers import CLIPTokenizer

    folder = comfy_tokenizer_dir()
    ours = text.load_clip_tokenizer(folder)
    reference = CLIPTokenizer.from_pretrained(str(folder))
    for prompt in PROMPTS:
        assert ours(prompt).input_ids == reference(prompt).input_ids, prompt


def test_found_through_comfyui_path(monkeypatch):
    folder = comfy_tokenizer_dir()
    monkeypatch.setenv("COMFYUI_PATH", str(folder.parents[1]))
    assert folder.resolve() in {f.resolve() for f in text.comfyui_tokenizer_dirs()}
    assert text.load_clip_tokenizer()("a photo of a cat").input_ids == CHECK_IDS


def test_diffusers_model_folder_with_tokenizer_subfolder(tmp_path):
    folder = comfy_tokenizer_dir()
    shutil.copytree(folder, tmp_path / "model" / "tokenizer")
    assert text.load_clip_tokenizer(tmp_path / "model")("a photo of a cat").input_ids == CHECK_IDS


def test_open_clip_merge_list_converts_to_the_same_vocabulary(tmp_path):
    folder = comfy_tokenizer_dir()
    bpe = write_open_clip_bpe(tmp_path, folder / "merges.txt")
    merges = text.read_bpe_merges(bpe)
    assert len(merges) == 48894
    vocab = text.clip_vocab_from_merges(merges)
    assert vocab == json.loads((folder / "vocab.json").read_text(encoding="utf-8"))


def test_open_clip_package_is_found_without_importing_it(tmp_path, monkeypatch):
    folder = comfy_tokenizer_dir()
    package = tmp_path / "site" / "open_clip"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n", encoding="utf-8")
    write_open_clip_bpe(package, folder / "merges.txt")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    if text.comfyui_tokenizer_dirs():
        pytest.skip("this checkout sits inside ComfyUI/custom_nodes, so ComfyUI's tokenizer comes first")
    tokenizer = text.load_clip_tokenizer()
    reference = text.load_clip_tokenizer(folder)
    for prompt in PROMPTS:
        assert tokenizer(prompt).input_ids == reference(prompt).input_ids, prompt


def test_tokenize_pads_with_end_token_and_cuts_long_prompts():
    tokenizer = text.load_clip_tokenizer(comfy_tokenizer_dir())
    ids = text.tokenize_prompts(tokenizer, ["a photo of a cat", "cat " * 100])
    assert ids.shape == (2, 77)
    assert ids[0, :7].tolist() == CHECK_IDS and (ids[0, 7:] == 49407).all()
    assert ids[1, 0] == 49406 and ids[1, -1] == 49407 and (ids[1, 1:-1] == 2368).all()


def test_encode_prompts_is_the_last_hidden_state_of_the_padded_ids():
    tokenizer = text.load_clip_tokenizer(comfy_tokenizer_dir())
    encoder = tiny_text_encoder()
    out = text.encode_prompts(encoder, tokenizer, ["a photo of a cat", ""])
    assert out.shape == (2, 77, 32) and out.dtype == torch.float32
    ids = torch.tensor([CHECK_IDS + [49407] * 70, [49406] + [49407] * 76])
    with torch.no_grad():
        expected = encoder(input_ids=ids).last_hidden_state
    torch.testing.assert_close(out, expected)
