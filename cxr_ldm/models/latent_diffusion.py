"""`LatentDiffusion`: Stable Diffusion as a LightningModule with configurable frozen components."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Literal

import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.optimization import get_scheduler
from lightning import LightningModule
from torch import nn

from cxr_ldm.data.prompt_tokens import PromptTokenizer
from cxr_ldm.errors import ConfigError
from cxr_ldm.models.components import latent_scaling_factor, load_components
from cxr_ldm.models.cross_attention import rebuild_cross_attention
from cxr_ldm.models.diffusion_loss import add_training_noise, diffusion_loss, prediction_target
from cxr_ldm.models.ema import EmaWeights
from cxr_ldm.models.frozen_dtype import FrozenDtype, training_dtype
from cxr_ldm.models.fused_adamw import make_adamw
from cxr_ldm.models.lora import LoraSpec, add_lora
from cxr_ldm.models.samplers import make_sampler
from cxr_ldm.models.text_conditioner import TextConditioner
from cxr_ldm.models.text_embedding_cache import (
    TextEmbeddingCache,
    build_text_cache,
    cache_prompts,
    text_cache_key,
    text_cache_ready,
)
from cxr_ldm.models.text_projection import TextProjection, load_projection
from cxr_ldm.models.textual_inversion import TextualInversionConfig, add_placeholder_tokens
from cxr_ldm.models.trainable import Trainable, freeze
from cxr_ldm.models.unet_speedups import channels_last_applies, compile_forward, use_channels_last

log = logging.getLogger("cxr_ldm.models")

# Parents before the parts nested in them: a nested part's own choice (train or freeze) wins.
TRAINABLE_COMPONENTS = (
    "unet",
    "text_encoder",
    "text_projection",
    "token_embeddings",
    "unet_lora",
    "text_encoder_lora",
)
TextProjectionChoice = Literal["linear", "mlp", "rebuild_cross_attention"]


class LatentDiffusion(LightningModule):
    """Fine-tune a latent diffusion model on image / report-text pairs.

    Args:
        pretrained_model_name_or_path: diffusers pipeline (hub id or local directory) that supplies every
            component not given an explicit config.
        revision: hub revision of the pipeline.
        vae_config: `AutoencoderKL` config; builds a fresh VAE instead of loading one.
        unet_config: `UNet2DConditionModel` config; builds a fresh U-Net.
        text_encoder_config: `CLIPTextConfig` fields; builds a fresh CLIP text encoder.
        text_encoder_name_or_path: any Hugging Face encoder (hub id or directory) replacing CLIP.
        tokenizer_name_or_path: tokenizer directory or hub id; `clip` builds CLIP's tokenizer offline.
        scheduler_config: `DDPMScheduler` config for the training noise schedule.
        prediction_type: override the schedule's target (`epsilon` or `v_prediction`).
        trainable: components that train (`unet`, `text_encoder`, `text_projection`, `token_embeddings`,
            `unet_lora`, `text_encoder_lora`) with their own learning rate; every component not named here
            is frozen.
        snr_gamma: Min-SNR-gamma loss weighting (5.0 is common); None for plain MSE.
        noise_offset: offset-noise strength (0.05-0.1 helps very dark / bright images).
        condition_dropout: probability of training on the empty prompt, for classifier-free guidance.
        ema_decay: keep an EMA of the trained weights with this decay; None disables it.
        gradient_checkpointing: trade compute for memory in the trained components.
        nonfinite_loss: `raise` stops the run at a non-finite loss; `skip` skips that step (single process).
        lr_scheduler: diffusers scheduler name (`constant`, `cosine`, `linear`, ...).
        lr_warmup_steps: warm-up steps of the learning rate.
        max_prompt_tokens: token limit of the text encoder (default: the tokenizer's own, 77 for CLIP).
        text_projection: how a text encoder meets the U-Net: `linear` or `mlp` (a learned per-token
            projection to `cross_attention_dim`), or `rebuild_cross_attention` (fresh `attn2.to_k/to_v`
            layers of the encoder's width; the U-Net must train). Required when the widths differ.
        text_projection_hidden: hidden width of the `mlp` projection (default: the larger width).
        text_projection_weights: folder written by `TextProjectionPretrainer`; initialises the projection.
        textual_inversion: placeholder tokens added to the tokenizer, trained as `token_embeddings`.
        lora: LoRA adapters per component (`unet`, `text_encoder`), trained as `unet_lora` /
            `text_encoder_lora`.
        fused_adamw: use PyTorch's fused AdamW kernel when every trained parameter is on a CUDA device
            (the same update, fewer kernel launches); ignored on CPU.
        channels_last: store the U-Net in channels-last memory format (faster convolutions on Tensor
            Cores); None turns it on when training on CUDA and off elsewhere.
        compile_unet: `torch.compile` the U-Net's forward at fit start (first steps are slow while it
            compiles); weights, checkpoints, EMA and export are unchanged.
        frozen_in_training_dtype: under `bf16-mixed` / `16-mixed`, store the frozen weights (VAE, frozen
            text encoder, the frozen U-Net under LoRA) in that dtype for the fit instead of re-casting them
            on every forward; checkpoints keep their float32 values and they come back when the fit ends.
        text_embedding_cache: when no text part trains, encode every distinct training and validation
            prompt once at fit start into a cache folder (beside the data module's `cache_dir`, else under
            the run's root dir) and read the U-Net's context from it. Disk: prompts x tokens x width values
            (about 11 GB for 100,000 report prompts with CLIP at bf16).
    """

    def __init__(
        self,
        pretrained_model_name_or_path: str | None = None,
        revision: str | None = None,
        vae_config: dict | None = None,
        unet_config: dict | None = None,
        text_encoder_config: dict | None = None,
        text_encoder_name_or_path: str | None = None,
        tokenizer_name_or_path: str | None = None,
        scheduler_config: dict | None = None,
        prediction_type: Literal["epsilon", "v_prediction"] | None = None,
        trainable: dict[str, Trainable] | None = None,
        snr_gamma: float | None = None,
        noise_offset: float = 0.0,
        condition_dropout: float = 0.1,
        ema_decay: float | None = None,
        gradient_checkpointing: bool = False,
        nonfinite_loss: Literal["raise", "skip"] = "raise",
        lr_scheduler: str = "constant",
        lr_warmup_steps: int = 0,
        max_prompt_tokens: int | None = None,
        text_projection: TextProjectionChoice | None = None,
        text_projection_hidden: int | None = None,
        text_projection_weights: str | None = None,
        textual_inversion: TextualInversionConfig | None = None,
        lora: dict[str, LoraSpec] | None = None,
        fused_adamw: bool = True,
        channels_last: bool | None = None,
        compile_unet: bool = False,
        frozen_in_training_dtype: bool = True,
        text_embedding_cache: bool = False,
    ) -> None:
        super().__init__()
        trainable = {"unet": Trainable()} if trainable is None else dict(trainable)
        unknown = sorted(set(trainable) - set(TRAINABLE_COMPONENTS))
        if unknown:
            hint = " (fine-tune the VAE with cxr_ldm.models.Autoencoder)" if "vae" in unknown else ""
            raise ConfigError(
                f"model.init_args.trainable names unknown component(s) {unknown}{hint}; "
                f"choose from {list(TRAINABLE_COMPONENTS)}"
            )
        if not 0.0 <= condition_dropout < 1.0:
            raise ConfigError("model.init_args.condition_dropout must be in [0, 1)")
        self.save_hyperparameters()
        parts = load_components(
            pretrained_model_name_or_path,
            revision,
            vae_config,
            unet_config,
            text_encoder_config,
            text_encoder_name_or_path,
            tokenizer_name_or_path,
            scheduler_config,
        )
        if prediction_type is not None:
            parts.noise_scheduler.register_to_config(prediction_type=prediction_type)
        self.vae = parts.vae
        self.unet = parts.unet
        projection = self._build_projection(parts, "unet" in trainable)
        tokenizer = parts.tokenizer
        # Nested parts (new token rows, LoRA adapters) live inside the U-Net / encoder; this dict only
        # points at them, so they are not registered twice (no duplicate checkpoint state).
        self._nested: dict[str, nn.Module] = {}
        if textual_inversion is not None:
            if isinstance(textual_inversion, dict):
                textual_inversion = TextualInversionConfig(**textual_inversion)
            tokenizer, spliced = add_placeholder_tokens(parts.text_encoder, tokenizer, textual_inversion)
            self._nested["token_embeddings"] = spliced.added
        self.text = TextConditioner(parts.text_encoder, tokenizer, projection, max_prompt_tokens)
        for component, spec in (lora or {}).items():
            targets = {"unet": self.unet, "text_encoder": self.text.encoder}
            if component not in targets:
                raise ConfigError(f"model.init_args.lora names {component!r}; choose from {sorted(targets)}")
            spec = LoraSpec(**spec) if isinstance(spec, dict) else spec
            self._nested[f"{component}_lora"] = add_lora(targets[component], spec, component)
        self.noise_scheduler = parts.noise_scheduler
        self.trainable = trainable
        self.snr_gamma = snr_gamma
        self.noise_offset = noise_offset
        self.condition_dropout = condition_dropout
        self.nonfinite_loss = nonfinite_loss
        self.nonfinite_steps_skipped = 0
        self.vae_scale = latent_scaling_factor(self.vae)

        missing = [name for name in trainable if name not in self.components()]
        if missing:
            raise ConfigError(
                f"model.init_args.trainable names {missing}, which this model does not have "
                "(token_embeddings needs textual_inversion, *_lora needs lora, text_projection a projection)"
            )
        for name, module in self.components().items():  # parents first: nested parts decide last
            if name not in trainable:
                freeze(module)
                continue
            module.requires_grad_(True)
            if gradient_checkpointing:
                self._enable_checkpointing(module)
        self.ema = EmaWeights(self.trained_named_parameters(), ema_decay) if ema_decay else None
        self.frozen_dtype = FrozenDtype()
        self.text_cache: TextEmbeddingCache | None = None
        self._prompt_tokenizer = PromptTokenizer(self.text.tokenizer, self.text.max_length)
        self._empty_tokens: dict[str, torch.Tensor] | None = None

    # ----------------------------------------------------------------- components and freezing
    def _build_projection(self, parts, unet_trains: bool) -> nn.Module | None:
        """The configured bridge between text encoder width and U-Net `cross_attention_dim`."""
        hp = self.hparams
        width = getattr(parts.text_encoder.config, "hidden_size", None)
        target = parts.unet.config.cross_attention_dim
        choice = hp.text_projection
        key = "model.init_args.text_projection"
        if hp.text_projection_weights is not None:
            if choice == "rebuild_cross_attention":
                raise ConfigError(f"{key}: rebuild_cross_attention takes no text_projection_weights")
            projection = load_projection(hp.text_projection_weights)
            if choice is not None and projection.kind != choice:
                raise ConfigError(
                    f"{key} is {choice!r} but model.init_args.text_projection_weights holds a "
                    f"{projection.kind!r} projection"
                )
            if (projection.in_features, projection.out_features) != (width, target):
                raise ConfigError(
                    f"model.init_args.text_projection_weights maps {projection.in_features} -> "
                    f"{projection.out_features}, but this text encoder is {width} wide and the U-Net's "
                    f"cross_attention_dim is {target}"
                )
            return projection
        if choice in ("linear", "mlp"):
            if width is None:
                raise ConfigError(f"{key}: the text encoder's config has no hidden_size")
            return TextProjection(width, target, choice, hp.text_projection_hidden)
        if choice == "rebuild_cross_attention":
            if not unet_trains:
                raise ConfigError(
                    f"{key}: rebuild_cross_attention makes fresh attn2.to_k/to_v layers, so the U-Net must "
                    "train (add unet to model.init_args.trainable)"
                )
            rebuild_cross_attention(parts.unet, width)
            return None
        if width is None or width == target:
            return None
        raise ConfigError(
            f"the text encoder's width ({width}) differs from the U-Net's cross_attention_dim ({target}): "
            f"set {key} to linear, mlp or rebuild_cross_attention"
        )

    @staticmethod
    def _enable_checkpointing(module: nn.Module) -> None:
        if hasattr(module, "enable_gradient_checkpointing"):
            module.enable_gradient_checkpointing()
        elif hasattr(module, "gradient_checkpointing_enable"):
            module.gradient_checkpointing_enable()

    def components(self) -> dict[str, nn.Module]:
        """Every component that can be frozen or trained, by its config name."""
        found = {"vae": self.vae, "unet": self.unet, "text_encoder": self.text.encoder}
        if self.text.projection is not None:
            found["text_projection"] = self.text.projection
        found.update(self._nested)
        return {name: found[name] for name in ("vae", *TRAINABLE_COMPONENTS) if name in found}

    def owned_parameters(self) -> dict[str, dict[str, nn.Parameter]]:
        """Each component's parameters, a nested part's parameters counted once, under the nested part."""
        seen: set[int] = set()
        owned: dict[str, dict[str, nn.Parameter]] = {}
        for name, module in reversed(list(self.components().items())):
            owned[name] = {}
            for pname, param in module.named_parameters():
                if id(param) not in seen:
                    seen.add(id(param))
                    owned[name][pname] = param
        return owned

    def trained_named_parameters(self) -> dict[str, nn.Parameter]:
        owned = self.owned_parameters()
        return {
            f"{name}.{pname}": param
            for name in self.components()
            if name in self.trainable
            for pname, param in owned[name].items()
            if param.requires_grad
        }

    def text_trains(self) -> bool:
        text_parts = ("text_encoder", "text_projection", "token_embeddings", "text_encoder_lora")
        return any(name in self.trainable for name in text_parts)

    # ----------------------------------------------------------------- encoding
    def encode_images(self, batch: dict) -> torch.Tensor:
        """Scaled latents, from cached posterior parameters when the batch has them."""
        if "latent_parameters" in batch:
            latents = DiagonalGaussianDistribution(batch["latent_parameters"]).sample()
            return latents * self.vae_scale
        pixels = batch["pixel_values"]
        if pixels.shape[1] == 1 and self.vae.config.in_channels == 3:
            pixels = pixels.expand(-1, 3, -1, -1)
        with torch.no_grad():
            latents = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.sample()
        return latents * self.vae_scale

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        with nullcontext() if self.text_trains() else torch.no_grad():
            return self.text(prompts)

    def _drop_conditions(self, prompts: list[str]) -> list[str]:
        dropped = self._dropped_rows(len(prompts))
        return ["" if drop else prompt for prompt, drop in zip(prompts, dropped, strict=True)]

    def _dropped_rows(self, count: int) -> list[bool]:
        """Which rows train on the empty prompt (classifier-free guidance)."""
        if not self.condition_dropout:
            return [False] * count
        return (torch.rand(count) < self.condition_dropout).tolist()

    def condition(self, batch: dict, dropped: Sequence[bool] | None = None) -> torch.Tensor:
        """The U-Net's context for a batch: from the text cache, the batch's tokens, or its prompt strings.

        All three give the same values; `dropped` rows get the empty prompt's context.
        """
        prompts = list(batch["prompt"])
        if self.text_cache is not None and self.text_cache.covers(prompts):
            context, _ = self.text_cache.lookup(prompts, dropped)
            return context.to(self.device, non_blocking=True)
        if "input_ids" not in batch:
            if dropped is not None:
                prompts = ["" if drop else prompt for prompt, drop in zip(prompts, dropped, strict=True)]
            return self.encode_prompts(prompts)
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        if dropped is not None and any(dropped):
            if self._empty_tokens is None:
                self._empty_tokens = self._prompt_tokenizer([""])
            rows = torch.tensor(dropped, device=ids.device)[:, None]
            ids = torch.where(rows, self._empty_tokens["input_ids"].to(ids.device), ids)
            if mask is not None:
                mask = torch.where(rows, self._empty_tokens["attention_mask"].to(mask.device), mask)
        with nullcontext() if self.text_trains() else torch.no_grad():
            return self.text.encode_tokens(
                ids.to(self.device), None if mask is None else mask.to(self.device)
            )

    # ----------------------------------------------------------------- training
    def _shared_step(self, batch: dict, stage: str, generator: torch.Generator | None = None) -> torch.Tensor:
        latents = self.encode_images(batch)
        dropped = self._dropped_rows(len(batch["prompt"])) if stage == "train" else None
        context = self.condition(batch, dropped)
        noisy, noise, timesteps = add_training_noise(
            latents, self.noise_scheduler, self.noise_offset, generator
        )
        prediction = self.unet(noisy, timesteps, encoder_hidden_states=context.to(noisy.dtype)).sample
        target = prediction_target(self.noise_scheduler, latents, noise, timesteps)
        return diffusion_loss(prediction, target, self.noise_scheduler, timesteps, self.snr_gamma)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        loss = self._shared_step(batch, "train")
        if not torch.isfinite(loss):
            return self._handle_nonfinite(loss, batch, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["prompt"]))
        return loss

    def _handle_nonfinite(self, loss: torch.Tensor, batch: dict, batch_idx: int) -> None:
        ids = batch.get("dicom_id")
        where = (
            f"non-finite loss ({loss.item()}) at global step {self.global_step}, batch {batch_idx} "
            f"(batch keys {sorted(batch)}{f', images {list(ids)[:8]}' if ids is not None else ''})"
        )
        if self.nonfinite_loss == "raise":
            raise FloatingPointError(
                f"{where}. Lower the learning rate, prefer bf16-mixed over 16-mixed, check the images, "
                "or set model.init_args.nonfinite_loss: skip to skip such steps."
            )
        self.nonfinite_steps_skipped += 1
        log.warning("skipping step: %s (%d skipped so far)", where, self.nonfinite_steps_skipped)
        self.log("train/nonfinite_steps_skipped", float(self.nonfinite_steps_skipped))
        return None

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        with self.ema_scope():
            loss = self._shared_step(batch, "val", generator)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["prompt"]))
        return loss

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        with self.ema_scope():
            loss = self._shared_step(batch, "test", generator)
        self.log("test/loss", loss, sync_dist=True, batch_size=len(batch["prompt"]))
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        # EMA follows each real optimizer step, before any callback (checkpointing) sees the step end.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update()

    def configure_optimizers(self):
        groups = []
        owned = self.owned_parameters()
        for name, settings in self.trainable.items():
            params = [p for p in owned[name].values() if p.requires_grad]
            groups.append(
                {"params": params, "lr": settings.lr, "weight_decay": settings.weight_decay, "name": name}
            )
        optimizer = make_adamw(groups, fused=self.hparams.fused_adamw)
        total = self.trainer.estimated_stepping_batches if self.trainer is not None else None
        scheduler = get_scheduler(
            self.hparams.lr_scheduler,
            optimizer,
            num_warmup_steps=self.hparams.lr_warmup_steps,
            num_training_steps=int(total) if total and total != float("inf") else None,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------- speed options (fit)
    def setup(self, stage: str) -> None:
        """Hand the tokenizer to the data module; channels-last and compile before the optimizer exists."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_prompt_tokenizer"):
            datamodule.set_prompt_tokenizer(self._prompt_tokenizer)
        if stage != "fit":
            return
        if channels_last_applies(self.hparams.channels_last, self.trainer.strategy.root_device):
            use_channels_last(self.unet)
        if self.hparams.compile_unet:
            compile_forward(self.unet)

    def on_fit_start(self) -> None:
        dtype = training_dtype(self.trainer.precision)
        if self.hparams.frozen_in_training_dtype and dtype is not None:
            frozen = [module for name, module in self.components().items() if name not in self.trainable]
            self.frozen_dtype.cast(self, frozen, dtype)
        if self.hparams.text_embedding_cache:
            self.text_cache = self._open_text_cache()

    def _open_text_cache(self) -> TextEmbeddingCache | None:
        if self.text_trains():
            log.warning("text_embedding_cache is on but a text part trains; encoding prompts every step")
            return None
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "all_prompts"):
            log.warning("text_embedding_cache: the data module has no all_prompts(); encoding every step")
            return None
        prompts = cache_prompts(datamodule.all_prompts())
        autocast_dtype = training_dtype(self.trainer.precision)
        root = Path(getattr(datamodule, "cache_dir", None) or Path(self.trainer.default_root_dir) / "cache")
        folder = root / f"text-embeddings-{text_cache_key(self.text, prompts, autocast_dtype)}"
        if self.trainer.local_rank == 0 and not text_cache_ready(folder):
            log.info("encoding %d prompts into the text-embedding cache %s", len(prompts), folder)
            self.text.eval()
            build_text_cache(self.text, prompts, folder, self.trainer.precision_plugin.forward_context())
        self.trainer.strategy.barrier("text_embedding_cache")
        return TextEmbeddingCache(folder)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Frozen weights cast for the fit are saved with their original (float32) values.
        if self.frozen_dtype.active and "state_dict" in checkpoint:
            self.frozen_dtype.mend_state_dict(checkpoint["state_dict"])

    def teardown(self, stage: str) -> None:
        self.frozen_dtype.restore()
        self.text_cache = None

    # ----------------------------------------------------------------- EMA, sampling, export
    @contextmanager
    def ema_scope(self, enabled: bool = True) -> Iterator[None]:
        """Use the EMA weights inside the block when EMA is on."""
        if self.ema is None or not enabled:
            yield
            return
        with self.ema.swapped_in():
            yield

    def build_pipeline(self, scheduler: str = "pndm") -> StableDiffusionPipeline:
        """A diffusers pipeline sharing this model's modules (no copy)."""
        pipeline = StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text.encoder,
            tokenizer=self.text.tokenizer,
            unet=self.unet,
            scheduler=make_sampler(scheduler, self.noise_scheduler.config),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    @torch.no_grad()
    def sample(
        self,
        prompts: list[str],
        seeds: list[int],
        num_inference_steps: int = 75,
        guidance_scale: float = 4.0,
        scheduler: str = "pndm",
        use_ema: bool = True,
        negative_prompt: str = "",
    ) -> torch.Tensor:
        """Generate one image per (prompt, seed): float32 (B, C, H, W) in [0, 1] on the CPU.

        The U-Net runs in the ambient precision; the VAE decodes in float32 so half-precision VAEs
        cannot produce black images.
        """
        if len(prompts) != len(seeds):
            raise ValueError("sample() needs one seed per prompt")
        was_training = self.unet.training
        self.unet.eval()
        self.text.eval()
        try:
            with self.ema_scope(use_ema), self.frozen_dtype.originals():
                context = self.text(list(prompts))
                uncond = self.text([negative_prompt] * len(prompts))
                generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
                pipeline = self.build_pipeline(scheduler)
                latents = pipeline(
                    prompt_embeds=context.to(self.unet.dtype),
                    negative_prompt_embeds=uncond.to(self.unet.dtype),
                    num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale,
                    generator=generators,
                    output_type="latent",
                ).images
                return self.decode_latents(latents)
        finally:
            if was_training:
                self.unet.train()
                self.text.train()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        device_type = latents.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            vae_dtype = self.vae.dtype
            if vae_dtype != torch.float32:
                self.vae.float()
            try:
                images = self.vae.decode(latents.float() / self.vae_scale).sample
            finally:
                if vae_dtype != torch.float32:
                    self.vae.to(vae_dtype)
        return ((images.float() + 1) / 2).clamp(0, 1).cpu()
