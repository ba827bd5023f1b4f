"""`Autoencoder`: fine-tune or just evaluate Stable Diffusion's VAE on chest X-rays.

Loss: reconstruction (L1 or MSE) + `kl_weight` x KL of the posterior + optional `perceptual_weight` x a
feature distance from a frozen torchvision VGG-16 loaded from a local weights file (nothing downloads;
off by default). Validation logs RMSE, PSNR and SSIM on [0, 1] images and a grid of originals over
reconstructions to TensorBoard; `validate` alone is the reconstruction study of a frozen VAE.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from lightning import LightningModule
from torch import nn
from torchvision.utils import make_grid

from cxr_ldm.errors import ConfigError
from cxr_ldm.models.components import _load, check_source, resolve_source
from cxr_ldm.models.image_metrics import image_metrics
from cxr_ldm.models.optimizer import scheduled_adamw
from cxr_ldm.models.trainable import freeze
from cxr_ldm.pretrained import absolute_if_local

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualDistance(nn.Module):
    """Mean squared distance between frozen VGG-16 features (up to relu3_3) of two [-1, 1] images."""

    def __init__(self, weights_path: str) -> None:
        super().__init__()
        from torchvision.models import vgg16

        network = vgg16(weights=None)
        try:
            network.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError) as error:
            raise ConfigError(f"model.init_args.perceptual_weights_path '{weights_path}': {error}") from error
        self.features = freeze(network.features[:16])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        def prep(x: torch.Tensor) -> torch.Tensor:
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
            return ((x + 1) / 2 - self.mean) / self.std

        return F.mse_loss(self.features(prep(a)), self.features(prep(b)))


class Autoencoder(LightningModule):
    """Fine-tune a diffusers `AutoencoderKL` with a reconstruction + KL (+ perceptual) loss.

    Args:
        pretrained_model_name_or_path: diffusers pipeline (its `vae` subfolder) or a VAE folder / hub id.
        revision: hub revision.
        vae_config: `AutoencoderKL` config; builds a fresh VAE instead (tiny tests).
        train_encoder: train the encoder too; False trains the decoder only (latents keep their meaning
            for an already trained U-Net).
        lr, weight_decay: AdamW settings.
        reconstruction_loss: `l1` or `mse` on [-1, 1] pixels.
        kl_weight: weight of the posterior's KL term (1e-6 is usual).
        perceptual_weight: weight of the VGG-16 feature distance; needs `perceptual_weights_path`.
        perceptual_weights_path: local torchvision `vgg16` state dict (.pth).
        log_images: how many originals/reconstructions the first validation batch logs.
        lr_scheduler: diffusers learning-rate schedule (`constant`, `cosine`, `linear`, ...), stepped every
            optimizer step; `cosine` with a short warm-up is a one-cycle-like schedule (up to `lr`, then down
            to zero at the fit's last step).
        lr_warmup_steps: steps of linear warm-up from zero to `lr`.
    """

    def __init__(
        self,
        pretrained_model_name_or_path: str | None = None,
        revision: str | None = None,
        vae_config: dict | None = None,
        train_encoder: bool = True,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        reconstruction_loss: Literal["l1", "mse"] = "l1",
        kl_weight: float = 1e-6,
        perceptual_weight: float = 0.0,
        perceptual_weights_path: str | None = None,
        log_images: int = 4,
        lr_scheduler: str = "constant",
        lr_warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if lr_warmup_steps < 0:
            raise ConfigError(f"model.init_args.lr_warmup_steps must be >= 0, got {lr_warmup_steps}")
        # a relative folder kept absolute: the checkpoint loads from any working directory
        pretrained_model_name_or_path = absolute_if_local(pretrained_model_name_or_path)
        self.save_hyperparameters()
        self.vae = self._load_vae(resolve_source(pretrained_model_name_or_path), revision, vae_config)
        if not train_encoder:
            freeze(self.vae.encoder)
            freeze(self.vae.quant_conv) if self.vae.quant_conv is not None else None
        self.perceptual = None
        if perceptual_weight > 0:
            if not perceptual_weights_path:
                raise ConfigError(
                    "model.init_args.perceptual_weight > 0 needs model.init_args.perceptual_weights_path "
                    "(a local torchvision vgg16 state dict; nothing is downloaded)"
                )
            self.perceptual = PerceptualDistance(perceptual_weights_path)

    @staticmethod
    def _load_vae(name: str | None, revision: str | None, vae_config: dict | None) -> AutoencoderKL:
        key = "model.init_args.pretrained_model_name_or_path"
        if vae_config is not None:
            return AutoencoderKL(**vae_config)
        if name is None:
            raise ConfigError(f"give {key} (a pipeline or VAE) or model.init_args.vae_config")
        check_source(name, key)
        try:
            return AutoencoderKL.from_pretrained(name, subfolder="vae", revision=revision)
        except (OSError, ValueError):
            return _load(AutoencoderKL.from_pretrained, name, "VAE", key, revision=revision)

    def _pixels(self, batch: dict) -> torch.Tensor:
        pixels = batch["pixel_values"]
        if pixels.shape[1] == 1 and self.vae.config.in_channels == 3:
            pixels = pixels.expand(-1, 3, -1, -1)
        return pixels.to(self.vae.dtype)

    def reconstruct(self, pixels: torch.Tensor, sample: bool = True):
        posterior = self.vae.encode(pixels).latent_dist
        latents = posterior.sample() if sample else posterior.mode()
        return self.vae.decode(latents).sample, posterior

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        pixels = self._pixels(batch)
        recon, posterior = self.reconstruct(pixels)
        hp = self.hparams
        rec = F.l1_loss(recon, pixels) if hp.reconstruction_loss == "l1" else F.mse_loss(recon, pixels)
        kl = posterior.kl().mean()
        loss = rec + hp.kl_weight * kl
        if self.perceptual is not None:
            loss = loss + hp.perceptual_weight * self.perceptual(recon.float(), pixels.float())
        size = len(pixels)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({"train/reconstruction": rec, "train/kl": kl}, batch_size=size)
        return loss

    @staticmethod
    def image_metrics(recon: torch.Tensor, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """RMSE, PSNR (dB) and SSIM of [-1, 1] images mapped to [0, 1], as the evaluation computes them."""
        return image_metrics(((recon.float() + 1) / 2).clamp(0, 1), ((pixels.float() + 1) / 2).clamp(0, 1))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        pixels = self._pixels(batch)
        recon, _ = self.reconstruct(pixels, sample=False)
        metrics = self.image_metrics(recon, pixels)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, sync_dist=True, batch_size=len(pixels))
        if batch_idx == 0:
            self._log_reconstructions(pixels, recon)

    def _log_reconstructions(self, pixels: torch.Tensor, recon: torch.Tensor) -> None:
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image") or self.global_rank != 0:
            return
        count = min(self.hparams.log_images, len(pixels))
        images = torch.cat([pixels[:count], recon[:count]]).float()
        grid = make_grid(((images + 1) / 2).clamp(0, 1).cpu(), nrow=count, padding=2, pad_value=1.0)
        experiment.add_image("reconstructions/top_original_bottom_reconstructed", grid, self.global_step)

    def configure_optimizers(self):
        params = [p for p in self.vae.parameters() if p.requires_grad]
        h = self.hparams
        return scheduled_adamw(self, params, h.lr, h.weight_decay, h.lr_scheduler, h.lr_warmup_steps)
