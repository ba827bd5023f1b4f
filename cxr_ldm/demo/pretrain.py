"""`python -m cxr_ldm.demo.pretrain --out artifacts/tiny-pretrained`: the demo's tiny "pretrained" pipeline.

Honest by construction: it trains on a phantom drawn with another seed than the demo's data (so never on
the demo's test images) and with captions that name only the view ("a PA chest x-ray", "an AP chest
x-ray"; never a finding, so never the demo's prompts). Stage 1 trains the VAE (L1 + a tiny KL, as Stable
Diffusion's VAE: a weak KL keeps the small findings in the latents); stage 2 trains the U-Net and the text
encoder on the frozen VAE's latents, encoded once. The captions matter: with one constant caption the U-Net
learns to ignore its cross-attention, and a short fine-tune cannot teach it to read text again; a
pretrained text-to-image model reads its captions, and so must this stand-in for one. Everything is
seeded; the result is a diffusers pipeline directory (`StableDiffusionPipeline.from_pretrained` loads it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from cxr_ldm.demo.tiny_components import (
    IMAGE_SIZE,
    TEXT_ENCODER_CONFIG,
    UNET_CONFIG,
    VAE_CONFIG,
    VIEW_CAPTIONS,
)

PHANTOM_SEED = 1  # the demo's data uses seed 0
KL_WEIGHT = 1e-6


def phantom_images(root: Path, studies: int, cache_dir: Path) -> tuple[torch.Tensor, list[str]]:
    """Every PA/AP image of a fresh phantom (seed 1) as (N, 3, 64, 64) in [-1, 1], and its view caption."""
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
    items = [data[i] for i in range(len(data))]
    return torch.stack([item["pixel_values"] for item in items]), [
        view_caption(item["view"]) for item in items
    ]


def view_caption(view: str) -> str:
    return VIEW_CAPTIONS["AP" if view.upper().startswith("AP") else "PA"]


def batches(count: int, batch_size: int, steps: int, generator: torch.Generator):
    """Row indices of `steps` random batches."""
    for _ in range(steps):
        yield torch.randint(count, (batch_size,), generator=generator)


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, steps: int):
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)


def train_vae(
    model, images: torch.Tensor, steps: int, batch_size: int, seed: int, kl_weight: float = KL_WEIGHT
) -> float:
    """Stage 1: L1 reconstruction + KL; returns the final L1 on a fixed batch."""
    generator = torch.Generator().manual_seed(seed)
    vae = model.vae.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    schedule = one_cycle(optimizer, 2e-3, steps)
    started = time.perf_counter()
    for step, rows in enumerate(batches(len(images), batch_size, steps, generator)):
        batch = images[rows]
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


def train_unet(
    model, parameters: torch.Tensor, captions: list[str], steps: int, batch_size: int, seed: int
) -> float:
    """Stage 2: the diffusion loss, U-Net and text encoder, on view captions (10% dropped for guidance)."""
    generator = torch.Generator().manual_seed(seed)
    model.unet.train()
    model.text.encoder.train()
    trained = [*model.unet.parameters(), *model.text.encoder.parameters()]
    optimizer = torch.optim.AdamW(trained, lr=1e-3)
    schedule = one_cycle(optimizer, 1e-3, steps)
    ema, started = 0.0, time.perf_counter()
    for step, rows in enumerate(batches(len(parameters), batch_size, steps, generator)):
        prompts = [captions[i] for i in rows.tolist()]
        loss = model._shared_step({"latent_parameters": parameters[rows], "prompt": prompts}, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        ema = loss.item() if step == 0 else 0.98 * ema + 0.02 * loss.item()
        if step % 100 == 0:
            print(f"unet step {step}: loss {ema:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    model.unet.eval()
    model.text.encoder.eval()
    return ema


def stage1_key(studies: int, vae_steps: int, batch_size: int, seed: int) -> str:
    """Names a finished stage 1 (the VAE) by everything that decides it, so a rerun of stage 2 reuses it."""
    settings = [PHANTOM_SEED, studies, vae_steps, batch_size, seed, VAE_CONFIG, KL_WEIGHT]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def build_pretrained(
    out: Path, work: Path, studies: int = 2000, vae_steps: int = 1200, unet_steps: int = 4000, batch_size: int = 32,
    seed: int = 0,
) -> dict:  # fmt: skip
    """Train both stages and export the pipeline to `out`; returns what was done (also `out/pretrain.json`)."""
    from cxr_ldm.export import export_pipeline
    from cxr_ldm.models import LatentDiffusion, Trainable

    torch.manual_seed(seed)
    start = time.perf_counter()
    images, captions = phantom_images(work / f"phantom-pretrain-{studies}", studies, work / "cache")
    model = LatentDiffusion(
        vae_config=VAE_CONFIG, unet_config=UNET_CONFIG, text_encoder_config=TEXT_ENCODER_CONFIG,
        tokenizer_name_or_path="clip", trainable={"unet": Trainable(lr=1e-3), "text_encoder": Trainable(lr=1e-3)},
        condition_dropout=0.1,
    )  # fmt: skip
    stage1 = work / f"stage1-vae-{stage1_key(studies, vae_steps, batch_size, seed)}"
    reused = (stage1 / "config.json").is_file()
    if reused:  # stage 1 of an earlier run with the same settings
        model.vae.load_state_dict(AutoencoderKL.from_pretrained(stage1).state_dict())
        model.vae.eval().requires_grad_(False)
        l1 = json.loads((stage1 / "stage1.json").read_text())["vae_l1"]
    else:
        l1 = train_vae(model, images, vae_steps, batch_size, seed)
        model.vae.save_pretrained(stage1)
        (stage1 / "stage1.json").write_text(json.dumps({"vae_l1": l1}) + "\n")
    parameters = encode_all(model, images)
    scale = set_latent_scale(model, parameters)
    loss = train_unet(model, parameters, captions, unet_steps, batch_size, seed + 1)
    if out.exists():
        shutil.rmtree(out)
    export_pipeline(model, out, ema=False, scheduler="ddim")
    info = {
        "phantom_seed": PHANTOM_SEED, "studies": studies, "images": len(images),
        "captions": {c: captions.count(c) for c in sorted(set(captions))},
        "vae_steps": vae_steps, "unet_steps": unet_steps, "batch_size": batch_size, "seed": seed,
        "vae_l1": round(l1, 4), "stage1_reused": reused, "latent_scale": round(scale, 4), "unet_loss": round(loss, 4),
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
    parser.add_argument("--unet-steps", type=int, default=4000)
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
