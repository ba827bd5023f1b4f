"""Training steps per second of a LatentDiffusion config, on whatever device is present.

Times `training_step` + backward + optimizer step on random batches of the config's image size, after
warm-up, so data loading is excluded. Compare configs side by side in one run:

    python bench/train_speed.py --config configs/tiny.yaml --steps 20 --batch-size 4 --image-size 32
    python bench/train_speed.py --config configs/tiny.yaml --gradient-checkpointing   # same run, other option
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml
from jsonargparse import ArgumentParser

from cxr_ldm.models import LatentDiffusion


def build_model(config_path: str, overrides: dict) -> LatentDiffusion:
    parser = ArgumentParser()
    parser.add_class_arguments(LatentDiffusion, "model")
    init_args = yaml.safe_load(open(config_path))["model"]["init_args"]
    for part, fields in overrides.items():  # {part: {field: value}}
        init_args[part] = {**(init_args.get(part) or {}), **fields}
    namespace = parser.parse_object({"model": init_args})
    return parser.instantiate_classes(namespace).model


def time_steps(
    model: LatentDiffusion, steps: int, warmup: int, batch: int, size: int, precision: str
) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    pixels = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    prompts = ["small right pleural effusion"] * batch

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model._shared_step({"pixel_values": pixels, "prompt": prompts}, "train")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()}",
        "steps_per_s": steps / seconds,
        "images_per_s": steps * batch / seconds,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    variants = {"as configured": {}}
    if args.gradient_checkpointing:
        variants["gradient checkpointing"] = {"speed": {"gradient_checkpointing": True}}
    results = {}
    for name, overrides in variants.items():
        model = build_model(
            args.config, {"objective": {"condition_dropout": 0.0}, "ema": {"decay": None}, **overrides}
        )
        results[name] = time_steps(
            model, args.steps, args.warmup, args.batch_size, args.image_size, args.precision
        )
        print(f"{name:>24}: {results[name]}")
    if len(results) == 2:
        base, other = results.values()
        print(f"ratio (checkpointing / plain): {other['images_per_s'] / base['images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
