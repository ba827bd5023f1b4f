"""VAE reconstruction study: how much does encoding and decoding real X-rays change them?"""

from __future__ import annotations

import torch

from cxr_ldm.models.image_metrics import image_metrics


@torch.no_grad()
def reconstruct(vae, images01: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Encode (posterior mode) and decode (N, 1|3, H, W) images in [0, 1]; returns (N, 1, H, W) in [0, 1]."""
    out = []
    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    for i in range(0, len(images01), batch_size):
        batch = images01[i : i + batch_size].float() * 2 - 1
        if batch.shape[1] == 1 and vae.config.in_channels == 3:
            batch = batch.expand(-1, 3, -1, -1)
        latents = vae.encode(batch.to(device, dtype)).latent_dist.mode()
        decoded = vae.decode(latents).sample.float().cpu()
        out.append(((decoded + 1) / 2).clamp(0, 1).mean(dim=1, keepdim=True))
    return torch.cat(out)


def reconstruction_metrics(
    original01: torch.Tensor,
    reconstructed01: torch.Tensor,
    original_probs: torch.Tensor | None = None,
    reconstructed_probs: torch.Tensor | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """`image_metrics` as `vae_rmse`, `vae_psnr`, `vae_ssim`; with evaluator probabilities, the fraction of
    (image, finding) decisions that the reconstruction leaves unchanged (`vae_evaluator_agreement`)."""
    out = {f"vae_{k}": float(v) for k, v in image_metrics(reconstructed01, original01).items()}
    if original_probs is not None and reconstructed_probs is not None:
        same = (original_probs >= threshold) == (reconstructed_probs >= threshold)
        out["vae_evaluator_agreement"] = float(same.float().mean())
    return out
