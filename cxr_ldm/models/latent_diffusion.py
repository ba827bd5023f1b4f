"""`LatentDiffusion`: Stable Diffusion as a LightningModule with configurable frozen components."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.optimization import get_scheduler
from lightning import Callback, LightningModule
from torch import nn

from cxr_ldm.checkpoints import drop_frozen, find_frozen_pretrained, restore_frozen
from cxr_ldm.data.prompt_tokens import PromptTokenizer
from cxr_ldm.errors import ConfigError
from cxr_ldm.models.components import latent_scaling_factor, load_components
from cxr_ldm.models.cross_attention import rebuild_cross_attention
from cxr_ldm.models.diffusion_loss import add_training_noise, diffusion_loss, prediction_target
from cxr_ldm.models.diffusion_parts import (
    PARTS,
    Components,
    Conditioning,
    Ema,
    Objective,
    Optimization,
    Speed,
    as_part,
    upgrade_flat_arguments,
)
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
from cxr_ldm.models.textual_inversion import add_placeholder_tokens
from cxr_ldm.models.trainable import Trainable, as_dataclass, freeze, plain_data
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


class LatentDiffusion(LightningModule):
    """Fine-tune a latent diffusion model on image / report-text pairs.

    Built from typed parts (`cxr_ldm.models.diffusion_parts`), each with its own fields and docstring; a
    config sets them under `model.init_args` as nested mappings or dotted keys.

    Args:
        components: where the VAE, U-Net, text encoder, tokenizer and noise schedule come from.
        trainable: components that train (`unet`, `text_encoder`, `text_projection`, `token_embeddings`,
            `unet_lora`, `text_encoder_lora`) with their own learning rate; every component not named here
            is frozen.
        lora: LoRA adapters per component (`unet`, `text_encoder`), trained as `unet_lora` /
            `text_encoder_lora`.
        objective: the loss (Min-SNR weighting, offset noise, condition dropout) and what a non-finite loss does.
        conditioning: how the text reaches the U-Net (token limit, projection, textual inversion, cache).
        ema: an exponential moving average of the trained weights.
        optimization: the learning-rate schedule and AdamW kernel.
        speed: options that change speed and memory only (checkpointing, channels-last, compile, dtype).
        flat_arguments: the flat keyword arguments of checkpoints written before the parts existed
            (`snr_gamma`, `ema_decay`, ...), moved into their part with a warning.
    """

    def __init__(
        self,
        components: Components = Components(),
        *,
        trainable: dict[str, Trainable] | None = None,
        lora: dict[str, LoraSpec] | None = None,
        objective: Objective = Objective(),
        conditioning: Conditioning = Conditioning(),
        ema: Ema = Ema(),
        optimization: Optimization = Optimization(),
        speed: Speed = Speed(),
        **flat_arguments: Any,
    ) -> None:
        super().__init__()
        given = {"components": components, "objective": objective, "conditioning": conditioning,
                 "ema": ema, "optimization": optimization, "speed": speed}  # fmt: skip
        given = upgrade_flat_arguments(given, flat_arguments)
        parts = {
            name: as_part(PARTS[name], value, f"model.init_args.{name}") for name, value in given.items()
        }
        self.components_spec: Components = parts["components"]
        self.objective: Objective = parts["objective"]
        self.conditioning: Conditioning = parts["conditioning"]
        self.ema_spec: Ema = parts["ema"]
        self.optimization: Optimization = parts["optimization"]
        self.speed: Speed = parts["speed"]
        # Hyperparameters hold plain data only, so checkpoints load with torch's weights_only=True; the
        # dataclasses are rebuilt from them on load.
        trainable = plain_data({"unet": Trainable()} if trainable is None else trainable)
        lora = plain_data(lora)
        unknown = sorted(set(trainable) - set(TRAINABLE_COMPONENTS))
        if unknown:
            hint = " (fine-tune the VAE with cxr_ldm.models.Autoencoder)" if "vae" in unknown else ""
            raise ConfigError(
                f"model.init_args.trainable names unknown component(s) {unknown}{hint}; "
                f"choose from {list(TRAINABLE_COMPONENTS)}"
            )
        self.save_hyperparameters(
            {"trainable": trainable, "lora": lora, **{name: plain_data(part) for name, part in parts.items()}}
        )
        trainable = {name: as_dataclass(Trainable, spec) for name, spec in trainable.items()}
        spec = self.components_spec
        loaded_parts = load_components(
            spec.pretrained_model_name_or_path,
            spec.revision,
            spec.vae_config,
            spec.unet_config,
            spec.text_encoder_config,
            spec.text_encoder_name_or_path,
            spec.tokenizer_name_or_path,
            spec.scheduler_config,
        )
        if spec.prediction_type is not None:
            # from_config (not register_to_config): diffusers drops values it thinks are defaults when a
            # config is copied into another scheduler, which would lose the override at sampling and export.
            loaded_parts.noise_scheduler = type(loaded_parts.noise_scheduler).from_config(
                loaded_parts.noise_scheduler.config, prediction_type=spec.prediction_type
            )
        loaded = self._pretrained_tensors(loaded_parts)
        if getattr(loaded_parts.text_encoder, "pooler", None) is not None:
            # Only the hidden states condition the U-Net: a pooler (BERT family) would get no gradient,
            # which DDP refuses on the next step, and would sit in the optimizer for nothing.
            loaded_parts.text_encoder.pooler = None
        self.vae = loaded_parts.vae
        self.unet = loaded_parts.unet
        projection = self._build_projection(loaded_parts, "unet" in trainable)
        tokenizer = loaded_parts.tokenizer
        # Nested parts (new token rows, LoRA adapters) live inside the U-Net / encoder; this dict only
        # points at them, so they are not registered twice (no duplicate checkpoint state).
        self._nested: dict[str, nn.Module] = {}
        if self.conditioning.textual_inversion is not None:
            tokenizer, spliced = add_placeholder_tokens(
                loaded_parts.text_encoder, tokenizer, self.conditioning.textual_inversion
            )
            self._nested["token_embeddings"] = spliced.added
        self.text = TextConditioner(
            loaded_parts.text_encoder, tokenizer, projection, self.conditioning.max_prompt_tokens
        )
        for component, lora_spec in (lora or {}).items():
            targets = {"unet": self.unet, "text_encoder": self.text.encoder}
            if component not in targets:
                raise ConfigError(f"model.init_args.lora names {component!r}; choose from {sorted(targets)}")
            lora_spec = as_dataclass(LoraSpec, lora_spec)
            self._nested[f"{component}_lora"] = add_lora(targets[component], lora_spec, component)
        self.noise_scheduler = loaded_parts.noise_scheduler
        self.trainable = trainable
        self.nonfinite_steps_skipped = 0
        self._batches_since_step = 0  # micro-batches whose loss went into the coming optimizer step
        self._unchecked: list[tuple[int, int, str]] = []  # (step, batch, batch description) not yet checked
        self._first_nonfinite: torch.Tensor | None = None  # device index into _unchecked, -1 when none
        self._device_generator: torch.Generator | None = None
        self.vae_scale = latent_scaling_factor(self.vae)

        missing = [name for name in trainable if name not in self.components()]
        if missing:
            raise ConfigError(
                f"model.init_args.trainable names {missing}, which this model does not have "
                "(token_embeddings needs conditioning.textual_inversion, *_lora needs lora, "
                "text_projection needs conditioning.text_projection)"
            )
        for name, module in self.components().items():  # parents first: nested parts decide last
            if name not in trainable:
                freeze(module)
                continue
            module.requires_grad_(True)
        if self.speed.gradient_checkpointing:
            for module in self._gradient_path():
                self._enable_checkpointing(module)
            if "text_encoder" not in trainable and self.text.encoder in self._gradient_path():
                # transformers checkpoints a layer only in train mode; a frozen encoder stays in eval mode, so
                # only its checkpointed layers' own flag is set (their dropout-bearing children stay in eval).
                for layer in self.text.encoder.modules():
                    if getattr(layer, "gradient_checkpointing", False) is True:
                        layer.training = True
        decay = self.ema_spec.decay
        self.ema = EmaWeights(self.trained_named_parameters(), decay) if decay else None
        self.frozen_dtype = FrozenDtype()
        self.text_cache: TextEmbeddingCache | None = None
        self._prompt_tokenizer = PromptTokenizer(self.text.tokenizer, self.text.max_length)
        self._empty_tokens: dict[str, torch.Tensor] | None = None
        frozen = set(self.components()) - set(trainable)
        self._frozen_pretrained = find_frozen_pretrained(self.state_dict(keep_vars=True), loaded, frozen)

    def _pretrained_tensors(self, parts) -> dict[str, tuple[str, list[torch.Tensor]]]:
        """{component: (source, its tensors)} for the components loaded from a pretrained source.

        The tensors themselves, not their ids: a tensor dropped meanwhile (a BERT pooler) could otherwise
        hand its id to a new one (a fresh projection), which would then pass for pretrained."""
        spec = self.components_spec
        base = f"{spec.pretrained_model_name_or_path}{f'@{spec.revision}' if spec.revision else ''}"
        candidates = (
            ("vae", parts.vae, spec.vae_config, f"{base} (vae)"),
            ("unet", parts.unet, spec.unet_config, f"{base} (unet)"),
            ("text_encoder", parts.text_encoder, spec.text_encoder_config,
             spec.text_encoder_name_or_path or f"{base} (text_encoder)"),
        )  # fmt: skip
        return {
            name: (source, [*module.parameters(), *module.buffers()])
            for name, module, config, source in candidates
            if config is None
        }

    # ----------------------------------------------------------------- components and freezing
    def _build_projection(self, parts, unet_trains: bool) -> nn.Module | None:
        """The configured bridge between text encoder width and U-Net `cross_attention_dim`."""
        spec = self.conditioning
        width = getattr(parts.text_encoder.config, "hidden_size", None)
        target = parts.unet.config.cross_attention_dim
        choice = spec.text_projection
        key = "model.init_args.conditioning.text_projection"
        weights_key = "model.init_args.conditioning.text_projection_weights"
        if spec.text_projection_weights is not None:
            if choice == "rebuild_cross_attention":
                raise ConfigError(f"{key}: rebuild_cross_attention takes no text_projection_weights")
            projection = load_projection(spec.text_projection_weights, weights_key)
            if choice is not None and projection.kind != choice:
                raise ConfigError(
                    f"{key} is {choice!r} but {weights_key} holds a {projection.kind!r} projection"
                )
            if (projection.in_features, projection.out_features) != (width, target):
                raise ConfigError(
                    f"{weights_key} maps {projection.in_features} -> "
                    f"{projection.out_features}, but this text encoder is {width} wide and the U-Net's "
                    f"cross_attention_dim is {target}"
                )
            return projection
        if choice in ("linear", "mlp"):
            if width is None:
                raise ConfigError(f"{key}: the text encoder's config has no hidden_size")
            return TextProjection(width, target, choice, spec.text_projection_hidden)
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

    def _gradient_path(self) -> list[nn.Module]:
        """The large components gradients pass through, trained or not (e.g. a frozen U-Net under LoRA,
        textual projection or textual inversion): where gradient checkpointing saves memory."""
        path = [self.unet] if self.trainable else []
        if any(name in self.trainable for name in ("text_encoder", "text_encoder_lora", "token_embeddings")):
            path.append(self.text.encoder)
        return path

    @staticmethod
    def _enable_checkpointing(module: nn.Module) -> None:
        if hasattr(module, "enable_gradient_checkpointing"):
            module.enable_gradient_checkpointing()
        elif hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5 (non-reentrant)
            module.activation_checkpointing_enable()
        elif hasattr(module, "gradient_checkpointing_enable"):
            # non-reentrant: also correct when the module's own inputs need no gradient (frozen embeddings)
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

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
    def encode_images(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scaled latents (a posterior sample drawn with `generator`), from cached posterior parameters when
        the batch has them."""
        if "latent_parameters" in batch:
            latents = DiagonalGaussianDistribution(batch["latent_parameters"]).sample(generator)
            return latents * self.vae_scale
        pixels = batch["pixel_values"]
        if pixels.shape[1] == 1 and self.vae.config.in_channels == 3:
            pixels = pixels.expand(-1, 3, -1, -1)
        with torch.no_grad():
            latents = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.sample(generator)
        return latents * self.vae_scale

    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(context, cross-attention mask or None); see `TextConditioner.encode`."""
        with nullcontext() if self.text_trains() else torch.no_grad():
            return self.text.encode(prompts)

    def _dropped_rows(self, count: int, generator: torch.Generator | None = None) -> list[bool]:
        """Which rows train on the empty prompt (classifier-free guidance)."""
        dropout = self.objective.condition_dropout
        if not dropout:
            return [False] * count
        return (torch.rand(count, generator=generator) < dropout).tolist()

    def condition(
        self, batch: dict, dropped: Sequence[bool] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(context, cross-attention mask or None) for a batch: from the text-embedding cache, the batch's
        tokens (tokenized in the DataLoader workers), or its prompt strings.

        All three give the same values; `dropped` rows get the empty prompt's context.
        """
        prompts = list(batch["prompt"])
        if self.text_cache is not None and self.text_cache.covers(prompts):
            context, mask = self.text_cache.lookup(prompts, dropped)
            mask = mask.to(self.device, non_blocking=True) if self.text.use_attention_mask else None
            return context.to(self.device, non_blocking=True), mask
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
        # non_blocking: a blocking host-to-device copy would wait for all queued GPU work every step
        mask = None if mask is None else mask.to(self.device, non_blocking=True)
        with nullcontext() if self.text_trains() else torch.no_grad():
            context = self.text.encode_tokens(ids.to(self.device, non_blocking=True), mask)
        return context, mask if self.text.use_attention_mask else None

    # ----------------------------------------------------------------- training
    def training_generators(self, batch_idx: int) -> tuple[torch.Generator, torch.Generator]:
        """(device generator, CPU generator) of one training micro-batch.

        Seeded from (run seed, rank, global step, batch index): every DDP rank draws its own noise,
        timesteps, posterior samples and condition dropout, and a resumed run draws exactly what an
        uninterrupted one would have, with no generator state to save.
        """
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        key = hash((seed, self.global_rank, self.global_step, batch_idx)) & (2**63 - 1)
        cached = self._device_generator
        if cached is None or cached.device != self.device:
            cached = self._device_generator = torch.Generator(device=self.device)
        return cached.manual_seed(key), torch.Generator().manual_seed(key)

    def _shared_step(
        self,
        batch: dict,
        stage: str,
        generator: torch.Generator | None = None,
        cpu_generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        latents = self.encode_images(batch, generator)
        dropped = self._dropped_rows(len(batch["prompt"]), cpu_generator) if stage == "train" else None
        context, mask = self.condition(batch, dropped)
        noisy, noise, timesteps = add_training_noise(
            latents, self.noise_scheduler, self.objective.noise_offset, generator
        )
        prediction = self.unet(
            noisy, timesteps, encoder_hidden_states=context.to(noisy.dtype), encoder_attention_mask=mask
        ).sample
        target = prediction_target(self.noise_scheduler, latents, noise, timesteps)
        return diffusion_loss(prediction, target, self.noise_scheduler, timesteps, self.objective.snr_gamma)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        loss = self._shared_step(batch, "train", *self.training_generators(batch_idx))
        if self.objective.nonfinite_loss == "skip":
            if not torch.isfinite(loss):  # deciding to skip needs the value now: one host sync per step
                return self._skip_nonfinite(loss, batch, batch_idx)
        else:
            self._note_finiteness(loss, batch, batch_idx)
            every = max(1, int(getattr(self._trainer, "log_every_n_steps", 1) or 1))
            if self.global_step % every == 0:  # the logging steps sync anyway
                self.check_nonfinite()
        self._batches_since_step += 1
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["prompt"]))
        return loss

    @staticmethod
    def _describe(batch: dict, batch_idx: int) -> str:
        ids = batch.get("dicom_id")
        return f"batch {batch_idx} (batch keys {sorted(batch)}{f', images {list(ids)[:8]}' if ids is not None else ''})"

    def _note_finiteness(self, loss: torch.Tensor, batch: dict, batch_idx: int) -> None:
        """Record, on the device, whether this loss is finite; look at it on the host only now and then."""
        index = len(self._unchecked)
        self._unchecked.append((self.global_step, batch_idx, self._describe(batch, batch_idx)))
        here = torch.where(torch.isfinite(loss.detach()), -1, index)
        first = self._first_nonfinite
        self._first_nonfinite = here if first is None else torch.where(first >= 0, first, here)

    def check_nonfinite(self) -> None:
        """Raise if a loss since the last check was non-finite (one host sync)."""
        first, unchecked = self._first_nonfinite, self._unchecked
        self._first_nonfinite, self._unchecked = None, []
        if first is None or int(first) < 0:
            return
        step, _, where = unchecked[int(first)]
        raise FloatingPointError(
            f"non-finite loss at global step {step}, {where}. Lower the learning rate, prefer bf16-mixed "
            "over 16-mixed, check the images, or set model.init_args.objective.nonfinite_loss: skip to skip such steps."
        )

    def _skip_nonfinite(self, loss: torch.Tensor, batch: dict, batch_idx: int) -> None:
        where = f"non-finite loss ({loss.item()}) at global step {self.global_step}, " + self._describe(
            batch, batch_idx
        )
        self.nonfinite_steps_skipped += 1
        limit = self.objective.nonfinite_max_skips
        if self.nonfinite_steps_skipped > limit:
            raise FloatingPointError(
                f"{where}: {self.nonfinite_steps_skipped} steps skipped, more than "
                f"model.init_args.objective.nonfinite_max_skips ({limit}); the run has diverged. "
                "Lower the learning rate, prefer bf16-mixed over 16-mixed, or check the images."
            )
        log.warning("skipping step: %s (%d skipped so far)", where, self.nonfinite_steps_skipped)
        self.log("train/nonfinite_steps_skipped", float(self.nonfinite_steps_skipped))
        return None

    def on_train_epoch_end(self) -> None:
        self.check_nonfinite()

    def on_train_end(self) -> None:
        self.check_nonfinite()

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
        # EMA follows each real optimizer step, before any callback (checkpointing) sees the step end; a
        # step whose every micro-batch was skipped (non-finite) is no update.
        super().optimizer_step(*args, **kwargs)
        real, self._batches_since_step = self._batches_since_step, 0
        if self.ema is not None and real:
            self.ema.update()

    # ----------------------------------------------------------------- checkpoint contents
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.objective.nonfinite_loss == "raise" and self._fitting():
            # Never write weights a non-finite step has reached, whether the save comes from a training
            # hook or from validation's end (ModelCheckpoint with validation, or monitoring val/loss).
            self.check_nonfinite()
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()
        checkpoint["nonfinite_steps_skipped"] = self.nonfinite_steps_skipped
        drop_frozen(checkpoint, self._frozen_pretrained)  # rebuilt from their source on load
        # Frozen weights cast for the fit are saved with their original (float32) values; only those still
        # in the checkpoint (after the pretrained ones were dropped) are copied back.
        if self.frozen_dtype.active and "state_dict" in checkpoint:
            self.frozen_dtype.mend_state_dict(checkpoint["state_dict"])

    def _fitting(self) -> bool:
        trainer = self._trainer
        return trainer is not None and trainer.state.fn == "fit"

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_frozen(checkpoint, self._frozen_pretrained, self.state_dict(keep_vars=True))
        state = checkpoint["state_dict"]
        legacy = {k: state.pop(k) for k in [k for k in state if k.startswith("ema.")]}  # EMA as buffers
        for key in [k for k in state if k.startswith("text.encoder.pooler.")]:  # the pooler is not built
            del state[key]
        if self.ema is not None:
            if "ema" in checkpoint:
                self.ema.load_state_dict(checkpoint["ema"])
            elif legacy:
                names = list(self.ema.named_shadows())
                shadows = {name: legacy[f"ema.shadow_{i}"] for i, name in enumerate(names)}
                self.ema.load_state_dict({"shadows": shadows, "num_updates": legacy["ema.num_updates"]})
        self.nonfinite_steps_skipped = int(checkpoint.get("nonfinite_steps_skipped", 0))

    def configure_optimizers(self):
        groups = []
        owned = self.owned_parameters()
        for name, settings in self.trainable.items():
            params = [p for p in owned[name].values() if p.requires_grad]
            groups.append(
                {"params": params, "lr": settings.lr, "weight_decay": settings.weight_decay, "name": name}
            )
        optimizer = make_adamw(groups, fused=self.optimization.fused_adamw)
        total = self.trainer.estimated_stepping_batches if self.trainer is not None else None
        scheduler = get_scheduler(
            self.optimization.lr_scheduler,
            optimizer,
            num_warmup_steps=self.optimization.lr_warmup_steps,
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
        if self.objective.nonfinite_loss == "skip" and self.trainer.world_size > 1:
            raise ConfigError(
                "model.init_args.objective.nonfinite_loss: skip works in a single process only (Lightning cannot skip "
                f"a step on one of {self.trainer.world_size} DDP ranks); use raise under DDP"
            )
        if channels_last_applies(self.speed.channels_last, self.trainer.strategy.root_device):
            use_channels_last(self.unet)
        if self.speed.compile_unet:
            compile_forward(self.unet)

    def on_fit_start(self) -> None:
        # A model object fitted again (Python API) starts its counts afresh.
        self.nonfinite_steps_skipped = 0
        self._unchecked, self._first_nonfinite, self._batches_since_step = [], None, 0
        dtype = training_dtype(self.trainer.precision)
        if self.speed.frozen_in_training_dtype and dtype is not None:
            frozen = [module for name, module in self.components().items() if name not in self.trainable]
            self.frozen_dtype.cast(self, frozen, dtype)
        if self.conditioning.text_embedding_cache:
            self.text_cache = self._open_text_cache()

    def _open_text_cache(self) -> TextEmbeddingCache | None:
        if self.text_trains():
            log.warning(
                "conditioning.text_embedding_cache is on but a text part trains; encoding prompts every step"
            )
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

    def teardown(self, stage: str) -> None:
        self.frozen_dtype.restore()
        self.text_cache = None

    def configure_callbacks(self) -> list[Callback]:
        return [_TeardownOnException()]

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
        was_training = self.training  # a frozen U-Net always reports eval (LoRA, projection runs)
        self.unet.eval()
        self.text.eval()
        try:
            with (
                self.ema_scope(use_ema),
                self.frozen_dtype.originals(),
                self._cross_attention_masks(prompts, negative_prompt) as embeds,
            ):
                context, uncond = embeds
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

    @contextmanager
    def _cross_attention_masks(self, prompts: list[str], negative_prompt: str) -> Iterator[tuple]:
        """Prompt and negative embeddings; inside the block the U-Net also gets their padding masks.

        diffusers' pipeline has no `encoder_attention_mask` argument, so a forward pre-hook adds it:
        the pipeline's guided batch is (negative, prompt) concatenated, an unguided one the prompts alone.
        """
        context, mask = self.text.encode(list(prompts))
        uncond, uncond_mask = self.text.encode([negative_prompt] * len(prompts))
        if mask is None:
            yield context, uncond
            return
        handle = self.unet.register_forward_pre_hook(
            partial(_add_encoder_attention_mask, torch.cat([uncond_mask, mask]), mask), with_kwargs=True
        )
        try:
            yield context, uncond
        finally:
            handle.remove()

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


def _add_encoder_attention_mask(guided: torch.Tensor, plain: torch.Tensor, module, args, kwargs):
    """U-Net forward pre-hook: the padding mask matching this call's batch (see `_cross_attention_masks`)."""
    sample = args[0] if args else kwargs["sample"]
    if kwargs.get("encoder_attention_mask") is None:
        kwargs["encoder_attention_mask"] = guided if sample.shape[0] == guided.shape[0] else plain
    return args, kwargs


class _TeardownOnException(Callback):
    """A fit that raises (non-finite loss, interrupt, out of memory) never calls the module's `teardown`, and
    Lightning gives `on_exception` to callbacks only: this one gives the frozen weights their original dtype
    back and closes the text cache, so the model object is whole for whoever caught the error."""

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        pl_module.teardown("fit")
