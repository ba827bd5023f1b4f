"""Synthetic training sets drawn from a real subset's prompts (and labelled with that subset's labels).

One folder per size holds `max_k` images per prompt (the `generate` layout: PNG + metadata.csv); the
`synthetic_<k>x` set is its first k samples of every prompt (`read_generated(folder, per_prompt=k)`), so the 1x set is inside the 5x set and
generation, resumable image by image, happens once per size.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxr_ldm.data.image_set import ImageSet
from cxr_ldm.experiments.synthetic_augmentation.config import SynthesisSettings
from cxr_ldm.generation.generated_folder import METADATA, GenerationSettings, generate_images
from cxr_ldm.generation.prompt_records import prompt_records


def ensure_synthetic(
    source, subset: ImageSet, out: str | Path, per_prompt: int, settings: SynthesisSettings
) -> Path:
    """Draw whatever is missing of `per_prompt` images per subset prompt into `out`; returns `out`."""
    out = Path(out)
    if (out / METADATA).is_file():
        frame = pd.read_csv(out / METADATA, usecols=["sample_index"])
        if len(frame) == len(subset) * per_prompt:
            return out
    generation = GenerationSettings(
        per_prompt=per_prompt,
        guidance_scale=settings.guidance_scale,
        num_inference_steps=settings.num_inference_steps,
        scheduler=settings.scheduler,
        seed=settings.seed,
        batch_size=settings.batch_size,
    )
    return generate_images(source, prompt_records(subset), out, generation, progress=False)
