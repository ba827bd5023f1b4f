"""`TextLanguageModel`: teach a CLIP text encoder language by next-token prediction on report sentences.

Stable Diffusion's CLIP text encoder knew English before the U-Net was trained on it: "cardiomegaly" and
"pneumothorax" reach the U-Net as different states. A CLIP text encoder trained from scratch with the
diffusion loss on captions that never name a finding does not know them (their states are nearly parallel;
docs/paper.md, "Does the text encoder tell the findings apart?"). This module gives a tiny CLIP text encoder
that knowledge from text alone: CLIP's text transformer is causal, so it is trained as a language model,
each position predicting the next token, with the output layer tied to its token embeddings (logits = final
states . token embeddings, plus a bias), cross-entropy over the real tokens of each sentence. The softmax
runs over the tokens the corpus uses (the data module's `vocabulary()`, about 2,200 of CLIP's 49,408: a
token that never occurs is never a target, and the full softmax cost 20x the time), or over the whole
vocabulary without such a data module. No image is seen. `ReportCorpusDataModule` feeds it report sentences; at the end of fit the encoder and its tokenizer
are written with `save_pretrained` into one folder (`output_dir`), as a model repository holds them, which
a diffusion fit loads through `components.text_encoder_name_or_path`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_only

from cxr_ldm.errors import ConfigError
from cxr_ldm.models.components import load_text_side
from cxr_ldm.models.optimizer import scheduled_adamw


class TextLanguageModel(LightningModule):
    """Args:
    text_encoder_config: `CLIPTextConfig` fields (a fresh encoder), or
    text_encoder_name_or_path: a CLIP text encoder to go on training.
    tokenizer_name_or_path: `clip` (CLIP's tokenizer, shipped with the package) or a tokenizer folder.
    lr, weight_decay: AdamW's; lr_scheduler: a transformers schedule name (`cosine`: warm-up, then down
    to zero at the last step); lr_warmup_steps: its warm-up.
    output_dir: the folder the encoder and its tokenizer are written to at the end of fit
    (default `<trainer.default_root_dir>/language_model`).
    """

    def __init__(
        self,
        text_encoder_config: dict | None = None,
        text_encoder_name_or_path: str | None = None,
        tokenizer_name_or_path: str = "clip",
        lr: float = 3e-3,
        weight_decay: float = 0.01,
        lr_scheduler: str = "cosine",
        lr_warmup_steps: int = 0,
        output_dir: str | None = None,
    ) -> None:
        super().__init__()
        if (text_encoder_config is None) == (text_encoder_name_or_path is None):
            raise ConfigError(
                "model.init_args: give one of text_encoder_config (a fresh CLIP text encoder) or "
                "text_encoder_name_or_path (one to go on training)"
            )
        if lr_warmup_steps < 0:
            raise ConfigError(f"model.init_args.lr_warmup_steps {lr_warmup_steps}: give 0 or more")
        self.save_hyperparameters()
        self.text_encoder, self.tokenizer = load_text_side(
            None, None, text_encoder_config, text_encoder_name_or_path, tokenizer_name_or_path
        )
        if not getattr(self.text_encoder.config, "model_type", "").startswith("clip"):
            raise ConfigError(
                f"model.init_args.text_encoder_name_or_path {text_encoder_name_or_path}: a CLIP text encoder "
                "(causal) is needed; a bidirectional encoder cannot be trained to predict the next token"
            )
        vocab_size = self.text_encoder.config.vocab_size
        self.output_bias = torch.nn.Parameter(torch.zeros(vocab_size))
        self.register_buffer("output_ids", torch.arange(vocab_size), persistent=False)
        self.register_buffer("output_rows", torch.arange(vocab_size), persistent=False)  # token id -> row

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "set_tokenizer"):
            datamodule.set_tokenizer(self.tokenizer)
            self.use_vocabulary(datamodule.vocabulary())

    def use_vocabulary(self, token_ids: list[int]) -> None:
        """Let the softmax cover `token_ids` alone (each target must be one of them)."""
        device = self.output_ids.device
        self.output_ids = torch.tensor(token_ids, device=device)
        self.output_rows = torch.full_like(self.output_rows, -1)
        self.output_rows[self.output_ids] = torch.arange(len(token_ids), device=device)

    def next_token_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of each real token given the tokens before it."""
        hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        keep = attention_mask[:, 1:].bool()  # positions whose next token is real
        states = hidden[:, :-1][keep]
        targets = input_ids[:, 1:][keep]
        embeddings = self.text_encoder.get_input_embeddings().weight[self.output_ids]
        logits = states @ embeddings.T + self.output_bias[self.output_ids]
        return F.cross_entropy(logits.float(), self.output_rows[targets])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.next_token_loss(batch["input_ids"], batch["attention_mask"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = self.next_token_loss(batch["input_ids"], batch["attention_mask"])
        self.log("val/loss", loss, batch_size=len(batch["input_ids"]), sync_dist=True)

    def configure_optimizers(self):
        h = self.hparams
        return scheduled_adamw(
            self, self.parameters(), h.lr, h.weight_decay, h.lr_scheduler, h.lr_warmup_steps
        )

    def output_folder(self) -> Path:
        if self.hparams.output_dir:
            return Path(self.hparams.output_dir)
        root = self.trainer.default_root_dir if self._trainer is not None else "."
        return Path(root) / "language_model"

    @rank_zero_only
    def on_train_end(self) -> None:
        folder = self.output_folder()
        self.text_encoder.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
