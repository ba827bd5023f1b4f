"""Stable Diffusion v1.x training throughput on a GPU, with random weights of the real shapes.

Builds the `CompVis/stable-diffusion-v1-4` architecture (U-Net 860 M, VAE 84 M, CLIP ViT-L/14 text
encoder 123 M) from config, so nothing is downloaded, and times U-Net (optionally + text encoder)
training steps at 512 px in bf16 autocast. Prints images/s and peak memory for each variant in one run:

    python bench/gpu_sd_train.py --batch-size 8 --steps 20
    python bench/gpu_sd_train.py --batch-size 8 --steps 20 --train-text-encoder --gradient-checkpointing

For a lent machine without diffusers/jsonargparse installed, carry wheels (`pip download -d wheels
diffusers jsonargparse torchxrayvision`) and `pip install --no-deps wheels/*.whl` before running.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import time_steps  # noqa: E402

from cxr_ldm.models import LatentDiffusion, Trainable  # noqa: E402

SD_V1_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "sample_size": 512,
}
SD_V1_UNET = {
    "sample_size": 64,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
}
CLIP_VIT_L14_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--train-text-encoder", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit(
            "gpu_sd_train.py needs a CUDA device; on a CPU use bench/train_speed.py with configs/tiny.yaml"
        )
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    trainable = {"unet": Trainable(lr=5e-5)}
    if args.train_text_encoder:
        trainable["text_encoder"] = Trainable(lr=5e-5)
    model = LatentDiffusion(
        vae_config=SD_V1_VAE,
        unet_config=SD_V1_UNET,
        text_encoder_config=CLIP_VIT_L14_TEXT,
        tokenizer_name_or_path="clip",
        trainable=trainable,
        condition_dropout=0.0,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    counts = {name: sum(p.numel() for p in m.parameters()) / 1e6 for name, m in model.components().items()}
    print("parameters (M):", {k: round(v, 1) for k, v in counts.items()})
    result = time_steps(model, args.steps, args.warmup, args.batch_size, args.image_size, "bf16")
    trained = "+".join(trainable)
    print(
        f"{result['device']}: train {trained} @ {args.image_size}px bf16, batch {args.batch_size}: "
        f"{result['images_per_s']:.1f} images/s, peak {result['peak_mem_gib']:.1f} GiB"
    )


if __name__ == "__main__":
    main()
