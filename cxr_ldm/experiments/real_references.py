"""The experiment's fixed references, made once before any arm: the real splits, the evaluator classifier with
its operating points, the retriever, and the ceilings (the evaluator on real test images and on their VAE
reconstructions, and how far two real samples are apart)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cxr_ldm.data.atomic import atomic_path, write_text_atomic
from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.data.real_split import read_split
from cxr_ldm.evaluation.ceilings import evaluator_cuts, real_ceilings
from cxr_ldm.evaluation.evaluators.classifier_training import train_classifier
from cxr_ldm.experiments.spec import ExperimentConfig
from cxr_ldm.experiments.units import digest
from cxr_ldm.training import fit
from cxr_ldm.training.config_files import file_contents
from cxr_ldm.training.datamodule import load_datamodule_for


@dataclass
class RealSplits:
    train: ImageSet
    validate: ImageSet
    test: ImageSet
    options: object  # the data module's IndexOptions: how its prompts are written


@dataclass
class References:
    splits: RealSplits
    evaluator: object  # CxrClassifier
    cuts: dict[str, float]
    retriever: object | None  # ImageTextRetriever
    ceilings: dict


def data_overrides(config: ExperimentConfig, out: Path) -> dict:
    return {"root": config.data.root, "cache_dir": str(out / "cache")}


def reference_inputs(config: ExperimentConfig) -> dict:
    """What the references are made from (the data, its config file's contents, the evaluator): the inputs
    of every unit that reads the real data."""
    return {"data": asdict(config.data), "data_config": digest(file_contents(config.data.config)),
            "evaluator": asdict(config.evaluator)}  # fmt: skip


def read_real_splits(config: ExperimentConfig, out: Path) -> RealSplits:
    module = load_datamodule_for(config.data.config, data_overrides(config, out), config.data.image_size)
    train, validate, test = (read_split(module, split) for split in ("train", "validate", "test"))
    return RealSplits(train, validate, test, module.options)


def load_or_train_evaluator(config: ExperimentConfig, splits: RealSplits, out: Path):
    """The evaluator classifier: `evaluator.checkpoint`, or trained on the real training split and kept as
    `out/evaluator/evaluator.ckpt` so that a rerun judges with the same network."""
    from cxr_ldm.checkpoints import load_checkpoint
    from cxr_ldm.evaluation.evaluators import CxrClassifier

    spec = config.evaluator
    if spec.checkpoint is not None:
        return load_checkpoint(spec.checkpoint, CxrClassifier, "evaluator.checkpoint").cpu().eval()
    saved = out / "evaluator" / "evaluator.pt"
    settings = spec.classifier
    if saved.is_file():
        from cxr_ldm.evaluation.evaluators.classifier_training import build_classifier

        model = build_classifier(settings)
        model.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
        return model.eval()
    model = train_classifier(splits.train, settings, seed=spec.seed)
    saved.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(saved) as tmp:  # a crash never leaves a half-written evaluator
        torch.save(model.state_dict(), tmp)
    return model


def load_or_train_retriever(config: ExperimentConfig, out: Path):
    """The retriever: `retriever.checkpoint`, or `retriever.config` fit once on the real training split."""
    from cxr_ldm.checkpoints import load_checkpoint
    from cxr_ldm.evaluation.evaluators import ImageTextRetriever

    spec = config.retriever
    if spec.checkpoint is not None:
        return load_checkpoint(spec.checkpoint, ImageTextRetriever, "retriever.checkpoint").cpu().eval()
    if spec.config is None:
        return None
    run_dir = out / "retriever"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if not (run_dir / "done").is_file():
        overrides = {
            "data.init_args.root": config.data.root,
            "data.init_args.cache_dir": str(out / "cache"),
            "trainer.default_root_dir": str(run_dir),
            "trainer.enable_progress_bar": False,
        }
        if spec.max_epochs is not None:
            overrides["trainer.max_epochs"] = spec.max_epochs
        fit([spec.config], overrides, ckpt_path="auto")
        (run_dir / "done").touch()
    return load_checkpoint(checkpoint, ImageTextRetriever, "retriever").cpu().eval()


def references_built(config: ExperimentConfig, out: Path) -> bool:
    """`build_references` would read everything back from `out` (the evaluator, its ceilings, the retriever)."""
    evaluator = config.evaluator.checkpoint is not None or (out / "evaluator" / "evaluator.pt").is_file()
    retriever = config.retriever.checkpoint is not None or config.retriever.config is None
    retriever = retriever or (out / "retriever" / "done").is_file()
    return evaluator and retriever and (out / "evaluator" / "ceilings.json").is_file()


def build_references(config: ExperimentConfig, out: Path, pretrained_vae) -> References:
    """Everything judged against, made once (evaluator and retriever are kept under `out` for reruns)."""
    splits = read_real_splits(config, out)
    evaluator = load_or_train_evaluator(config, splits, out)
    cuts = evaluator_cuts(evaluator, splits.validate)
    stored = out / "evaluator" / "ceilings.json"
    if stored.is_file():
        ceilings = json.loads(stored.read_text())
    else:
        ceilings = real_ceilings(evaluator, cuts, splits.validate, splits.test, pretrained_vae)
        ceilings["images"] = {
            "train": len(splits.train),
            "validate": len(splits.validate),
            "test": len(splits.test),
        }
        stored.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(stored, json.dumps(ceilings, indent=2) + "\n")
    retriever = load_or_train_retriever(config, out)
    return References(splits, evaluator, cuts, retriever, ceilings)
