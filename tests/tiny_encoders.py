"""Tiny random stand-ins for SD1.5's VAE and CLIP text encoder (same classes, tiny widths), for fast tests.

The text encoder has CLIP's 49408-token vocabulary and 77 positions, width 32 (the tiny UNet's
cross-attention width); the VAE downsamples by 8 into 4 latent channels, as SD1.5's does.
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from transformers import CLIPTextConfig, CLIPTextModel

TINY_WIDTH = 32


def tiny_text_encoder(seed: int = 0) -> CLIPTextModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = CLIPTextConfig(vocab_size=49408, hidden_size=TINY_WIDTH, intermediate_size=37, num_hidden_layers=2,
                                num_attention_heads=2, max_position_embeddings=77)
        return CLIPTextModel(config).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                             up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8),
                             layers_per_block=1, norm_num_groups=4, latent_channels=4, sample_size=64).eval()
