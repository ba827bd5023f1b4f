"""LightningDataModule for MIMIC-CXR(-JPG) images with report-derived prompts and CheXpert labels."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Sampler

from cxr_ldm.data.atomic import clean_stale_temporaries, options_key
from cxr_ldm.data.bad_samples import SkipLog, SkippedSample
from cxr_ldm.data.finding_balance import finding_balanced_sampler
from cxr_ldm.data.image_cache import ImageCache, build_image_cache, image_cache_key, image_cache_ready
from cxr_ldm.data.latent_cache import (
    LatentCache,
    build_latent_cache,
    check_latent_cache_vae,
    latent_cache_key,
    latent_cache_ready,
    vae_weights_hash,
)
from cxr_ldm.data.mimic_dataset import MimicCxrDataset
from cxr_ldm.data.mimic_index import (
    INDEX_FILE,
    SUMMARY_FILE,
    BuiltIndex,
    IndexOptions,
    build_index,
    read_index,
)
from cxr_ldm.data.prompt_tokens import PromptTokenizing
from cxr_ldm.data.resumable_loader import EpochShuffle, ResumableDataLoader
from cxr_ldm.data.skipped_files import changed_skipped, drop_if_skipped_changed, record_skipped
from cxr_ldm.errors import ConfigError

LOGGER = logging.getLogger("cxr_ldm.data")


def default_cache_dir() -> Path:
    """$CXR_LDM_CACHE, else $XDG_CACHE_HOME/cxr_ldm, else ~/.cache/cxr_ldm."""
    if os.environ.get("CXR_LDM_CACHE"):
        return Path(os.environ["CXR_LDM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "cxr_ldm"


class MimicCxrDataModule(PromptTokenizing, LightningDataModule):
    """MIMIC-CXR images paired with report text and CheXpert labels, in the project's batch contract.

    The index (filters, split, labels, prompts) is built once by `prepare_data` (local rank 0) into
    `cache_dir/mimic-index-<key>/`, where the key hashes every option that changes it and the CSVs' size and
    mtime; every rank reads it in `setup`. Items are dicts with pixel_values (C, H, W) in [-1, 1], prompt,
    labels (14,), dicom_id, study_id, subject_id and view. Once a model hands over its tokenizer
    (`set_prompt_tokenizer`), batches also carry the prompts' `input_ids` (+ `attention_mask`), tokenized in
    the DataLoader workers.

    Args:
        root: Folder with `files/p1X/...` images and the `mimic-cxr-2.0.0-*.csv.gz` tables.
        reports_root: Folder with `files/p1X/p<subject>/s<study>.txt` reports, if not under `root`.
        views: ViewPositions to keep, e.g. [PA] or [PA, AP, LATERAL]; LAT and LL mean LATERAL; [ALL] keeps all.
        text_section: Report section used as text: impression, findings or impression_or_findings.
        prompt_mode: report (the section text), labels ("pleural effusion, cardiomegaly" or "normal"),
            or template (`prompt_template`).
        prompt_template: Template for prompt_mode=template; placeholders <findings>, <section>, <view>;
            a `{...}` part is dropped when a placeholder in it is empty.
        finding_words: How labels and template prompts name each finding: CheXpert label name -> word, e.g.
            {Cardiomegaly: "<cardiomegaly>", "No Finding": "<normal>"} (one textual-inversion token per
            finding); "No Finding" sets the normal prompt's word; labels left out keep their lower-case
            names. Null for the plain names.
        min_chars: Drop images whose section text is shorter than this.
        max_chars: Drop images whose section text is longer than this; null for no limit.
        max_tokens: Drop images whose section text has more tokens (special tokens included); needs `tokenizer`.
        tokenizer: Local path (or cached hub id) of a transformers tokenizer used for `max_tokens` and the
            token-length histogram; nothing is downloaded if it is a local path.
        no_finding_cap: Keep exactly this many "No Finding" studies (or images) per capped split, seeded;
            null for no cap.
        no_finding_cap_unit: What the cap counts: study (report) or image.
        no_finding_cap_splits: Splits the cap applies to; null: [train].
        split: official (the split CSV) or seeded (patient-level split with `split_ratios` and `seed`).
        split_ratios: Train, validate, test fractions for split=seeded.
        label_source: chexpert or negbio label CSV.
        uncertain_policy: Uncertain (-1) labels become zero, one, or ignore (NaN, for masked losses).
        blank_policy: Blank (not mentioned) labels become zero or ignore (NaN).
        image_size: Side of the square images.
        resize: pad (letterbox the whole image with black) or center_crop (crop the centre square).
        channels: 3 (grayscale repeated, for the Stable Diffusion VAE) or 1 (classifiers).
        image_suffix: .jpg for MIMIC-CXR-JPG, .dcm for the DICOM release.
        batch_size: Training batch size per process.
        eval_batch_size: Validation/test batch size; defaults to batch_size.
        num_workers: DataLoader worker processes.
        pin_memory: Pin host memory; null pins when CUDA is available.
        seed: Seed of the No Finding cap, the seeded split and the limits.
        bad_sample_policy: skip (skip and report bad files) or raise (stop at the first bad file).
        check_images: Check at index time that every image file exists and is not empty.
        max_images: Per-split image limits after all filters, e.g. {train: 1100}; seeded.
        cache_dir: Where the index and image cache live; default $CXR_LDM_CACHE or ~/.cache/cxr_ldm.
        image_cache: Build (once) and read a memory-mapped uint8 cache of the resized images.
        latent_cache_vae: A frozen VAE (diffusers pipeline or VAE folder, or hub id): encode every image once
            into a latent cache and yield `latent_parameters` instead of `pixel_values`. Use the model's own
            VAE, and only while the VAE stays frozen.
        latent_cache_batch_size: Images per VAE batch while building the latent cache.
        train_sampling: shuffle (every training image once per epoch) or finding_balanced (drawn with
            replacement, weighted so rare findings are seen about as often as common ones; see `balance_power`).
        balance_power: For finding_balanced: an image's weight is (count of its rarest positive finding) ** -power;
            1 balances the findings, 0.5 lifts rare ones less, 0 is uniform.
    """

    def __init__(
        self,
        root: str,
        reports_root: str | None = None,
        views: list[str] = ["PA"],  # noqa: B006 - copied, never mutated; a list shows best in --help
        text_section: Literal["impression", "findings", "impression_or_findings"] = "impression",
        prompt_mode: Literal["report", "labels", "template"] = "report",
        prompt_template: str = "a photo of a lung x-ray{ with <findings>}",
        finding_words: dict[str, str] | None = None,
        min_chars: int = 7,
        max_chars: int | None = 77,
        max_tokens: int | None = None,
        tokenizer: str | None = None,
        no_finding_cap: int | None = 10005,
        no_finding_cap_unit: Literal["study", "image"] = "study",
        no_finding_cap_splits: list[Literal["train", "validate", "test"]] | None = None,
        split: Literal["official", "seeded"] = "official",
        split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
        label_source: Literal["chexpert", "negbio"] = "chexpert",
        uncertain_policy: Literal["zero", "one", "ignore"] = "zero",
        blank_policy: Literal["zero", "ignore"] = "zero",
        image_size: int = 512,
        resize: Literal["pad", "center_crop"] = "pad",
        channels: int = 3,
        image_suffix: str = ".jpg",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool | None = None,
        seed: int = 0,
        bad_sample_policy: Literal["skip", "raise"] = "skip",
        check_images: bool = True,
        max_images: dict[str, int] | None = None,
        cache_dir: str | None = None,
        image_cache: bool = False,
        latent_cache_vae: str | None = None,
        latent_cache_batch_size: int = 16,
        train_sampling: Literal["shuffle", "finding_balanced"] = "shuffle",
        balance_power: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        key = "data.init_args."
        if channels not in (1, 3):
            raise ConfigError(f"{key}channels must be 1 or 3, got {channels}")
        if image_size < 8:
            raise ConfigError(f"{key}image_size must be at least 8, got {image_size}")
        if batch_size < 1:
            raise ConfigError(f"{key}batch_size must be >= 1, got {batch_size}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ConfigError(
                f"{key}eval_batch_size must be >= 1 (or null for batch_size), got {eval_batch_size}"
            )
        if num_workers < 0:
            raise ConfigError(f"{key}num_workers must be >= 0, got {num_workers}")
        if latent_cache_batch_size < 1:
            raise ConfigError(f"{key}latent_cache_batch_size must be >= 1, got {latent_cache_batch_size}")
        if bad_sample_policy not in ("skip", "raise"):
            raise ConfigError(f"{key}bad_sample_policy must be skip or raise, got {bad_sample_policy!r}")
        if train_sampling not in ("shuffle", "finding_balanced"):
            raise ConfigError(
                f"{key}train_sampling must be shuffle or finding_balanced, got {train_sampling!r}"
            )
        if balance_power < 0:
            raise ConfigError(f"{key}balance_power must be >= 0, got {balance_power}")
        if resize not in ("pad", "center_crop"):
            raise ConfigError(f"{key}resize must be pad or center_crop, got {resize!r}")
        for name, value in (("text_section", text_section), ("prompt_mode", prompt_mode)):
            allowed = {"text_section": ("impression", "findings", "impression_or_findings"),
                       "prompt_mode": ("report", "labels", "template")}[name]  # fmt: skip
            if value not in allowed:
                raise ConfigError(f"{key}{name} must be one of {allowed}, got {value!r}")
        for name, value in (("min_chars", min_chars), ("max_chars", max_chars), ("max_tokens", max_tokens),
                            ("no_finding_cap", no_finding_cap)):  # fmt: skip
            if value is not None and value < 0:
                raise ConfigError(f"{key}{name} must be >= 0 (or null), got {value}")
        for split_name, limit in (max_images or {}).items():
            if limit < 0:
                raise ConfigError(f"{key}max_images.{split_name} must be >= 0, got {limit}")
        self.options = IndexOptions(
            root=str(root),
            reports_root=reports_root,
            views=list(views),
            text_section=text_section,
            prompt_mode=prompt_mode,
            prompt_template=prompt_template,
            finding_words=dict(finding_words) if finding_words is not None else None,
            min_chars=min_chars,
            max_chars=max_chars,
            max_tokens=max_tokens,
            tokenizer=tokenizer,
            no_finding_cap=no_finding_cap,
            no_finding_cap_unit=no_finding_cap_unit,
            no_finding_cap_splits=list(no_finding_cap_splits or ["train"]),
            split=split,
            split_ratios=list(split_ratios),
            label_source=label_source,
            uncertain_policy=uncertain_policy,
            blank_policy=blank_policy,
            image_suffix=image_suffix,
            check_images=check_images,
            max_images=dict(max_images) if max_images else None,
            seed=seed,
        )
        self.image_size = image_size
        self.resize = resize
        self.channels = channels
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.bad_sample_policy = bad_sample_policy
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.use_image_cache = image_cache
        self.latent_cache_vae = latent_cache_vae
        self.latent_cache_batch_size = latent_cache_batch_size
        self.train_sampling = train_sampling
        self.balance_power = balance_power
        self.index: pd.DataFrame | None = None
        self.index_skipped: list[SkippedSample] = []
        self.datasets: dict[str, MimicCxrDataset] = {}
        self.load_skips: SkipLog | None = None

    # ------------------------------------------------------------------ caches
    def index_key(self) -> str:
        """Hash of every option and CSV that shapes the index, and of the bad-file policy.

        The policy is part of it: an index built under `skip` has dropped the bad files, so a `raise` run must
        not reuse it (it builds its own, and stops at the first bad file).
        """
        return options_key({"index": self.options.key(), "bad_sample_policy": self.bad_sample_policy})

    def index_folder(self) -> Path:
        """cache_dir/mimic-index-<key>: changes whenever an option, a CSV or the policy that shapes it changes."""
        return self.cache_dir / f"mimic-index-{self.index_key()}"

    def image_cache_folder(self) -> Path:
        key = image_cache_key(self.options.key(), self.image_size, self.resize)
        return self.index_folder() / f"images-{key}"

    def latent_cache_folder(self) -> Path:
        key = latent_cache_key(self.options.key(), self.image_size, self.resize, str(self.latent_cache_vae))
        return self.index_folder() / f"latents-{key}"

    def build_index(self) -> BuiltIndex:
        """Build the index now (no caching); `prepare` and `prepare_data` use this."""
        return build_index(self.options, self.bad_sample_policy)

    def prepare_data(self) -> None:
        """Build the index (and the image cache if asked) once; later runs with the same key reuse them."""
        folder = self.index_folder()
        # A run killed mid-write (kill -9) leaves its temporary file; an image cache's is as big as the cache.
        clean_stale_temporaries(self.cache_dir)
        # a file the index or a cache skipped and that was mended since (restored, re-downloaded): built again
        drop_if_skipped_changed(folder, LOGGER.warning)
        if not (folder / INDEX_FILE).is_file():
            LOGGER.info("building the MIMIC-CXR index in %s", folder)
            built = self.build_index()
            built.write(folder)
            record_skipped(folder, [s.path for s in built.skipped])
        if self.use_image_cache:
            self._ensure_cache(self.image_cache_folder(), image_cache_ready, "decoding into the image cache",
                               lambda paths, cache, log: build_image_cache(
                                   paths, cache, self.image_size, self.resize, self.bad_sample_policy, log))  # fmt: skip
        if self.latent_cache_vae:
            self._ensure_cache(self.latent_cache_folder(), latent_cache_ready, "encoding into the latent cache",
                               lambda paths, cache, log: build_latent_cache(
                                   paths, cache, self.latent_cache_vae, self.image_size, self.resize,
                                   self.bad_sample_policy, log, batch_size=self.latent_cache_batch_size,
                                   num_workers=self.num_workers, model_vae_hash=self._model_vae_hash()))  # fmt: skip

    def _ensure_cache(self, cache: Path, ready, doing: str, build) -> None:
        """Build the image or latent cache at `cache` from every index row (`build(paths, cache, skip_log)`)
        unless it is ready and none of the files it skipped has changed since."""
        drop_if_skipped_changed(cache, LOGGER.warning)
        if ready(cache):
            return
        frame = read_index(self.index_folder()).frame
        LOGGER.info("%s: %d images, %s", doing, len(frame), cache)
        log = SkipLog(cache / "skips")
        build([self.options.images_dir / p for p in frame["path"]], cache, log)
        record_skipped(cache, [s.path for s in log.records()])

    def _load_skips_folder(self) -> Path:
        """Where this run's DataLoader workers record the images they skip: under the run's own folder
        (`trainer.default_root_dir`), never in the shared cache, named for this process and moment so that a
        resumed run reports only its own skips; made by the first skip (a run that skips nothing leaves no
        folder). When no Trainer runs this data module, a folder of the same name in the temporary directory,
        also made by the first skip and removed at exit."""
        name = f"load-skips-{os.getpid()}-{time.time_ns()}"
        trainer = getattr(self, "trainer", None)
        if trainer is not None and getattr(trainer, "default_root_dir", None):
            return Path(trainer.default_root_dir) / name
        folder = Path(tempfile.gettempdir()) / f"cxr_ldm-{name}"
        atexit.register(shutil.rmtree, folder, True)
        return folder

    def _warn_overlong_prompts(self) -> None:
        """Once per run: how many prompts the training model's text encoder would cut."""
        from cxr_ldm.data.prompt_length import text_limits, warn_overlong

        trainer = getattr(self, "trainer", None)
        if trainer is None or not trainer.is_global_zero:
            return
        tokenizer, limit = text_limits(getattr(trainer, "lightning_module", None))
        if tokenizer is not None:
            warn_overlong(
                tokenizer, self.index["prompt"].tolist(), limit, f"index {self.index_folder().name}"
            )

    def _model_vae_hash(self) -> str | None:
        """Hash of the training model's own VAE (None outside a Trainer, or for a model without a VAE)."""
        if getattr(self, "_vae_hash", None) is None:
            trainer = getattr(self, "trainer", None)
            vae = getattr(getattr(trainer, "lightning_module", None), "vae", None) if trainer else None
            self._vae_hash = vae_weights_hash(vae) if isinstance(vae, torch.nn.Module) else None
        return self._vae_hash

    @staticmethod
    def _log_index_skips(skipped: list[SkippedSample], folder: Path) -> None:
        """A warning on every run that uses the index, not only the one that built it."""
        if skipped:
            reasons = Counter(s.reason.split(" (")[0] for s in skipped)
            LOGGER.warning(
                "the index skipped %d bad files (%s); list in %s",
                len(skipped),
                ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()),
                folder / "skipped.csv",
            )

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        """Read the index built by prepare_data (building it here if prepare_data was not called)."""
        if self.index is not None:
            return
        folder = self.index_folder()
        caches = [folder]
        caches += [self.image_cache_folder()] if self.use_image_cache else []
        caches += [self.latent_cache_folder()] if self.latent_cache_vae else []
        # a cache whose skipped files changed is rebuilt here only by a single process: under several ranks
        # prepare_data (local rank 0, before every rank's setup) rebuilds it, never two ranks at once
        alone = int(os.environ.get("WORLD_SIZE", "1")) <= 1
        if not (folder / INDEX_FILE).is_file() or (alone and any(changed_skipped(cache) for cache in caches)):
            self.prepare_data()
        built = read_index(folder)
        self.index = built.frame
        self.index_skipped = built.skipped
        self.summary = built.summary
        self._log_index_skips(self.index_skipped, folder)
        self.load_skips = SkipLog(self._load_skips_folder())
        cache = None
        if self.use_image_cache:
            if not image_cache_ready(self.image_cache_folder()):
                self.prepare_data()
            cache = ImageCache(self.image_cache_folder())
        latents = None
        if self.latent_cache_vae:
            if not latent_cache_ready(self.latent_cache_folder()):
                self.prepare_data()
            check_latent_cache_vae(self.latent_cache_folder(), self.latent_cache_vae, self._model_vae_hash())
            latents = LatentCache(self.latent_cache_folder())
        for split in ("train", "validate", "test"):
            rows = np.flatnonzero(self.index["split"].to_numpy() == split)
            self.datasets[split] = MimicCxrDataset(
                self.index.iloc[rows].reset_index(drop=True),
                self.options.images_dir,
                image_size=self.image_size,
                resize=self.resize,
                channels=self.channels,
                bad_sample_policy=self.bad_sample_policy,
                skip_log=self.load_skips,
                image_cache=cache,
                latent_cache=latents,
                cache_rows=rows,
            )
        self._warn_overlong_prompts()
        LOGGER.info(
            "MIMIC-CXR index %s: %s images (train/validate/test), %d files skipped at index time",
            folder.name,
            "/".join(str(len(self.datasets[s])) for s in ("train", "validate", "test")),
            len(self.index_skipped),
        )

    # ------------------------------------------------------------------ loaders
    def _loader(
        self, split: str, shuffle: bool, batch_size: int, sampler: Sampler | None = None
    ) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError("call setup() before asking for a dataloader")
        # The training loader resumes mid-epoch at the batch its checkpoint was written after. No `shuffle`
        # argument beside a sampler: Lightning would read it to choose its DistributedSampler's shuffling.
        extra: dict = {"shuffle": shuffle}
        loader_class: type[DataLoader] = DataLoader
        if split == "train":
            extra, loader_class = {"position": self._train_position}, ResumableDataLoader
            if shuffle:
                sampler = EpochShuffle(self.datasets[split])
        return loader_class(
            self.datasets[split],
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn(),
            **extra,
        )

    def _train_epoch(self) -> int:
        """The epoch being trained (0 outside a fit)."""
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _train_position(self) -> tuple[int, int]:
        """(epoch, its batches trained so far; 0 once the epoch is complete), saved with each checkpoint."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        return trainer.current_epoch, 0 if done >= trainer.num_training_batches else done

    def all_prompts(self) -> list[str]:
        """Every distinct prompt of the train and validation splits (for a text-embedding cache)."""
        if not self.datasets:
            raise RuntimeError("call setup() before asking for the prompts")
        prompts = [*self.datasets["train"].prompts, *self.datasets["validate"].prompts]
        return sorted(set(prompts))

    def train_dataloader(self) -> DataLoader:
        if "train" in self.datasets and len(self.datasets["train"]) == 0:
            folder = self.index_folder()
            raise ConfigError(
                f"the train split of the index {folder} holds no image: {folder / SUMMARY_FILE} counts what each "
                "filter dropped; check data.split (official needs train rows in the split CSV), data.views and "
                "data.max_images"
            )
        # Under DDP Lightning swaps in a DistributedSampler (or wraps the balanced sampler), so each rank gets
        # its own shard per epoch.
        if self.train_sampling == "finding_balanced":
            sampler = finding_balanced_sampler(
                self.datasets["train"].labels, self.balance_power, self.options.seed, self._train_epoch
            )
            return self._loader("train", False, self.batch_size, sampler)
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validate", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)

    # ------------------------------------------------------------------ bad files
    @property
    def skipped(self) -> list[SkippedSample]:
        """Every file skipped so far: at index time and, across DataLoader workers, at load time."""
        loaded = self.load_skips.records() if self.load_skips is not None else []
        return [*self.index_skipped, *loaded]

    def teardown(self, stage: str | None = None) -> None:
        """Report the load-time skips at the end of fit/validate/test (each also logged when it happened)."""
        if self.load_skips is None:
            return
        loaded = self.load_skips.records()
        if loaded:
            LOGGER.warning(
                "%d image files could not be decoded and were skipped during %s:\n%s",
                len(loaded),
                stage or "this run",
                "\n".join(f"  {s.path}: {s.reason}" for s in loaded),
            )
