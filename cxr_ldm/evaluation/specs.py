"""What an experiment's config sets of its evaluation: how every model is judged (`ProtocolSpec`), the
evaluator classifier (`EvaluatorSpec`) and the CXR classifier's architecture and budget (`ClassifierSettings`).
Plain dataclasses that import nothing of the libraries that evaluate, so that a config is parsed, checked and
printed (`--help`, `--print_config`, a mistyped key) in about a second."""

from __future__ import annotations

from dataclasses import dataclass, field

from cxr_ldm.labels import HEADLINE_FINDINGS


@dataclass
class ClassifierSettings:
    """The CXR classifier's architecture and training budget: the evaluator of an experiment, and every arm
    of the augmentation experiment (same architecture, steps and batch size for all)."""

    findings: list[str] = field(default_factory=lambda: list(HEADLINE_FINDINGS))
    image_size: int = 224
    growth_rate: int = 32
    block_config: list[int] = field(default_factory=lambda: [6, 12, 24, 16])
    num_init_features: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    steps: int = 2000
    batch_size: int = 32
    accelerator: str = "auto"
    precision: str = "32-true"


@dataclass
class ProtocolSpec:
    """How every model (and the pretrained baseline) is judged.

    Args:
        findings: the evaluator's findings and the probes' prompts.
        probe_images: images per finding probe prompt.
        test_prompts: a seeded subset of the real test prompts, one image each (null: all of them).
        guidance: classifier-free guidance of the probes and test-prompt images.
        fid_guidance: also FID / KID on test-prompt images at this guidance (null or equal: not again).
        scheduler / sample_steps: the sampler of every image (docs/evaluation.md: the sampler study).
        diversity_prompts / diversity_samples: MS-SSIM between samples of one prompt, over this many test prompts.
        baseline: also judge the pretrained pipeline before fine-tuning.
        batch_size: images per sampling batch.
    """

    findings: list[str] = field(default_factory=lambda: list(HEADLINE_FINDINGS))
    probe_images: int = 32
    test_prompts: int | None = None
    guidance: float = 4.0
    fid_guidance: float | None = 2.0
    scheduler: str = "dpm++"
    sample_steps: int = 15
    diversity_prompts: int = 16
    diversity_samples: int = 4
    baseline: bool = True
    batch_size: int = 64


@dataclass
class EvaluatorSpec:
    """The CXR classifier that judges generated images: trained on the real training split (operating points
    chosen on the real validation split, fixed before any generated image is seen), or loaded from
    `checkpoint` (a `CxrClassifier` .ckpt; its operating points are still chosen on the validation split)."""

    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    seed: int = 0
    checkpoint: str | None = None
