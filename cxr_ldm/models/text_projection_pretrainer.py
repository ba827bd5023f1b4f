"""`TextProjectionPretrainer`: learn a projection from a frozen domain encoder into CLIP's embedding space.

Both encoders stay frozen; only the projection (linear, or one hidden layer) trains, regressing its output
on the frozen CLIP text embeddings of the same prompts (the data module's `prompt` strings). The result is
a projection folder that `LatentDiffusion(conditioning=Conditioning(text_projection_weights=...))` starts from, so the U-Net sees
domain-encoder prompts in (approximately) the space it was pretrained on.

Token positions are aligned by index (`align: position`, both sides padded to `max_prompt_tokens`): the
two tokenizers split words differently, so this is an approximation; `align: mean` regresses the
mean over the real tokens instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_only

from cxr_ldm.errors import ConfigError
from cxr_ldm.models.components import load_text_side
from cxr_ldm.models.text_conditioner import TextConditioner
from cxr_ldm.models.text_projection import TextProjection
from cxr_ldm.models.trainable import freeze
from cxr_ldm.pretrained import absolute_if_local


class TextProjectionPretrainer(LightningModule):
    """Train a `TextProjection` so that projection(domain encoder(prompt)) ~= CLIP(prompt).

    Args:
        text_encoder_name_or_path: the domain encoder (hub id, folder, or `package:<module>/<folder>`).
        tokenizer_name_or_path: its tokenizer, when not stored with the encoder.
        target_pretrained_model_name_or_path: diffusers pipeline whose `text_encoder` is the CLIP target.
        target_text_encoder_config: `CLIPTextConfig` fields building the target instead (tiny tests).
        revision: hub revision of the target pipeline.
        projection: `linear` or `mlp` (one hidden layer).
        hidden_features: hidden width of the `mlp` (default: the larger width).
        max_prompt_tokens: both sides are padded/truncated to this many tokens (CLIP's 77).
        loss: `mse`, or `cosine` (1 - cosine similarity per token).
        align: `position` (token i to token i) or `mean` (mean over real tokens).
        lr: AdamW learning rate; weight_decay: its weight decay.
        output_dir: where the projection folder is written at the end of fit
            (default `<trainer.default_root_dir>/text_projection`).
    """

    def __init__(
        self,
        text_encoder_name_or_path: str,
        tokenizer_name_or_path: str | None = None,
        target_pretrained_model_name_or_path: str | None = None,
        target_text_encoder_config: dict | None = None,
        revision: str | None = None,
        projection: Literal["linear", "mlp"] = "mlp",
        hidden_features: int | None = None,
        max_prompt_tokens: int = 77,
        loss: Literal["mse", "cosine"] = "mse",
        align: Literal["position", "mean"] = "position",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        output_dir: str | None = None,
    ) -> None:
        super().__init__()
        # relative folders kept absolute: the checkpoint loads from any working directory
        target_pretrained_model_name_or_path = absolute_if_local(target_pretrained_model_name_or_path)
        text_encoder_name_or_path = absolute_if_local(text_encoder_name_or_path)
        tokenizer_name_or_path = absolute_if_local(tokenizer_name_or_path)
        self.save_hyperparameters()
        if target_pretrained_model_name_or_path is None and target_text_encoder_config is None:
            raise ConfigError(
                "model.init_args.target_pretrained_model_name_or_path (or target_text_encoder_config) is "
                "needed: the CLIP text encoder whose embedding space the projection maps into"
            )
        source, source_tok = load_text_side(
            None, None, None, text_encoder_name_or_path, tokenizer_name_or_path
        )
        target, target_tok = load_text_side(
            target_pretrained_model_name_or_path,
            revision,
            target_text_encoder_config,
            None,
            "clip" if target_text_encoder_config is not None else None,
            prefix="model.init_args.target_",
        )
        freeze(source)
        freeze(target)
        width = source.config.hidden_size
        self.projection = TextProjection(width, target.config.hidden_size, projection, hidden_features)
        self.source = TextConditioner(source, source_tok, None, max_prompt_tokens)
        self.target = TextConditioner(target, target_tok, None, max_prompt_tokens)

    def _masked_mean(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        prompts = list(batch["prompt"])
        device = self.projection[0].weight.device
        with torch.no_grad():
            src_tokens = self.source.tokenize(prompts)
            src_mask = src_tokens["attention_mask"].to(device)
            source = self.source.encode_tokens(src_tokens["input_ids"].to(device), src_mask)
            tgt_tokens = self.target.tokenize(prompts)
            target = self.target.encode_tokens(tgt_tokens["input_ids"].to(device))
            tgt_mask = tgt_tokens["attention_mask"].to(device)
        predicted = self.projection(source.float())
        target = target.float()
        if self.hparams.align == "mean":
            predicted = self._masked_mean(predicted, src_mask)
            target = self._masked_mean(target, tgt_mask)
        if self.hparams.loss == "cosine":
            loss = (1 - F.cosine_similarity(predicted, target, dim=-1)).mean()
        else:
            loss = F.mse_loss(predicted, target)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(prompts), sync_dist=stage != "train")
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.projection.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    def output_folder(self) -> Path:
        if self.hparams.output_dir:
            return Path(self.hparams.output_dir)
        root = self.trainer.default_root_dir if self._trainer is not None else "."
        return Path(root) / "text_projection"

    @rank_zero_only
    def on_train_end(self) -> None:
        folder = self.projection.save(self.output_folder())
        print(
            f"wrote the text projection to {folder} (model.init_args.conditioning.text_projection_weights: {folder})"
        )
