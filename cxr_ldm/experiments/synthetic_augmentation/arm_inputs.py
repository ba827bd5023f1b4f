"""What an arm's result is a function of. Each arm's result file records the digest of its inputs, so a rerun
reuses only arms made from the same ones: another classifier budget, data section, sampler or model computes
them again instead of averaging results of unequal arms together."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from cxr_ldm.data.file_identity import file_digest
from cxr_ldm.data.latent_cache import weights_hash
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.synthetic_augmentation.config import AugmentationConfig, condition_parts
from cxr_ldm.experiments.synthetic_augmentation.plan import Arm
from cxr_ldm.experiments.units import digest
from cxr_ldm.generation.generated_folder import model_fingerprint

# data options that change how fast the images are read or where their caches live, not which images or how
# they look (the data's root stays an input: another tree may hold other images under the same names)
HOW_FAST_NOT_WHAT = ("cache_dir", "num_workers", "image_cache", "pin_memory", "persistent_workers")


def data_inputs(data_overrides: dict) -> dict:
    """The data options a result depends on: `data_overrides` less how fast the data is read and where its
    caches live (another cache folder reads the same images)."""
    return {key: value for key, value in data_overrides.items() if key not in HOW_FAST_NOT_WHAT}


def model_identity(config: AugmentationConfig, source=None) -> str | None:
    """The model that draws the synthetic sets: the fingerprint of `diffusion.model` (its file's bytes, or a
    pipeline folder's), the fine-tune's config (its bytes), overrides and data options, or for a `source`
    handed in (the model in memory at the end of a fit) its weights; None when no condition needs one or it
    cannot be known (a source that is no LatentDiffusion)."""
    if not config.synthetic_multiples():
        return None
    if source is not None:
        model = getattr(source, "model", None)
        return None if model is None else f"weights:{weights_digest(model)}"
    d = config.diffusion
    if d.model is not None:
        if not Path(d.model).exists():
            raise ConfigError(
                f"diffusion.model {d.model} does not exist; give a LatentDiffusion .ckpt or a pipeline folder"
            )
        return model_fingerprint(d.model)
    if d.finetune_config is not None:
        return digest({"finetune_config": file_digest(Path(d.finetune_config)), "overrides": d.overrides(),
                       "data": data_inputs(config.data_overrides)})  # fmt: skip
    return None


def weights_digest(model) -> str:
    """The weights of a model in memory, its EMA shadows included (data/latent_cache.py `weights_hash`): the
    same weights give the same digest in any process."""
    ema = getattr(model, "ema", None)
    shadows = (
        {f"ema/{name}": shadow for name, shadow in ema.named_shadows().items()} if ema is not None else None
    )
    return weights_hash(model, shadows)


def arm_inputs(config: AugmentationConfig, arm: Arm, model: str | None) -> str | None:
    """The digest of everything `arm`'s result depends on; None when it cannot be known (a synthetic part
    drawn by a model of unknown identity), so such an arm is never reused."""
    data = Path(config.data)
    inputs: dict = {
        "data": config.data,
        "data_file": file_digest(data) if data.is_file() else None,
        "data_overrides": data_inputs(config.data_overrides),
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
