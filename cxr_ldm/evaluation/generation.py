"""Generate K images per prompt into an image/prompt folder (`metadata.csv`), resumable and sharded.

Image i (prompt i // K, sample i % K) is `images/{i:06d}.png` with seed `seed + i`, so a rerun, another
batch size or another number of processes gives the same image for the same i. Under torch.distributed
(or RANK / WORLD_SIZE) rank r draws images r, r + W, r + 2W, ...; rank 0 writes metadata.csv after a
barrier, atomically.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from tqdm import tqdm

from cxr_ldm.data.atomic import write_text_atomic
from cxr_ldm.evaluation.prompt_source import PromptRecord
from cxr_ldm.labels import CHEXPERT_LABELS

METADATA = "metadata.csv"
COLUMNS = [
    "file_name",
    "prompt",
    *CHEXPERT_LABELS,
    "seed",
    "prompt_index",
    "sample_index",
    "study_id",
    "dicom_id",
]


@dataclass(frozen=True)
class GenerationSettings:
    per_prompt: int = 4
    guidance_scale: float = 4.0
    # DPM-Solver++ 15: as PNDM 75 within its seed-to-seed spread (bench/sampler_equivalence.py), 5x fewer passes.
    num_inference_steps: int = 15
    scheduler: str = "dpm++"
    seed: int = 0
    batch_size: int = 8


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size: torch.distributed if initialised, else RANK / WORLD_SIZE."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def image_name(index: int) -> str:
    return f"images/{index:06d}.png"


def save_png(image: torch.Tensor, path: Path) -> None:
    """(C, H, W) in [0, 1] -> 8-bit grayscale PNG, written to a temporary name first."""
    gray = image.float().mean(dim=0).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(gray, mode="L").save(tmp, format="PNG")
    os.replace(tmp, path)


def metadata_text(records: list[PromptRecord], settings: GenerationSettings) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for index in range(len(records) * settings.per_prompt):
        record = records[index // settings.per_prompt]
        labels = ["" if record.labels.get(n) is None else record.labels[n] for n in CHEXPERT_LABELS]
        writer.writerow(
            [
                image_name(index),
                record.prompt,
                *labels,
                settings.seed + index,
                index // settings.per_prompt,
                index % settings.per_prompt,
                record.study_id,
                record.dicom_id,
            ]  # fmt: skip
        )
    return buffer.getvalue()


def generate_images(
    source,
    records: list[PromptRecord],
    out: str | Path,
    settings: GenerationSettings = GenerationSettings(),  # noqa: B008 - frozen dataclass
    progress: bool = True,
) -> Path:
    """Draw every missing image of this rank's shard, then (rank 0, after a barrier) write metadata.csv."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()
    total = len(records) * settings.per_prompt
    todo = [i for i in range(rank, total, world) if not (out / image_name(i)).is_file()]
    bar = tqdm(total=len(todo), desc=f"generate (rank {rank})", unit="img", disable=not progress)
    for start in range(0, len(todo), settings.batch_size):
        chunk = todo[start : start + settings.batch_size]
        images = source.sample(
            [records[i // settings.per_prompt].prompt for i in chunk],
            [settings.seed + i for i in chunk],
            num_inference_steps=settings.num_inference_steps,
            guidance_scale=settings.guidance_scale,
            scheduler=settings.scheduler,
        )
        for i, image in zip(chunk, images, strict=True):
            save_png(image, out / image_name(i))
        bar.update(len(chunk))
    bar.close()
    if world > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()
    if rank == 0:
        missing = [i for i in range(total) if not (out / image_name(i)).is_file()]
        if missing:
            raise RuntimeError(f"{len(missing)} images are missing in {out} (first {image_name(missing[0])})")
        write_text_atomic(out / METADATA, metadata_text(records, settings))
    return out


@dataclass
class GeneratedSet:
    """A generated folder read back: images (N, 1, H, W) in [0, 1], prompts, labels (N, 14) NaN = unknown."""

    images: torch.Tensor
    prompts: list[str]
    labels: torch.Tensor
    prompt_index: list[int]
    root: Path


def read_generated(root: str | Path, limit: int | None = None) -> GeneratedSet:
    """Read an image/prompt folder written by `generate_images` (or any folder with file_name, prompt)."""
    import pandas as pd

    from cxr_ldm.errors import ConfigError

    root = Path(root)
    if not (root / METADATA).is_file():
        raise ConfigError(
            f"--generated {root} has no {METADATA}; run `python -m cxr_ldm generate --out {root}`"
        )
    frame = pd.read_csv(root / METADATA, keep_default_na=True)
    missing = {"file_name", "prompt"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{root / METADATA} lacks the column(s) {sorted(missing)}")
    if limit is not None:
        frame = frame.iloc[:limit]
    pixels = []
    for name in frame["file_name"]:
        with Image.open(root / name) as image:
            pixels.append(np.asarray(image.convert("L"), dtype=np.float32) / 255.0)
    labels = np.full((len(frame), len(CHEXPERT_LABELS)), np.nan, dtype=np.float32)
    for j, name in enumerate(CHEXPERT_LABELS):
        if name in frame.columns:
            labels[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float32)
    groups = (
        frame["prompt_index"].tolist()
        if "prompt_index" in frame
        else pd.factorize(frame["prompt"])[0].tolist()
    )
    return GeneratedSet(
        torch.from_numpy(np.stack(pixels))[:, None],
        frame["prompt"].astype(str).tolist(),
        torch.from_numpy(labels),
        [int(g) for g in groups],
        root,
    )
