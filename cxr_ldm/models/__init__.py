"""Models: the latent diffusion LightningModule and its parts."""

from cxr_ldm.models.components import ComponentLoadError
from cxr_ldm.models.latent_diffusion import LatentDiffusion
from cxr_ldm.models.trainable import Trainable

__all__ = ["ComponentLoadError", "LatentDiffusion", "Trainable"]
