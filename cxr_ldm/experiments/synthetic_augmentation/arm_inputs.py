"""What an arm's result is a function of. Each arm's result file records the digest of its inputs, so a rerun
reuses only arms made from the same ones: another classifier budget, data section, sampler or model computes
them again instead of averaging results of unequal arms together."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from cxr_ldm.experiments.synthetic_augmentation.config import AugmentationConfig, condition_parts
from cxr_ldm.experiments.synthetic_augmentation.plan import Arm
from cxr_ldm.experiments.units import digest, file_digest
from cxr_ldm.generation.generated_folder import model_fingerprint


def model_identity(config: AugmentationConfig, source=None) -> str | None:
    """The model that draws the synthetic sets: the fingerprint of `diffusion.model` (its file's bytes, or a
    pipeline folder's), the fine-tune's config (its bytes) and overrides, or None when it cannot be known (a
    `source` handed in: a model in memory) or no condition needs one."""
    if source is not None or not config.synthetic_multiples():
        return None
    d = config.diffusion
    if d.model is not None:
        return model_fingerprint(d.model)
    if d.finetune_config is not None:
        return digest({"finetune_config": file_digest(Path(d.finetune_config)), "overrides": d.overrides()})
    return None


def arm_inputs(config: AugmentationConfig, arm: Arm, model: str | None) -> str | None:
    """The digest of everything `arm`'s result depends on; None when it cannot be known (a synthetic part
    drawn by a model of unknown identity), so such an arm is never reused."""
    data = Path(config.data)
    inputs: dict = {
        "data": config.data,
        "data_file": file_digest(data) if data.is_file() else None,
        "data_overrides": config.data_overrides,
        "test_split": config.test_split,
        "arm": asdict(arm),
        "classifier": asdict(config.classifier),
    }
    if any(kind == "synthetic" for kind, _ in condition_parts(arm.condition)):
        if model is None:
            return None
        s = config.synthesis
        inputs["synthesis"] = {
            "model": model,
            # a size's folder holds the largest multiple; each image's seed depends on it
            "per_prompt": max(config.synthetic_multiples()),
            "guidance_scale": s.guidance_scale,
            "num_inference_steps": s.num_inference_steps,
            "scheduler": s.scheduler,
            "seed": s.seed,
        }
    return digest(inputs)
