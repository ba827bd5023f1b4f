"""Images from a model: sampling a `LatentDiffusion` (`sample(model, prompts, seeds, ...)`), prompt sources (a data
module's split, a prompt file, one prompt per finding), the model as an image source (a checkpoint or a diffusers
pipeline), and sampling into a resumable folder."""

from cxr_ldm.generation.finding_prompts import finding_prompts
from cxr_ldm.generation.generated_folder import GenerationSettings, generate_images, read_generated
from cxr_ldm.generation.image_source import load_image_source
from cxr_ldm.generation.prompt_records import PromptRecord, prompts_from_datamodule, read_prompt_file
from cxr_ldm.generation.sampling import build_pipeline, sample

__all__ = [
    "GenerationSettings",
    "PromptRecord",
    "build_pipeline",
    "finding_prompts",
    "generate_images",
    "load_image_source",
    "prompts_from_datamodule",
    "read_generated",
    "read_prompt_file",
    "sample",
]
