"""What every generated image is judged against, made once from the real data: the real splits, the evaluator
classifier with its operating points, the retriever, and the ceilings (the evaluator on real test images and
on their VAE reconstructions, and how far two real samples are apart).

`make_references` is the one entry: it takes the data module of the real images (set up by the caller), the
evaluator's settings, the folder that keeps the evaluator and its ceilings for reruns, the pretrained
pipeline (whose VAE makes the reconstructions) and the retriever's checkpoint (fit by the caller, or none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from cxr_ldm.data.atomic import atomic_path, write_text_atomic
from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.data.real_split import read_split
from cxr_ldm.evaluation.ceilings import evaluator_cuts, real_ceilings
from cxr_ldm.evaluation.reference_files import CEILINGS, EVALUATOR_WEIGHTS

# also under this module's name, where a config pickled before evaluation/specs.py looks for EvaluatorSpec
from cxr_ldm.evaluation.specs import EvaluatorSpec


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


def read_real_splits(datamodule) -> RealSplits:
    """The train, validate and test images of the real data module, and how it writes prompts."""
    train, validate, test = (read_split(datamodule, split) for split in ("train", "validate", "test"))
    return RealSplits(train, validate, test, datamodule.options)


def load_or_train_evaluator(spec: EvaluatorSpec, train: ImageSet, folder: Path):
    """The evaluator classifier: `spec.checkpoint`, or trained on the real training images and kept as
    `folder/evaluator.pt` so that a rerun judges with the same network."""
    from cxr_ldm.evaluation.evaluators.classifier_training import build_classifier, train_classifier

    saved = folder / EVALUATOR_WEIGHTS
    if spec.checkpoint is None and saved.is_file():
        model = build_classifier(spec.classifier)
        model.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
        return model.eval()
    if spec.checkpoint is None:
        model = train_classifier(train, spec.classifier, seed=spec.seed)
        saved.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(saved) as tmp:  # a crash never leaves a half-written evaluator
            torch.save(model.state_dict(), tmp)
        return model
    from cxr_ldm.checkpoints import load_checkpoint
    from cxr_ldm.evaluation.evaluators import CxrClassifier

    return load_checkpoint(spec.checkpoint, CxrClassifier, "evaluator.checkpoint").cpu().eval()


def measured_ceilings(
    evaluator, cuts: dict[str, float], splits: RealSplits, pretrained: str, folder: Path
) -> dict:
    """The ceilings (evaluation/ceilings.py) with the size of each split, measured once and kept as
    `folder/ceilings.json`."""
    from cxr_ldm.generation.image_source import load_image_source

    stored = folder / CEILINGS
    if stored.is_file():
        return json.loads(stored.read_text())
    vae = load_image_source(pretrained, option="pretrained").vae()
    ceilings = real_ceilings(evaluator, cuts, splits.validate, splits.test, vae)
    ceilings["images"] = {
        "train": len(splits.train),
        "validate": len(splits.validate),
        "test": len(splits.test),
    }
    stored.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stored, json.dumps(ceilings, indent=2) + "\n")
    return ceilings


def load_retriever(checkpoint: str | Path | None, option: str = "retriever"):
    """The `ImageTextRetriever` of `checkpoint` (`option` names where it came from in an error), or None."""
    if checkpoint is None:
        return None
    from cxr_ldm.checkpoints import load_checkpoint
    from cxr_ldm.evaluation.evaluators import ImageTextRetriever

    return load_checkpoint(checkpoint, ImageTextRetriever, option).cpu().eval()


def make_references(
    datamodule,
    spec: EvaluatorSpec,
    folder: Path,
    pretrained: str,
    retriever=None,
    retriever_option: str = "retriever",
) -> References:
    """Everything judged against: the real splits of `datamodule`, the evaluator (`spec`; kept in `folder`),
    its operating points on the validation split, the ceilings (kept in `folder`) and the retriever of the
    checkpoint `retriever` (none: no retrieval)."""
    splits = read_real_splits(datamodule)
    evaluator = load_or_train_evaluator(spec, splits.train, folder)
    cuts = evaluator_cuts(evaluator, splits.validate)
    ceilings = measured_ceilings(evaluator, cuts, splits, pretrained, folder)
    return References(splits, evaluator, cuts, load_retriever(retriever, retriever_option), ceilings)
