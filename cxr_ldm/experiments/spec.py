"""What an experiment config declares, as typed dataclasses that jsonargparse validates before anything runs.

An experiment = real data (a MIMIC-CXR root, or a phantom made when missing) + a pretrained pipeline + an
evaluator trained on the real training split + arms (each a `fit` config composition, trained once per seed
with the same budget) + the evaluation protocol + the claims checked against the results.
`configs/experiments/*.yaml` are instances; a follow-up experiment run after the arms (experiments/followup.py,
e.g. the synthetic-data augmentation experiment) brings its own section, composed in by the command.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.metrics.metric_names import METRICS, SECTIONS, better_direction, unknown_parts
from cxr_ldm.evaluation.specs import EvaluatorSpec, ProtocolSpec
from cxr_ldm.experiments.threads import resolve_threads
from cxr_ldm.labels import CHEXPERT_LABELS
from cxr_ldm.output_folders import check_output_folder

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Groups of every experiment besides its arms (claims may name them; no arm may take these names).
BUILTIN_GROUPS = ("baseline", "real_test", "vae_reconstructions")
# Groups measured once, whatever the training seed (the pretrained pipeline and the real-image references):
# one value each, with no seed spread (experiments/claims.py).
REFERENCE_GROUPS = (*BUILTIN_GROUPS, "real_validation")


class GroupSource(Protocol):
    """What the spec needs of an experiment that adds claim groups (a follow-up, experiments/followup.py):
    its groups' prefix and description, whether it provides a group, and its own check against the config."""

    prefix: str
    groups: str

    def validate(self, config: ExperimentConfig) -> None: ...

    def provides(self, group: str) -> bool: ...


@dataclass
class PhantomSpec:
    """A phantom made with `cxr_ldm.phantom` when the data root does not exist (or holds other settings)."""

    studies: int = 1600
    size: int = 64
    seed: int = 0


@dataclass
class DataSpec:
    """The real images.

    Args:
        config: a `fit` or data config whose `data:` section describes the images (views, split, prompts).
        root: the data root (a MIMIC-CXR-JPG tree or a phantom folder); it replaces the config's root.
        phantom: make a phantom of these settings at `root` when it is missing; null for real data.
        image_size: the side at which the evaluator, FID and every generated image are compared.
    """

    config: str = "configs/experiments/_phantom/data.yaml"
    root: str = "data/demo-phantom"
    phantom: PhantomSpec | None = field(default_factory=PhantomSpec)
    image_size: int = 64


@dataclass
class RetrieverSpec:
    """The image-text retriever for text-to-image recall: a `fit` config trained once on the real training
    split (seed 0), or an `ImageTextRetriever` checkpoint. `config: null` and `checkpoint: null` skip retrieval."""

    config: str | None = "configs/retriever/tiny-phantom.yaml"
    checkpoint: str | None = None
    max_epochs: int | None = None


@dataclass
class FitSpec:
    """One `fit`: config files applied in order, then dotted-key overrides. The string `{run}` in an
    override value is replaced by the folder of the (arm, seed) run, `{pretrained}` by the pretrained pipeline."""

    configs: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArmSpec:
    """One fine-tuning strategy.

    Args:
        name: short name (folder and table row).
        configs: a `configs/finetune/*.yaml` then override configs, applied in order.
        overrides: dotted-key values after the configs (`{run}` / `{pretrained}` substituted).
        prepare: fits that run before the arm's own, in the same run folder (e.g. pre-training a text projection).
        seeds: this arm's seeds; default: the experiment's.
        probe_prompts: the probe prompt per finding when the arm's prompts cannot be written from labels
            (free-text impressions); default: written as the arm's data module writes prompts.
        checkpoints: seed -> a LatentDiffusion checkpoint trained elsewhere (e.g. `python -m cxr_ldm fit` on
            several GPU nodes with these configs and `--seed_everything SEED`): that seed is judged, not fitted.
    """

    name: str
    configs: list[str]
    overrides: dict[str, Any] = field(default_factory=dict)
    prepare: list[FitSpec] = field(default_factory=list)
    seeds: list[int] | None = None
    probe_prompts: dict[str, str] | None = None
    checkpoints: dict[int, str] = field(default_factory=dict)

    def for_seed(self, seed: int) -> dict:
        """What the arm's (arm, seed) unit reads of it: everything but the other seeds (the `seeds` list, the
        other seeds' `checkpoints`), so that adding a seed, or a checkpoint for one, leaves the other seeds'
        units, their fits and results, as they were."""
        spec = {key: value for key, value in asdict(self).items() if key not in ("seeds", "checkpoints")}
        return {**spec, "checkpoint": self.checkpoints.get(seed)}


@dataclass
class ConvergenceSpec:
    """Train each arm until its learning curve stops improving, with the experiment's `steps` as the cap.

    Every `every_n_steps` a small finding probe (evaluation/learning_curve.py) measures the macro balanced
    accuracy of the model being trained; Lightning's `EarlyStopping` stops the fit after `patience` probes in
    a row that do not beat the best so far by more than `min_delta`. A fit that reaches the cap is converged
    when its last `patience` probes did not beat the best before them by more than `min_delta`, otherwise
    "still rising at the cap", and claims that compare it are undecided (experiments/convergence.py).

    The probe's size is checked against `min_delta` (`standard_error`): with one prompt per finding, n images
    each and F findings, a finding's balanced accuracy is the mean of a sensitivity over n images and a
    specificity over (F - 1) n images, so its variance is at most (1/(4n) + 1/(4(F-1)n)) / 4; the macro mean
    over F findings (taken as independent) has variance at most 1 / (16 n (F - 1)), a standard error of at most
    1 / (4 sqrt(n (F - 1))): 0.0255 for n = 32 and F = 4, below the default min_delta of 0.03.

    Args:
        every_n_steps: training steps between probes (also the validation interval: validation loss and samples at each probe).
        patience: probes without an improvement above `min_delta` before the fit stops.
        min_delta: the smallest rise of the probe's macro balanced accuracy that counts as an improvement.
        min_steps: no fit stops before this many steps (Lightning's `Trainer(min_steps)`): a fit that starts
            on a flat stretch at chance, before its curve takes off, is not taken for one on its plateau.
        images_per_finding / sample_steps: the probe's size (its standard error must be below min_delta).
        guidance / scheduler: the probe's sampler (default: the protocol's guidance and scheduler).
        seed: the probe's images are drawn with seeds seed, seed + 1, ... at every step.
        ceiling_margin: when set, a fit also stops (EarlyStopping's `stopping_threshold`) at the first probe
            within this margin of the evaluator's macro balanced accuracy on the real test images (the
            ceiling, measured before any fit): a model whose images the evaluator reads as well as real ones
            has no room left to show an improvement above `min_delta`. Such a fit is "converged at step N
            (at the real images' level)". None: the patience rule alone.
    """

    every_n_steps: int = 200
    patience: int = 3
    min_delta: float = 0.03
    min_steps: int = 0
    images_per_finding: int = 32
    sample_steps: int = 10
    guidance: float | None = None
    scheduler: str | None = None
    seed: int = 4000
    ceiling_margin: float | None = None

    def standard_error(self, findings: int) -> float:
        """The most the probe's macro balanced accuracy can vary from its images alone (class docstring)."""
        return 1.0 / (4.0 * (self.images_per_finding * max(findings - 1, 1)) ** 0.5)

    def validate(self, findings: int) -> None:
        for key in ("every_n_steps", "patience", "images_per_finding", "sample_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"convergence.{key} must be at least 1, got {getattr(self, key)}")
        if not 0 < self.min_delta < 1:
            raise ConfigError(f"convergence.min_delta must be in (0, 1), got {self.min_delta}")
        if self.min_steps < 0:
            raise ConfigError(f"convergence.min_steps must be at least 0, got {self.min_steps}")
        if self.ceiling_margin is not None and not 0 <= self.ceiling_margin < 1:
            raise ConfigError(
                f"convergence.ceiling_margin must be in [0, 1) or null (no stop at the ceiling), got {self.ceiling_margin}"
            )
        error = self.standard_error(findings)
        if error >= self.min_delta:
            needed = int(1 / (16 * self.min_delta**2 * max(findings - 1, 1))) + 1
            raise ConfigError(
                f"convergence.images_per_finding {self.images_per_finding}: the probe's standard error "
                f"{error:.4f} is not below convergence.min_delta {self.min_delta}; use at least {needed} "
                "images per finding or a larger min_delta"
            )


@dataclass
class Comparison:
    """`a` against `b` on `metric` (a results key, e.g. `probe/cond_balanced_accuracy`).

    relation: `greater` (a better than b beyond the spread) or `at_least` (a not worse than b by more than the
        margin, beyond the spread).
    better: `higher` or `lower`, which side of the metric is better; left out, the metric's own (distances
        such as FID lower, classification and retrieval higher); a metric without one must say it.
    A group is an arm name, `baseline`, `real_test`, `vae_reconstructions`, or a group of a follow-up
    experiment (e.g. `augment/<size>/<condition>` of the augmentation experiment).
    """

    a: str
    b: str
    metric: str
    relation: Literal["greater", "at_least"] = "greater"
    margin: float = 0.0
    better: Literal["higher", "lower"] | None = None

    def direction(self) -> str:
        """`higher` or `lower`: the comparison's own, else its metric's (validated: one of them is known)."""
        return self.better or better_direction(self.metric) or "higher"


@dataclass
class ClaimSpec:
    """A claim of the papers: holds when every comparison holds."""

    id: str
    text: str
    comparisons: list[Comparison]
    source: str = ""


@dataclass
class ExperimentConfig:
    """One experiment (configs/experiments/NAME.yaml).

    Args:
        name: shown in the report.
        out: output folder; a rerun computes only what is missing there.
        pretrained: the pretrained pipeline every arm starts from (a diffusers directory or hub id).
        build_pretrained: build the tiny pretrained pipeline at `pretrained` when it is missing (phantom world).
        seeds: every arm's seeds unless the arm names its own.
        steps: the training budget of every arm (`trainer.max_steps`); null keeps each config's.
        threads: torch's CPU threads in every unit (a unit's input: it changes CPU summation order, so two
            units at once on one machine give what they give one after another), or `auto`: the cores a
            unit has when it runs, resolved by the command before any unit is keyed (experiments/threads.py).
        data / evaluator / retriever / protocol / claims: see their types.
        arms: the fine-tuning strategies compared.
        arm_overrides: dotted-key values every arm's fit gets before the arm's own `overrides` (which win on
            the same key), e.g. the world's image size for all arms at once; they become part of each arm's
            overrides, and so of its units' inputs.
        convergence: record every arm's learning curve and stop each fit on its plateau (`steps` is then the
            cap); null: every fit trains `steps` steps and no curve is recorded.
    """

    name: str = "experiment"
    out: str = "runs/experiment"
    pretrained: str = "artifacts/tiny-pretrained"
    build_pretrained: bool = False
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int | None = None
    threads: int | Literal["auto"] = 1
    data: DataSpec = field(default_factory=DataSpec)
    evaluator: EvaluatorSpec = field(default_factory=EvaluatorSpec)
    retriever: RetrieverSpec = field(default_factory=RetrieverSpec)
    arms: list[ArmSpec] = field(default_factory=list)
    arm_overrides: dict[str, Any] = field(default_factory=dict)
    protocol: ProtocolSpec = field(default_factory=ProtocolSpec)
    claims: list[ClaimSpec] = field(default_factory=list)
    convergence: ConvergenceSpec | None = None

    def __post_init__(self) -> None:
        if self.arm_overrides:  # idempotent: an arm's own value of a key stays
            self.arms = [replace(arm, overrides={**self.arm_overrides, **arm.overrides}) for arm in self.arms]

    def resolved(self, launcher=None) -> ExperimentConfig:
        """This config with `threads: auto` resolved for `launcher` (experiments/threads.py; None: this
        process); the config itself when threads is a number."""
        threads = resolve_threads(self.threads, launcher)
        return self if threads == self.threads else replace(self, threads=threads)

    def arm_seeds(self, arm: ArmSpec) -> list[int]:
        return list(self.seeds if arm.seeds is None else arm.seeds)

    def validate(self, followups: Sequence[GroupSource] = ()) -> ExperimentConfig:
        """Check every value, and the follow-ups run after the arms against them (the groups they provide
        are what claims may name besides the arms and BUILTIN_GROUPS); raise ConfigError naming the key and
        the fix."""
        check_output_folder(self.out, "out:", "the experiment's units, results and report")
        if not self.arms:
            raise ConfigError("arms: name at least one arm (name, configs)")
        names = [arm.name for arm in self.arms]
        reserved = [*BUILTIN_GROUPS, *(f.prefix for f in followups)]
        for index, arm in enumerate(self.arms):
            if not _NAME.match(arm.name) or arm.name in reserved:
                raise ConfigError(
                    f"arms[{index}].name {arm.name!r}: use letters, digits, '-', '_' or '.', and not a reserved "
                    f"group name ({', '.join(reserved)})"
                )
            if not arm.configs:
                raise ConfigError(
                    f"arms[{index}] ({arm.name}): configs is empty; name a configs/finetune/*.yaml"
                )
            seeds = self.arm_seeds(arm)
            if not seeds or len(set(seeds)) != len(seeds):
                raise ConfigError(f"arms[{index}] ({arm.name}): give distinct seeds, got {seeds}")
            if arm.probe_prompts is not None:
                missing = [f for f in self.protocol.findings if f not in arm.probe_prompts]
                if missing:
                    raise ConfigError(f"arms[{index}].probe_prompts: no prompt for {missing}")
        if len(set(names)) != len(names):
            raise ConfigError(f"arms: names must be distinct, got {names}")
        unknown = [f for f in self.protocol.findings if f not in CHEXPERT_LABELS]
        if unknown or not self.protocol.findings:
            raise ConfigError(f"protocol.findings: unknown {unknown}; choose from {list(CHEXPERT_LABELS)}")
        p = self.protocol
        for key in ("probe_images", "sample_steps", "batch_size", "diversity_samples"):
            if getattr(p, key) < 1:
                raise ConfigError(f"protocol.{key} must be at least 1, got {getattr(p, key)}")
        if p.diversity_samples < 2 and p.diversity_prompts > 0:
            raise ConfigError(
                "protocol.diversity_samples: MS-SSIM diversity needs at least 2 samples per prompt"
            )
        resolve_threads(self.threads)  # a number of at least 1, or auto
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be at least 1 (or null), got {self.steps}")
        if self.convergence is not None:
            self.convergence.validate(len(self.protocol.findings))
            if self.steps is not None and self.convergence.min_steps > self.steps:
                raise ConfigError(
                    f"convergence.min_steps {self.convergence.min_steps} is above the cap, steps {self.steps}: "
                    "lower it or raise steps"
                )
        for followup in followups:
            followup.validate(self)
        groups = [*BUILTIN_GROUPS, *(f.groups for f in followups)]
        for claim in self.claims:
            for comparison in claim.comparisons:
                for group in (comparison.a, comparison.b):
                    if not _known_group(group, names, followups):
                        raise ConfigError(
                            f"claims {claim.id}: {group!r} is neither an arm ({names}) nor "
                            f"{', '.join(groups[:-1])} or {groups[-1]}"
                        )
                findings = [*self.protocol.findings, *self.evaluator.classifier.findings]
                if unknown := unknown_parts(comparison.metric, findings):
                    raise ConfigError(
                        f"claims {claim.id}: metric {comparison.metric!r}: {unknown} is no section ({list(SECTIONS)}), "
                        f"metric ({', '.join(METRICS[:7])}, ...) or finding measured ({sorted(set(findings))}); a "
                        "results key is <section>/<metric>[/<finding>], e.g. probe/cond_balanced_accuracy/Edema"
                    )
                known = better_direction(comparison.metric)
                if known is None and comparison.better is None:
                    raise ConfigError(
                        f"claims {claim.id}: whether a higher or a lower {comparison.metric} is better is not "
                        "known: add better: higher or better: lower to the comparison"
                    )
                if known is not None and comparison.better not in (None, known):
                    raise ConfigError(
                        f"claims {claim.id}: a {known} {comparison.metric} is better, not a {comparison.better} "
                        "one: leave better out (to claim the other way round, swap a and b)"
                    )
        return self


def _known_group(group: str, arms: list[str], followups: Sequence[GroupSource]) -> bool:
    if group in arms or group in BUILTIN_GROUPS:
        return True
    prefix = group.split("/", 1)[0]
    return any(f.prefix == prefix and f.provides(group) for f in followups)
