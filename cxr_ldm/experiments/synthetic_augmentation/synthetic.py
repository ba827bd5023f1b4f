"""Synthetic training sets drawn from a real subset's prompts (and labelled with that subset's labels).

One folder per size holds `max_k` images per prompt (the `generate` layout: PNG + metadata.csv); the
`synthetic_<k>x` set is its first k samples of every prompt (`read_generated(folder, per_prompt=k)`), so the 1x set is inside the 5x set and
generation, resumable image by image, happens once per size. A folder drawn with other settings or another
model (arm_inputs.py `model_identity`), or by a model whose identity is unknown, is drawn again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.experiments.synthetic_augmentation.config import SynthesisSettings
from cxr_ldm.generation.generated_folder import (
    RECORD,
    GenerationSettings,
    generate_images,
    generation_record,
    record_differences,
)
from cxr_ldm.generation.prompt_records import prompt_records

LOG = logging.getLogger("cxr_ldm.experiments.synthetic_augmentation")


def ensure_synthetic(
    source,
    subset: ImageSet,
    out: str | Path,
    per_prompt: int,
    settings: SynthesisSettings,
    model: str | None = None,
) -> Path:
    """Draw whatever is missing of `per_prompt` images per subset prompt into `out`; returns `out`. `model`:
    the drawing model's fingerprint (None: unknown, so images already in `out` are drawn again)."""
    out = Path(out)
    generation = GenerationSettings(
        per_prompt=per_prompt,
        guidance_scale=settings.guidance_scale,
        num_inference_steps=settings.num_inference_steps,
        scheduler=settings.scheduler,
        seed=settings.seed,
        batch_size=settings.batch_size,
    )
    records = prompt_records(subset)
    stale = None
    if (out / RECORD).is_file():
        changes = record_differences(
            json.loads((out / RECORD).read_text()), generation_record(records, generation, model)
        )
        if changes or model is None:
            stale = "; ".join(changes) or "the drawing model's identity is unknown"
            LOG.warning("drawing %s again: its images were made with other inputs (%s)", out, stale)
    return generate_images(
        source, records, out, generation, progress=False, model=model, overwrite=stale is not None
    )
