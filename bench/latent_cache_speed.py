"""Training-epoch time with and without the latent cache, side by side in one run.

The VAE has Stable Diffusion v1's encoder architecture (random weights, 84 M parameters); the U-Net is
the tiny one of `configs/tiny.yaml`, so the VAE encoder's share of a step is close to what it is at full
scale. One epoch over a phantom tree's PA training images, batch 4, one process:

    python bench/latent_cache_speed.py --studies 200 --image-size 64
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import SD_V1_VAE  # noqa: E402

from cxr_ldm.data import MimicCxrDataModule  # noqa: E402
from cxr_ldm.generation.sampling import build_pipeline  # noqa: E402
from cxr_ldm.models import LatentDiffusion  # noqa: E402
from cxr_ldm.phantom import generate_phantom  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def epoch_seconds(model: LatentDiffusion, data: MimicCxrDataModule) -> tuple[float, int]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    start, images = time.perf_counter(), 0
    for batch in data.train_dataloader():
        loss = model._shared_step(batch, "train")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        images += len(batch["prompt"])
    return time.perf_counter() - start, images


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="latent-cache-bench-"))
    generate_phantom(work / "phantom", args.studies, 128, seed=0, progress=False)
    init_args = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())["model"]["init_args"]
    init_args["components"]["vae_config"] = {**SD_V1_VAE, "sample_size": args.image_size}
    init_args["objective"] = {**init_args.get("objective", {}), "condition_dropout": 0.0}
    init_args.pop("trainable")
    torch.manual_seed(0)
    model = LatentDiffusion(**init_args)
    build_pipeline(model).save_pretrained(work / "pipeline")
    common = dict(
        root=str(work / "phantom"),
        image_size=args.image_size,
        batch_size=4,
        num_workers=0,
        no_finding_cap=None,
        cache_dir=str(work / "cache"),
    )
    plain = MimicCxrDataModule(**common)
    cached = MimicCxrDataModule(**common, latent_cache_vae=str(work / "pipeline"))
    plain.setup("fit")
    start = time.perf_counter()
    cached.prepare_data()
    build = time.perf_counter() - start
    cached.setup("fit")
    results = {}
    for name, data in (("encode every step", plain), ("latent cache", cached)):
        torch.manual_seed(0)
        results[name] = epoch_seconds(model, data)
        seconds, images = results[name]
        print(
            f"{name:>18}: one epoch of {images} images in {seconds:.1f} s ({images / seconds:.1f} images/s)"
        )
    print(f"latent cache built once in {build:.1f} s")
    print(f"speed-up of an epoch: {results['encode every step'][0] / results['latent cache'][0]:.1f}x")


if __name__ == "__main__":
    main()
