"""`ImageTextRetriever`: a small contrastive image-text model for retrieval-based evaluation.

Offline and tiny on purpose: words and word pairs are hashed into an embedding bag (no vocabulary file, no
tokenizer download), images go through a small CNN, and both meet in a shared unit-norm space trained
with a symmetric InfoNCE loss and a learnable temperature.
"""

from __future__ import annotations

import math
import re
import zlib

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn

_WORD = re.compile(r"[a-z0-9]+")


def hash_tokens(text: str, num_buckets: int) -> list[int]:
    """Stable bucket ids of the lower-cased words and adjacent word pairs of `text` (never empty)."""
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    # Bucket 0 stands for the empty text, so every text has at least one token.
    return [1 + zlib.crc32(g.encode()) % (num_buckets - 1) for g in grams] or [0]


class HashedTextEncoder(nn.Module):
    """Mean of hashed word / bigram embeddings followed by a small MLP."""

    def __init__(self, num_buckets: int, width: int, embed_dim: int) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.bag = nn.EmbeddingBag(num_buckets, width, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, embed_dim))

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = [hash_tokens(t, self.num_buckets) for t in texts]
        device = self.bag.weight.device
        flat = torch.tensor([i for row in ids for i in row], dtype=torch.long, device=device)
        offsets = torch.tensor(
            [0, *torch.tensor([len(r) for r in ids]).cumsum(0)[:-1].tolist()], device=device
        )
        return self.mlp(self.bag(flat, offsets))


class SmallImageEncoder(nn.Module):
    """Conv-BN-ReLU stages with stride 2, global average pooling, linear projection."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(previous, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            previous = width
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(previous, embed_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(F.adaptive_avg_pool2d(self.body(pixels), 1).flatten(1))


class ImageTextRetriever(LightningModule):
    """CLIP-style dual encoder for text-to-image retrieval of generated images.

    Args:
        embed_dim: size of the shared embedding.
        image_size: side the images are resized to (1 channel, batch contract [-1, 1]).
        image_widths: channels of the CNN stages (each halves the resolution).
        text_buckets: hash buckets of the word / bigram embedding bag.
        text_width: width of the text embedding bag and MLP.
        temperature: initial softmax temperature (learned, clamped at 1/100).
        lr, weight_decay: AdamW settings.
    """

    def __init__(
        self,
        embed_dim: int = 64,
        image_size: int = 64,
        image_widths: tuple[int, ...] = (16, 32, 64, 64),
        text_buckets: int = 4096,
        text_width: int = 64,
        temperature: float = 0.07,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_size = image_size
        self.image_encoder = SmallImageEncoder(1, tuple(image_widths), embed_dim)
        self.text_encoder = HashedTextEncoder(text_buckets, text_width, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[1] != 1:
            pixels = pixels.mean(dim=1, keepdim=True)
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            pixels = F.interpolate(
                pixels, size=(self.image_size, self.image_size), mode="bilinear", antialias=True
            )
        return pixels

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings of batch-contract pixels (B, C, H, W) in [-1, 1]."""
        return F.normalize(self.image_encoder(self.prepare(pixels.to(self.device))), dim=-1)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm text embeddings."""
        return F.normalize(self.text_encoder(list(texts)), dim=-1)

    def contrastive_loss(self, images: torch.Tensor, texts: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Symmetric InfoNCE; pairs whose texts are identical count as positives of each other."""
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * images @ texts.t()
        same = torch.tensor(
            [[a == b for b in prompts] for a in prompts], device=logits.device, dtype=logits.dtype
        )
        target = same / same.sum(dim=1, keepdim=True)
        image_loss = torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()
        text_loss = torch.sum(-target * F.log_softmax(logits.t(), dim=1), dim=1).mean()
        return (image_loss + text_loss) / 2

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        prompts = list(batch["prompt"])
        images = self.encode_images(batch["pixel_values"])
        texts = self.encode_texts(prompts)
        loss = self.contrastive_loss(images, texts, prompts)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(prompts), sync_dist=stage != "train")
        if stage != "train":
            top1 = (images @ texts.t()).argmax(dim=1).tolist()
            hits = sum(prompts[j] == prompts[i] for i, j in enumerate(top1)) / len(prompts)
            self.log(f"{stage}/i2t_top1_in_batch", hits, batch_size=len(prompts), sync_dist=True)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
