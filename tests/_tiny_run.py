"""Shared helpers for tests that run `python -m cxr_ldm fit` on the tiny config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cxr_ldm.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"


def cli_args(configs: list[Path], run_dir: Path, data_root: Path, cache_dir: Path, *extra: str) -> list[str]:
    """`fit` on `configs` (merged in order), reading the phantom tree at `data_root`, writing under `run_dir`."""
    args = ["fit"]
    for config in configs:
        args += ["--config", str(config)]
    return [
        *args,
        "--data.init_args.root",
        str(data_root),
        "--data.init_args.cache_dir",
        str(cache_dir),
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.logger.init_args.save_dir",
        str(run_dir),
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]


def fit_args(run_dir: Path, data_root: Path, *extra: str) -> list[str]:
    """`fit` on the tiny config."""
    return cli_args([TINY], run_dir, data_root, run_dir / "cache", *extra)


def run_fit(run_dir: Path, data_root: Path, *extra: str) -> Path:
    """Run fit in-process; return the checkpoint folder."""
    assert main(fit_args(run_dir, data_root, *extra)) == 0
    return run_dir / "checkpoints"


def with_changes(init_args: dict, **changes) -> dict:
    """LatentDiffusion keyword arguments: a config's `model.init_args` mapping with `changes` applied.

    A change names a whole argument (`trainable`, `lora`, `components`, ...; a part given as a mapping
    is merged into the config's) or one field of a part by the field's name (`snr_gamma`, `unet_config`;
    `ema_decay` for `ema.decay`), which lands in its part.
    """
    from cxr_ldm.models.diffusion_parts import FLAT_ARGUMENTS, PARTS

    args = {key: dict(value) if key in PARTS else value for key, value in init_args.items()}
    for key, value in changes.items():
        if key in PARTS:
            args[key] = {**args.get(key, {}), **(value or {})}
        elif key in FLAT_ARGUMENTS:
            part, field = FLAT_ARGUMENTS[key]
            args[part] = {**args.get(part, {}), field: value}
        else:
            args[key] = value
    return args


def tiny_init_args(**changes) -> dict:
    """The tiny config's model arguments, for models built in Python, with `changes` (see `with_changes`)."""
    import yaml

    return with_changes(yaml.safe_load(TINY.read_text())["model"]["init_args"], **changes)


def domain_encoder_init_args(**overrides) -> dict:
    """Tiny U-Net (384-wide cross-attention) with the pretrained 384-wide MiniLM (BERT family) encoder."""
    import yaml

    args = tiny_init_args()
    for name in ("tiny-components.yaml", "tiny-domain-encoder.yaml"):
        layer = yaml.safe_load((ROOT / "configs" / "overrides" / name).read_text())["model"]["init_args"]
        args = with_changes(args, **layer)
    return with_changes(args, **overrides)


def tiny_batches(count: int = 4, size: int = 32):
    """Batches of random images with two prompts, for fits of models built in Python."""
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(0)
    rows = [
        {"pixel_values": torch.rand(1, size, size, generator=generator) * 2 - 1, "prompt": p}
        for p in ["normal", "pleural effusion"] * (count // 2)
    ]
    return DataLoader(rows, batch_size=2)


def tiny_trainer(root, **overrides):
    """A quiet CPU Trainer of two steps writing nothing unless `overrides` say so."""
    from lightning import Trainer

    settings = dict(
        accelerator="cpu",
        max_steps=2,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    settings.update(overrides)
    return Trainer(**settings)


def load_state(path: Path) -> dict:
    """A Lightning checkpoint file's contents (state_dict, global_step, optimizer states), on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=False)


def write_pairs(root: Path, count: int = 12, size: int = 40) -> Path:
    """A small image/prompt folder (ImageTextFolderDataModule layout)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["file_name,prompt"]
    for index in range(count):
        pixels = (rng.random((size, size)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{index}.png")
        rows.append(f"{index}.png,{'normal' if index % 2 else 'pleural effusion'}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root
