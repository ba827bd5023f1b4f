"""Generate K images per prompt into an image/prompt folder (`metadata.csv`), resumable and sharded.

Image i (prompt i // K, sample i % K) is `images/{i:06d}.png` with seed `seed + i`, so a rerun, another
batch size or another number of processes gives the same image for the same i. Under torch.distributed
(or RANK / WORLD_SIZE) rank r draws images r, r + W, r + 2W, ...; rank 0 writes metadata.csv after a
barrier, atomically.

`generation.json` records what made the folder (model fingerprint, prompts, seed, sampler, steps, guidance,
images per prompt). A rerun into the same folder with other inputs is refused with a message naming the
difference, unless `overwrite` deletes the old images first; a rerun with the same inputs (or with more
prompts after the same ones) resumes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from tqdm import tqdm

from cxr_ldm.data.atomic import atomic_path, clean_stale_temporaries, write_text_atomic
from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.errors import ConfigError
from cxr_ldm.generation.prompt_records import PromptRecord
from cxr_ldm.labels import CHEXPERT_LABELS
from cxr_ldm.output_folders import check_output_folder

METADATA = "metadata.csv"
RECORD = "generation.json"
# The settings that change an image; batch size does not.
RECORDED_SETTINGS = ("per_prompt", "guidance_scale", "num_inference_steps", "scheduler", "seed")
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

    def __post_init__(self) -> None:
        from cxr_ldm.errors import ConfigError

        for name, option in (("per_prompt", "--per-prompt"), ("num_inference_steps", "--steps"),
                             ("batch_size", "--batch-size")):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{option} ({name}) must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.guidance_scale < float("inf"):
            raise ConfigError(
                f"--guidance (guidance_scale) must be a finite number >= 0, got {self.guidance_scale}"
            )


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
    with atomic_path(path) as tmp:
        Image.fromarray(gray, mode="L").save(tmp, format="PNG")


def model_fingerprint(path: str | Path) -> str:
    """sha256 (16 hex digits) of a checkpoint file's bytes, or of a pipeline folder's file names and bytes."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def generation_record(records: list[PromptRecord], settings: GenerationSettings, model: str | None) -> dict:
    """What makes the images of a folder: the model, the prompts in order and the sampling settings."""
    return {
        "version": 1,
        "model": model,
        **{name: getattr(settings, name) for name in RECORDED_SETTINGS},
        "prompts": [record.prompt for record in records],
    }


def record_differences(old: dict, new: dict) -> list[str]:
    """How two generation records differ, in words; a prompt list that extends the other is no difference."""
    changes = []
    if old.get("model") and new.get("model") and old["model"] != new["model"]:
        changes.append(f"model {old['model']} (now {new['model']})")
    for name in RECORDED_SETTINGS:
        if old.get(name) != new.get(name):
            changes.append(f"{name} {old.get(name)!r} (now {new.get(name)!r})")
    before, after = old.get("prompts", []), new.get("prompts", [])
    for index, (was, now) in enumerate(zip(before, after, strict=False)):
        if was != now:
            changes.append(f"prompt {index} {was!r} (now {now!r})")
            break
    return changes


def _claim_folder(out: Path, record: dict, overwrite: bool, rank: int) -> None:
    """Refuse a folder made with other inputs (or by an unknown run), or clear it when `overwrite`."""
    images = sorted((out / "images").glob("*.png")) if (out / "images").is_dir() else []
    path = out / RECORD
    old = json.loads(path.read_text()) if path.is_file() else None
    if overwrite:
        if rank == 0:
            for image in images:
                image.unlink(missing_ok=True)
            (out / METADATA).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        old = None
    elif old is None and (images or (out / METADATA).is_file()):
        raise ConfigError(
            f"--out {out} already holds {len(images)} images but no {RECORD} saying what made them; "
            "give a new --out, or add --overwrite to delete them"
        )
    elif old is not None:
        changes = record_differences(old, record)
        if changes:
            raise ConfigError(
                f"--out {out} holds images made with other inputs: {'; '.join(changes)}; "
                "give a new --out, or add --overwrite to delete them"
            )
    # Every rank writes the same record (atomically): ranks sharded by RANK / WORLD_SIZE alone may run at
    # different times, and the first one to start claims the folder.
    merged = dict(record)
    if old is not None:
        merged["model"] = record["model"] or old.get("model")
        if len(old.get("prompts", [])) > len(record["prompts"]):
            merged["prompts"] = old["prompts"]
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(merged, indent=1) + "\n")


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
    model: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Draw every missing image of this rank's shard, then (rank 0, after a barrier) write metadata.csv.

    `model` identifies the model in `generation.json` (`model_fingerprint` of its file); `overwrite` deletes
    images made with other inputs instead of refusing the folder.
    """
    out = check_output_folder(out, "--out", "the images")
    rank, world = rank_and_world()
    _claim_folder(out, generation_record(records, settings, model), overwrite, rank)
    if world > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()
    (out / "images").mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out / "images", recursive=False)
    total = len(records) * settings.per_prompt
    todo = [i for i in range(rank, total, world) if not (out / image_name(i)).is_file()]
    if todo and rank == 0:
        from cxr_ldm.data.prompt_length import text_limits, warn_overlong

        tokenizer, limit = text_limits(getattr(source, "model", None) or getattr(source, "pipeline", None))
        warn_overlong(tokenizer, [r.prompt for r in records], limit, "the prompts to generate from")
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
            raise ConfigError(
                f"{len(missing)} images are missing in {out} (first {image_name(missing[0])}), drawn by other "
                f"ranks of {world}: run them (torchrun runs every rank at once), then rank 0 again: it writes "
                "metadata.csv once every image is there"
            )
        write_text_atomic(out / METADATA, metadata_text(records, settings))
    return out


def read_generated(
    root: str | Path, per_prompt: int | None = None, image_size: int | None = None, limit: int | None = None
) -> ImageSet:
    """Read an image/prompt folder written by `generate_images` (or any folder with file_name, prompt).

    `per_prompt` keeps the first `per_prompt` samples of every prompt (when metadata.csv has `sample_index`),
    `image_size` resizes (bicubic) images of another size, `limit` keeps the first `limit` rows after that.
    ids are the file names; `prompt_index` is the metadata's column, else the prompts numbered in order.
    """
    import pandas as pd

    root = Path(root)
    if not (root / METADATA).is_file():
        raise ConfigError(
            f"--generated {root} has no {METADATA}; run `python -m cxr_ldm generate --out {root}`"
        )
    from cxr_ldm.data.table_files import check_complete

    check_complete(root / METADATA, require_final_newline=False)
    # An empty prompt stays empty (never the text "nan"); label cells become numbers below.
    try:
        frame = pd.read_csv(root / METADATA, dtype={"prompt": str, "file_name": str}, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ConfigError(
            f"{root / METADATA} is empty (generation was cut short before it was written); run "
            f"`python -m cxr_ldm generate --out {root}` with the same model and prompts again to finish the "
            f"folder (it keeps the images drawn), or delete {root}"
        ) from None
    missing = {"file_name", "prompt"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{root / METADATA} lacks the column(s) {sorted(missing)}")
    if per_prompt is not None and "sample_index" in frame.columns:
        frame = frame[pd.to_numeric(frame["sample_index"]) < per_prompt]
    if limit is not None:
        frame = frame.iloc[:limit]
    pixels = []
    for name in frame["file_name"]:
        try:
            with Image.open(root / name) as image:
                gray = image.convert("L")
        except (OSError, SyntaxError) as error:  # missing, or cut short by a killed writer outside this tool
            raise ConfigError(
                f"{root / METADATA} lists {name}, which cannot be read ({error.__class__.__name__}); draw the "
                f"folder's missing images again (`generate` resumes into it) or delete {root}"
            ) from None
        if image_size is not None and gray.size != (image_size, image_size):
            gray = gray.resize((image_size, image_size), Image.BICUBIC)
        pixels.append(np.asarray(gray, dtype=np.uint8))
    labels = np.full((len(frame), len(CHEXPERT_LABELS)), np.nan, dtype=np.float32)
    for j, name in enumerate(CHEXPERT_LABELS):
        if name in frame.columns:
            labels[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float32)
    groups = (
        frame["prompt_index"].tolist()
        if "prompt_index" in frame
        else pd.factorize(frame["prompt"])[0].tolist()
    )
    images = (
        torch.from_numpy(np.stack(pixels))[:, None] if pixels else torch.zeros(0, 1, 1, 1, dtype=torch.uint8)
    )
    return ImageSet(
        images,
        torch.from_numpy(labels),
        frame["prompt"].astype(str).tolist(),
        frame["file_name"].astype(str).tolist(),
        prompt_index=[int(g) for g in groups],
    )
