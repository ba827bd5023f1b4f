"""The generator: the latent diffusion LightningModule, the VAE fine-tuning module and their parts.

The networks that judge generated images (classifier, retriever) are in `cxr_ldm.evaluation.evaluators`."""

from cxr_ldm.models.autoencoder import Autoencoder
from cxr_ldm.models.components import ComponentLoadError
from cxr_ldm.models.latent_diffusion import LatentDiffusion
from cxr_ldm.models.lora import LoraSpec
from cxr_ldm.models.text_language_model import TextLanguageModel
from cxr_ldm.models.text_projection import TextProjection
from cxr_ldm.models.text_projection_pretrainer import TextProjectionPretrainer
from cxr_ldm.models.textual_inversion import TextualInversionConfig
from cxr_ldm.models.trainable import Trainable

__all__ = [
    "Autoencoder",
    "ComponentLoadError",
    "LatentDiffusion",
    "LoraSpec",
    "TextLanguageModel",
    "TextProjection",
    "TextProjectionPretrainer",
    "TextualInversionConfig",
    "Trainable",
]
