"""The arms of an experiment (size x condition x seed) and where each one's result lives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr_ldm.experiments.synthetic_augmentation.config import AugmentationConfig


@dataclass(frozen=True)
class Arm:
    """One classifier training run: real-set size, training condition, classifier seed."""

    size: int
    condition: str
    seed: int

    @property
    def name(self) -> str:
        return f"size{self.size}/{self.condition}/seed{self.seed}"

    def result_path(self, out: str | Path) -> Path:
        """`<out>/arms/size<N>/<condition>/seed<k>.json`: its existence means the arm is finished."""
        return Path(out) / "arms" / f"size{self.size}" / self.condition / f"seed{self.seed}.json"


def plan_arms(config: AugmentationConfig) -> list[Arm]:
    """Every arm, sizes outermost so one size's subset and synthetic sets are built once."""
    return [Arm(s, c, k) for s in config.sizes for c in config.conditions for k in config.seeds]
