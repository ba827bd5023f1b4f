"""The experiment's fixed references, made once before any arm (evaluation/references.py): what they are made
from (`reference_inputs`), the retriever's fit, and `build_references`, which hands the experiment's real
data module, evaluator settings and retriever to `make_references`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_ldm.evaluation.reference_files import CEILINGS, EVALUATOR_WEIGHTS
from cxr_ldm.experiments.cluster_fit import cluster_fit_overrides
from cxr_ldm.experiments.spec import ExperimentConfig
from cxr_ldm.experiments.units import digest
from cxr_ldm.training.config_files import file_contents

if TYPE_CHECKING:
    from cxr_ldm.evaluation.references import References


def data_overrides(config: ExperimentConfig, out: Path) -> dict:
    return {"root": config.data.root, "cache_dir": str(out / "cache")}


def reference_inputs(config: ExperimentConfig) -> dict:
    """What the references are made from (the data, its config file's contents, the evaluator, and torch's
    thread count, which changes the evaluator's training through CPU summation order): the inputs of every
    unit that reads the real data."""
    return {"data": asdict(config.data), "data_config": digest(file_contents(config.data.config)),
            "evaluator": asdict(config.evaluator), "threads": config.threads}  # fmt: skip


def fit_retriever(config: ExperimentConfig, out: Path) -> tuple[str | Path | None, str]:
    """The retriever's checkpoint and the option it came from: `retriever.checkpoint`, or `retriever.config`
    fit once on the real training split (kept under `out/retriever`), or none."""
    spec = config.retriever
    if spec.checkpoint is not None:
        return spec.checkpoint, "retriever.checkpoint"
    if spec.config is None:
        return None, "retriever"
    run_dir = out / "retriever"
    if not (run_dir / "done").is_file():
        overrides = {
            "data.init_args.root": config.data.root,
            "data.init_args.cache_dir": str(out / "cache"),
            "trainer.default_root_dir": str(run_dir),
            "trainer.enable_progress_bar": False,
            **cluster_fit_overrides(),  # in a SLURM job: submitit requeues it, Lightning does not
        }
        if spec.max_epochs is not None:
            overrides["trainer.max_epochs"] = spec.max_epochs
        from cxr_ldm.training.fit import fit

        fit([spec.config], overrides, ckpt_path="auto")
        (run_dir / "done").touch()
    return run_dir / "checkpoints" / "last.ckpt", "retriever"


def references_built(config: ExperimentConfig, out: Path) -> bool:
    """`build_references` would read everything back from `out` (the evaluator, its ceilings, the retriever)."""
    evaluator = config.evaluator.checkpoint is not None or (out / "evaluator" / EVALUATOR_WEIGHTS).is_file()
    retriever = config.retriever.checkpoint is not None or config.retriever.config is None
    retriever = retriever or (out / "retriever" / "done").is_file()
    return evaluator and retriever and (out / "evaluator" / CEILINGS).is_file()


def build_references(config: ExperimentConfig, out: Path) -> References:
    """Everything judged against, made once (evaluator and retriever are kept under `out` for reruns)."""
    from cxr_ldm.evaluation.references import make_references
    from cxr_ldm.training.datamodule import load_datamodule_for

    retriever, option = fit_retriever(config, out)
    module = load_datamodule_for(config.data.config, data_overrides(config, out), config.data.image_size)
    return make_references(module, config.evaluator, out / "evaluator", config.pretrained, retriever, option)
