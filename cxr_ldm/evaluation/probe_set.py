"""A probe set: what a learning-curve probe needs to judge a model during training, in one file.

The evaluator classifier (its constructor arguments and weights), its operating point per finding (chosen on
the real validation split), and one prompt per finding with the labels it asks for: the finding probes of
the evaluation protocol, written by the experiment before an arm's fit (`write_probe_set`) and read by
`LearningCurveProbe` (`read_probe_set`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from cxr_ldm.data.atomic import atomic_path
from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.evaluators.cxr_classifier import CxrClassifier


@dataclass
class ProbeSet:
    """`labels` (prompts, findings): what each prompt asks for, in the evaluator's finding order (NaN: unknown)."""

    evaluator: CxrClassifier
    cuts: dict[str, float]
    prompts: list[str]
    labels: torch.Tensor


def write_probe_set(path: Path, evaluator: CxrClassifier, cuts: dict[str, float], records) -> Path:
    """Write `records` (PromptRecords: prompt and labels) with the evaluator and its cuts to `path`."""
    findings = list(evaluator.findings)
    labels = [[float(r.labels.get(f, math.nan)) for f in findings] for r in records]
    document = {
        "evaluator": {"hyper_parameters": dict(evaluator.hparams), "state_dict": evaluator.state_dict()},
        "cuts": {k: float(v) for k, v in cuts.items()},
        "prompts": [r.prompt for r in records],
        "labels": torch.tensor(labels, dtype=torch.float32),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(document, tmp)
    return path


def read_probe_set(path: str | Path) -> ProbeSet:
    """The probe set at `path`; a missing or foreign file raises ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"LearningCurveProbe.probe_set: {path} does not exist; an experiment writes it before each fit "
            "(cxr_ldm.evaluation.probe_set.write_probe_set)"
        )
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
        evaluator = CxrClassifier(**document["evaluator"]["hyper_parameters"])
        evaluator.load_state_dict(document["evaluator"]["state_dict"])
        return ProbeSet(
            evaluator.eval(), dict(document["cuts"]), list(document["prompts"]), document["labels"]
        )
    except (KeyError, TypeError, RuntimeError) as error:
        raise ConfigError(
            f"LearningCurveProbe.probe_set: {path} is not a probe set ({error}); write it anew with "
            "write_probe_set"
        ) from error
