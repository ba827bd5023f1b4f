"""Fine-tune the diffusion model once per real-set size on exactly that size's subset (`fit`, resumable)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cxr_ldm.data.atomic import write_text_atomic
from cxr_ldm.data.file_identity import file_digest
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.units import KEY_FILE, claim_folder, digest
from cxr_ldm.training.fit import fit

DONE_FILE = "finetune-done.json"
LOG = logging.getLogger("cxr_ldm.experiments.synthetic_augmentation")


def finetune_overrides(run_dir: Path, size: int, data_overrides: dict) -> dict:
    """The `fit` overrides of one size's fine-tune: the experiment's data options, the size's subset, the run folder."""
    data = {f"data.init_args.{key}": value for key, value in data_overrides.items()}
    return {
        **data,
        "data.init_args.max_images": {"train": int(size)},
        "trainer.default_root_dir": str(run_dir),
        "trainer.logger.init_args.save_dir": str(run_dir),
    }


def finetune_for_size(
    config_path: str,
    run_dir: str | Path,
    size: int,
    data_overrides: dict,
    extra: dict,
    subset_ids: list[str],
) -> Path:
    """Fine-tune (or resume, or reuse a finished run of the same inputs) and return its `last.ckpt`. A run
    folder made from another config file, other overrides or another subset is cleared first."""
    from cxr_ldm.training.datamodule import load_datamodule

    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    if not Path(config_path).is_file():
        raise ConfigError(f"diffusion.finetune_config: {config_path} does not exist")
    from cxr_ldm.experiments.synthetic_augmentation.arm_inputs import data_inputs

    finished = (run_dir / DONE_FILE).is_file() and last.is_file()
    if finished and not (run_dir / KEY_FILE).is_file():  # an older version's: nothing to check it by
        LOG.warning(
            "%s records no inputs (an older version made it): reused; delete it to train again", run_dir
        )
        return last
    inputs = {
        "config": file_digest(Path(config_path)),
        "overrides": extra,
        "data": data_inputs(data_overrides),
        "size": int(size),
        "subset": digest(sorted(subset_ids)),
    }
    if claim_folder(run_dir, inputs, LOG.warning) and finished:
        return last
    check = load_datamodule(config_path, **data_overrides, max_images={"train": int(size)})
    check.setup()
    if sorted(check.datasets["train"].dicom_ids) != sorted(subset_ids):
        raise ConfigError(
            f"diffusion.finetune_config {config_path}: its data section selects other training images than the "
            f"experiment's `data` for size {size}; give both the same data options (views, filters, split, seed)"
        )
    fit([config_path], {**finetune_overrides(run_dir, size, data_overrides), **extra}, ckpt_path="auto")
    if not last.is_file():
        raise RuntimeError(
            f"fine-tuning for size {size} wrote no {last}; keep RunCheckpoint(save_last: true)"
        )
    write_text_atomic(run_dir / DONE_FILE, json.dumps({"size": size, "checkpoint": str(last)}) + "\n")
    return last
