"""The demo's tiny "pretrained" pipeline from three `fit` configs (`python -m cxr_ldm.experiments.tiny_pretrained`).

Honest by construction: its images are a phantom drawn with another seed (1) than the demo's data (0), so
never the demo's test images, with captions that name only the view, never a finding (so the U-Net never
sees an image paired with a finding's name). Stage 0, `configs/pretrain/tiny-text.yaml`, teaches the CLIP
text encoder language from text alone (`TextLanguageModel`: next-token prediction on real report sentences),
as Stable Diffusion's CLIP knew English before its U-Net was trained. Stage 1, `configs/pretrain/tiny-vae.yaml`,
trains the VAE (`Autoencoder`: L1 + 1e-6 KL). Between stages 1 and 2 the trained VAE encodes the training
images once more to measure its latent scale, 1 / std of the posterior means (as Stable Diffusion's 0.18215
scales its VAE's latents to unit variance), and is saved with that `scaling_factor` in its config. Stage 2,
`configs/pretrain/tiny-unet.yaml`, trains the U-Net with the diffusion loss on that frozen VAE's latent cache
and stage 0's frozen text encoder. Every stage runs through `cxr_ldm.training.fit`, as
`python -m cxr_ldm fit --config ...` would; the result is exported with `export_pipeline` as a diffusers
`StableDiffusionPipeline` directory plus `pretrain.json`.

Resumable: each stage works in its own folder under `work`, named by everything that decides it (budgets,
seed, config file; stage 0 also the report archive's content); a finished stage leaves `done.json` there and is never rerun, an interrupted one resumes
from its last checkpoint (`ckpt_path="auto"`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader

from cxr_ldm.data.file_identity import file_digest
from cxr_ldm.data.report_corpus import iu_reports_archive
from cxr_ldm.errors import ConfigError
from cxr_ldm.training.config_files import parse_fit_config
from cxr_ldm.training.fit import fit

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "pretrain"
TEXT_STAGE_CONFIG = CONFIG_DIR / "tiny-text.yaml"
VAE_STAGE_CONFIG = CONFIG_DIR / "tiny-vae.yaml"
UNET_STAGE_CONFIG = CONFIG_DIR / "tiny-unet.yaml"
PHANTOM_SEED = 1  # the demo's data uses seed 0
DONE = "done.json"  # a finished stage's marker (and what it recorded)
TEXT_MODEL = "language_model"  # stage 0's text encoder and tokenizer, in its folder
WARMUP_FRACTION = 0.05  # of each stage's steps: the warm-up of its one-cycle-like schedule
VAE_DOWNSAMPLING = 4  # configs/pretrain/tiny-vae.yaml: three blocks, two downsamplings


def _key(settings: list) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _short_digest(path: Path) -> str:
    return file_digest(path)[:12]  # the stage folders' keys keep the 12 hex digits they were made with


def _read_done(folder: Path) -> dict | None:
    marker = folder / DONE
    return json.loads(marker.read_text()) if marker.is_file() else None


def _write_done(folder: Path, record: dict) -> None:
    tmp = folder / f".{DONE}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(folder / DONE)


def pretraining_phantom(root: Path, studies: int, image_size: int) -> None:
    """The pretraining phantom (seed 1), made once."""
    from cxr_ldm.phantom import generate_phantom

    if not (root / "phantom-manifest.json").is_file():
        generate_phantom(root, studies, image_size, PHANTOM_SEED, progress=False)


def _train_seconds(trainer) -> float | None:
    """The training loop's own time (the configs' `Timer` callback), without setup and cache building."""
    from lightning.pytorch.callbacks import Timer

    timers = [c for c in trainer.callbacks if isinstance(c, Timer)]
    return round(timers[0].time_elapsed("train"), 2) if timers else None


def _fit(config: Path, folder: Path, overrides: dict, steps: int):
    started = time.perf_counter()
    cli = fit([config], {**overrides, "trainer.default_root_dir": str(folder)}, ckpt_path="auto")
    train = _train_seconds(cli.trainer)
    timing = {
        "steps": steps,
        "fit_seconds": round(time.perf_counter() - started, 1),
        "train_seconds": train,
        "seconds_per_step": round(train / steps, 3) if train and steps else None,
    }
    return cli, timing


@torch.no_grad()
def latent_statistics(
    vae, dataset, collate, batch_size: int = 64, l1_images: int = 64
) -> tuple[float, float]:
    """(latent scale, L1): 1 / std of every image's posterior mean, and the mean L1 error of the
    reconstructions (posterior mode) of the first `l1_images` images, on [-1, 1] pixels."""
    vae = vae.eval()
    means, errors, seen = [], [], 0
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        pixels = batch["pixel_values"].to(vae.dtype)
        posterior = vae.encode(pixels).latent_dist
        means.append(posterior.mean)
        if seen < l1_images:
            rows = pixels[: l1_images - seen]
            errors.append((vae.decode(posterior.mode()[: len(rows)]).sample - rows).abs().flatten(1).mean(1))
            seen += len(rows)
    return float(1.0 / torch.cat(means).std()), float(torch.cat(errors).mean())


def run_vae_stage(folder: Path, overrides: dict, steps: int) -> dict:
    """Stage 1: fit the VAE, measure its latent scale, save it as `folder/vae` with that scale."""
    cli, timing = _fit(VAE_STAGE_CONFIG, folder, overrides, steps)
    data = cli.datamodule
    scale, l1 = latent_statistics(cli.model.vae, data.datasets["train"], data.collate_fn())
    vae = cli.model.vae.cpu()
    vae.register_to_config(scaling_factor=scale)
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    return {"images": len(data.datasets["train"]), "vae_l1": round(l1, 4), "latent_scale": round(scale, 4),
            **timing}  # fmt: skip


def run_text_stage(folder: Path, overrides: dict, steps: int) -> dict:
    """Stage 0: teach the text encoder language; it is written to `folder/language_model`."""
    cli, timing = _fit(TEXT_STAGE_CONFIG, folder, {**overrides, "model.init_args.output_dir": str(folder / TEXT_MODEL)},
                       steps)  # fmt: skip
    metrics = cli.trainer.callback_metrics
    data = cli.datamodule
    return {"sentences": {name: len(rows) for name, rows in data.sentences.items()},
            "vocabulary": len(data.vocabulary()),
            **{key.replace("/", "_"): round(float(metrics[key]), 4) for key in ("train/loss", "val/loss")
               if key in metrics},
            **timing}  # fmt: skip


def run_unet_stage(folder: Path, overrides: dict, steps: int) -> dict:
    """Stage 2: fit the U-Net on the frozen stage-1 VAE and stage-0 text encoder; export to `folder/pipeline`."""
    from cxr_ldm.generation.export import export_pipeline

    cli, timing = _fit(UNET_STAGE_CONFIG, folder, overrides, steps)
    pipeline = folder / "pipeline"
    if pipeline.exists():
        shutil.rmtree(pipeline)
    export_pipeline(cli.model, pipeline, ema=False, scheduler="ddim")
    loss = cli.trainer.callback_metrics.get("train/loss")
    captions = Counter(cli.datamodule.datasets["train"].prompts)
    return {"captions": dict(sorted(captions.items())),
            "unet_loss": round(float(loss), 4) if loss is not None else None, **timing}  # fmt: skip


def build_tiny_pretrained(
    out: str | Path,
    work: str | Path,
    studies: int = 2000,
    vae_steps: int = 1200,
    unet_steps: int = 4000,
    text_steps: int = 3000,
    batch_size: int = 32,
    seed: int = 0,
    stop_after: Literal["text", "vae", "unet"] = "unet",
    image_size: int | None = None,
) -> dict:
    """Run stages 0, 1 and 2 (skipping a stage finished earlier) and export the pipeline to `out`.

    Budgets: `text_steps` optimizer steps of stage 0 (of its config's batch of sentences); `studies` of the
    seed-1 phantom, `vae_steps` and `unet_steps` optimizer steps of `batch_size` images; `seed` seeds
    stages 0 and 1 (stage 2 uses seed + 1). `stop_after="text"` or `"vae"` runs the stages up to that one
    and exports nothing. `image_size`: the side the pipeline is trained at (default: the stage configs', 64 px); the
    phantom stays at the configs' size and the data module resizes it (as an experiment's `data.image_size`
    does), the U-Net's `sample_size` follows (the VAE's x4 downsampling). Returns what was done, also
    written to `out/pretrain.json`.
    """
    out, work = Path(out), Path(work)
    if image_size is not None and (image_size < 4 * VAE_DOWNSAMPLING or image_size % (2 * VAE_DOWNSAMPLING)):
        raise ConfigError(
            f"image_size {image_size}: the tiny pipeline needs a multiple of {2 * VAE_DOWNSAMPLING} (its VAE "
            f"downsamples x{VAE_DOWNSAMPLING}, its U-Net once more), at least {4 * VAE_DOWNSAMPLING}"
        )
    started = time.perf_counter()
    ran: list[str] = []
    corpus = _short_digest(iu_reports_archive())  # the report sentences are an input of stage 0
    text_key = _key([text_steps, seed, _short_digest(TEXT_STAGE_CONFIG), corpus])
    stage0 = work / f"stage0-text-{text_key}"
    text = _read_done(stage0)
    if text is None:
        overrides = {"seed_everything": seed, "trainer.max_steps": text_steps,
                     "trainer.val_check_interval": min(500, text_steps),
                     "model.init_args.lr_warmup_steps": int(WARMUP_FRACTION * text_steps)}  # fmt: skip
        text = run_text_stage(stage0, overrides, text_steps)
        _write_done(stage0, text)
        ran.append("text")
    text_stage = {"config": str(TEXT_STAGE_CONFIG.relative_to(CONFIG_DIR.parents[1])), "folder": stage0.name,
                  **text}  # fmt: skip
    if stop_after == "text":
        return {"text_stage": text_stage, "ran": ran, "seconds": round(time.perf_counter() - started, 1)}
    phantom_size = int(parse_fit_config(VAE_STAGE_CONFIG).data.init_args.image_size)
    phantom = work / f"phantom-seed{PHANTOM_SEED}-{studies}"
    pretraining_phantom(phantom, studies, phantom_size)
    data = {"data.init_args.root": str(phantom), "data.init_args.cache_dir": str(work / "cache"),
            "data.init_args.batch_size": batch_size}  # fmt: skip
    sized: list = []  # the default size keeps the stage keys it had before sizes were an option
    unet_size: dict = {}
    if image_size is not None and image_size != phantom_size:
        sized = [image_size]
        data["data.init_args.image_size"] = image_size
        components = parse_fit_config(UNET_STAGE_CONFIG).model.init_args.components
        unet_size["model.init_args.components.unet_config"] = {
            **components.unet_config,
            "sample_size": image_size // VAE_DOWNSAMPLING,
        }

    vae_key = _key(
        [PHANTOM_SEED, studies, vae_steps, batch_size, seed, _short_digest(VAE_STAGE_CONFIG), *sized]
    )
    stage1 = work / f"stage1-vae-{vae_key}"
    vae = _read_done(stage1)
    if vae is None:
        overrides = {**data, "seed_everything": seed, "trainer.max_steps": vae_steps,
                     "model.init_args.lr_warmup_steps": int(WARMUP_FRACTION * vae_steps)}  # fmt: skip
        vae = run_vae_stage(stage1, overrides, vae_steps)
        _write_done(stage1, vae)
        ran.append("vae")
    info = {"phantom_seed": PHANTOM_SEED, "studies": studies, "images": vae["images"], "batch_size": batch_size,
            "seed": seed, "image_size": image_size or phantom_size, "text_stage": text_stage,
            "vae_stage": {"config": str(VAE_STAGE_CONFIG.relative_to(CONFIG_DIR.parents[1])),
                          "folder": stage1.name, **vae}}  # fmt: skip
    if stop_after == "vae":
        return {**info, "ran": ran, "seconds": round(time.perf_counter() - started, 1)}

    unet_key = _key([vae_key, text_key, unet_steps, batch_size, seed, _short_digest(UNET_STAGE_CONFIG)])
    stage2 = work / f"stage2-unet-{unet_key}"
    unet = _read_done(stage2)
    if unet is None:
        overrides = {**data, "seed_everything": seed + 1, "trainer.max_steps": unet_steps,
                     "model.init_args.optimization.lr_warmup_steps": int(WARMUP_FRACTION * unet_steps),
                     "model.init_args.components.pretrained_model_name_or_path": str(stage1),
                     "model.init_args.components.text_encoder_name_or_path": str(stage0 / TEXT_MODEL),
                     "data.init_args.latent_cache_vae": str(stage1), **unet_size}  # fmt: skip
        unet = run_unet_stage(stage2, overrides, unet_steps)
        _write_done(stage2, unet)
        ran.append("unet")
    info["unet_stage"] = {"config": str(UNET_STAGE_CONFIG.relative_to(CONFIG_DIR.parents[1])),
                          "folder": stage2.name, **unet}  # fmt: skip
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(stage2 / "pipeline", out)
    info = {**info, "ran": ran, "seconds": round(time.perf_counter() - started, 1)}
    (out / "pretrain.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
