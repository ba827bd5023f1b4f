"""`python -m cxr_ldm.demo.pretrain --out artifacts/tiny-pretrained`: the demo's tiny "pretrained" pipeline.

Honest by construction: it trains on a phantom drawn with another seed than the demo's data (so never on
the demo's test images) and with one generic prompt (so never on the demo's prompts). Stage 1 trains the
VAE (L1 + a tiny KL, as Stable Diffusion's VAE: a weak KL keeps the small findings in the latents);
stage 2 trains the U-Net on the frozen VAE's latents, encoded once. Everything is seeded; the result is a
diffusers pipeline directory (`StableDiffusionPipeline.from_pretrained` loads it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cxr_ldm.demo.tiny_components import (
    GENERIC_PROMPT,
    IMAGE_SIZE,
    TEXT_ENCODER_CONFIG,
    UNET_CONFIG,
    VAE_CONFIG,
)

PHANTOM_SEED = 1  # the demo's data uses seed 0


def phantom_images(root: Path, studies: int, cache_dir: Path) -> torch.Tensor:
    """Every PA/AP image of a fresh phantom (seed 1) as (N, 3, 64, 64) in [-1, 1]."""
    from cxr_ldm.data import MimicCxrDataModule
    from cxr_ldm.phantom import generate_phantom

    if not (root / "phantom-manifest.json").is_file():
        generate_phantom(root, studies, IMAGE_SIZE, PHANTOM_SEED, progress=False)
    datamodule = MimicCxrDataModule(
        root=str(root), views=["PA", "AP"], max_chars=None, no_finding_cap=None, split="seeded",
        split_ratios=(1.0, 0.0, 0.0), image_size=IMAGE_SIZE, channels=3, num_workers=0, cache_dir=str(cache_dir),
    )  # fmt: skip
    datamodule.setup()
    data = datamodule.datasets["train"]
    return torch.stack([data[i]["pixel_values"] for i in range(len(data))])


def batches(images: torch.Tensor, batch_size: int, steps: int, generator: torch.Generator):
    for _ in range(steps):
        yield images[torch.randint(len(images), (batch_size,), generator=generator)]


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, steps: int):
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)


def train_vae(
    model, images: torch.Tensor, steps: int, batch_size: int, seed: int, kl_weight: float = 1e-6
) -> float:
    """Stage 1: L1 reconstruction + KL; returns the final L1 on a fixed batch."""
    generator = torch.Generator().manual_seed(seed)
    vae = model.vae.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    schedule = one_cycle(optimizer, 2e-3, steps)
    started = time.perf_counter()
    for step, batch in enumerate(batches(images, batch_size, steps, generator)):
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(generator=None)).sample
        loss = F.l1_loss(recon, batch) + kl_weight * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            print(
                f"vae step {step}: loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s)", flush=True
            )
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        fixed = images[:64]
        return float(F.l1_loss(vae.decode(vae.encode(fixed).latent_dist.mode()).sample, fixed))


def encode_all(model, images: torch.Tensor) -> torch.Tensor:
    """Posterior parameters (mean and log-variance) of every image: the U-Net stage never runs the encoder."""
    with torch.no_grad():
        return torch.cat(
            [model.vae.encode(images[i : i + 64]).latent_dist.parameters for i in range(0, len(images), 64)]
        )


def set_latent_scale(model, parameters: torch.Tensor) -> float:
    """Scale latents to unit variance, as Stable Diffusion's 0.18215 does for its VAE."""
    means = parameters[:, : parameters.shape[1] // 2]
    scale = float(1.0 / means.std())
    model.vae.register_to_config(scaling_factor=scale)
    model.vae_scale = scale
    return scale


def train_unet(model, parameters: torch.Tensor, steps: int, batch_size: int, seed: int) -> float:
    """Stage 2: the diffusion loss with one generic prompt (10% dropped to empty for guidance)."""
    generator = torch.Generator().manual_seed(seed)
    model.unet.train()
    optimizer = torch.optim.AdamW(model.unet.parameters(), lr=1e-3)
    schedule = one_cycle(optimizer, 1e-3, steps)
    ema, started = 0.0, time.perf_counter()
    for step, batch in enumerate(batches(parameters, batch_size, steps, generator)):
        loss = model._shared_step(
            {"latent_parameters": batch, "prompt": [GENERIC_PROMPT] * len(batch)}, "train"
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        ema = loss.item() if step == 0 else 0.98 * ema + 0.02 * loss.item()
        if step % 100 == 0:
            print(f"unet step {step}: loss {ema:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    model.unet.eval()
    return ema


def build_pretrained(
    out: Path, work: Path, studies: int = 2000, vae_steps: int = 1200, unet_steps: int = 2000, batch_size: int = 32,
    seed: int = 0,
) -> dict:  # fmt: skip
    """Train both stages and export the pipeline to `out`; returns what was done (also `out/pretrain.json`)."""
    from cxr_ldm.export import export_pipeline
    from cxr_ldm.models import LatentDiffusion, Trainable

    torch.manual_seed(seed)
    start = time.perf_counter()
    images = phantom_images(work / f"phantom-pretrain-{studies}", studies, work / "cache")
    model = LatentDiffusion(
        vae_config=VAE_CONFIG, unet_config=UNET_CONFIG, text_encoder_config=TEXT_ENCODER_CONFIG,
        tokenizer_name_or_path="clip", trainable={"unet": Trainable(lr=1e-3)}, condition_dropout=0.1,
    )  # fmt: skip
    l1 = train_vae(model, images, vae_steps, batch_size, seed)
    parameters = encode_all(model, images)
    scale = set_latent_scale(model, parameters)
    loss = train_unet(model, parameters, unet_steps, batch_size, seed + 1)
    if out.exists():
        shutil.rmtree(out)
    export_pipeline(model, out, ema=False, scheduler="ddim")
    info = {
        "phantom_seed": PHANTOM_SEED, "studies": studies, "images": len(images), "prompt": GENERIC_PROMPT,
        "vae_steps": vae_steps, "unet_steps": unet_steps, "batch_size": batch_size, "seed": seed,
        "vae_l1": round(l1, 4), "latent_scale": round(scale, 4), "unet_loss": round(loss, 4),
        "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    (out / "pretrain.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cxr_ldm.demo.pretrain", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="artifacts/tiny-pretrained")
    parser.add_argument("--work", default="runs/tiny-pretrain", help="phantom and caches (not committed)")
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--vae-steps", type=int, default=1200)
    parser.add_argument("--unet-steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    info = build_pretrained(
        Path(args.out),
        Path(args.work),
        args.studies,
        args.vae_steps,
        args.unet_steps,
        args.batch_size,
        args.seed,
    )
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
