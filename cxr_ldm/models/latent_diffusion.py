"""`LatentDiffusion`: Stable Diffusion as a LightningModule with configurable frozen components."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from lightning import Callback, LightningModule
from torch import nn

from cxr_ldm.checkpoints import find_frozen_pretrained, read_model_entries, write_model_entries
from cxr_ldm.data.prompt_tokens import PromptTokenizer
from cxr_ldm.errors import ConfigError
from cxr_ldm.models.components import latent_scaling_factor, load_diffusion_components
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
from cxr_ldm.models.ema import EmaWeights, ema_applied
from cxr_ldm.models.frozen_dtype import FrozenDtype, TeardownOnException, frozen_reloads, training_dtype
from cxr_ldm.models.gradient_checkpointing import checkpoint_gradient_path
from cxr_ldm.models.lora import LoraSpec, add_lora
from cxr_ldm.models.nonfinite import NonfiniteLoss
from cxr_ldm.models.optimizer import build_optimizer
from cxr_ldm.models.text_conditioner import TextConditioner
from cxr_ldm.models.text_embedding_cache import ENCODER, TextEmbeddingCache, open_text_cache
from cxr_ldm.models.text_projection import build_projection
from cxr_ldm.models.textual_inversion import add_placeholder_tokens
from cxr_ldm.models.trainable import (
    TRAINABLE_COMPONENTS,
    Trainable,
    as_dataclass,
    check_trainable_names,
    freeze,
    plain_data,
)
from cxr_ldm.models.unet_speedups import channels_last_applies, compile_forward, use_channels_last


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
        check_trainable_names(trainable)
        self.save_hyperparameters(
            {"trainable": trainable, "lora": lora, **{name: plain_data(part) for name, part in parts.items()}}
        )
        trainable = {name: as_dataclass(Trainable, spec) for name, spec in trainable.items()}
        loaded_parts, loaded = load_diffusion_components(self.components_spec)
        self.vae = loaded_parts.vae
        self.unet = loaded_parts.unet
        projection = build_projection(
            self.conditioning, loaded_parts.text_encoder, loaded_parts.unet, "unet" in trainable
        )
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
        self.nonfinite = NonfiniteLoss(self.objective.nonfinite_loss, self.objective.nonfinite_max_skips)
        self._batches_since_step = 0  # micro-batches whose loss went into the coming optimizer step
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
            checkpoint_gradient_path(self.unet, self.text.encoder, trainable)
        decay = self.ema_spec.decay
        self.ema = EmaWeights(self.trained_named_parameters(), decay) if decay else None
        self.frozen_dtype = FrozenDtype()
        self.text_cache: TextEmbeddingCache | None = None
        self._prompt_tokenizer = PromptTokenizer(self.text.tokenizer, self.text.max_length)
        self._empty_tokens: dict[str, torch.Tensor] | None = None
        frozen = set(self.components()) - set(trainable)
        state = self.state_dict(keep_vars=True)
        self._frozen_pretrained = find_frozen_pretrained(state, loaded, frozen)
        self._frozen_reloads = frozen_reloads(self.components_spec, state, loaded, frozen)

    # ----------------------------------------------------------------- components and freezing
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

    def trained_text_parts(self) -> list[str]:
        text_parts = ("text_encoder", "text_projection", "token_embeddings", "text_encoder_lora")
        return [name for name in text_parts if name in self.trainable]

    def text_trains(self) -> bool:
        return bool(self.trained_text_parts())

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
            context = context.to(self.device, non_blocking=True)
            # a frozen encoder's states (level `encoder`) go through the trained projection every step
            return (self.text.project(context) if self.text_cache.level == ENCODER else context), mask
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
        every = max(1, int(getattr(self._trainer, "log_every_n_steps", 1) or 1))
        if self.nonfinite.skips(loss, self.global_step, batch, batch_idx, self.global_step % every == 0):
            self.log("train/nonfinite_steps_skipped", float(self.nonfinite.steps_skipped))
            return self.nonfinite.skipped_step_loss(self.trainer.world_size, self.trained_named_parameters())
        self._batches_since_step += 1
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["prompt"]))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self.nonfinite.drop_skipped_gradients(optimizer)

    def on_train_epoch_end(self) -> None:
        self.nonfinite.check()

    def on_train_end(self) -> None:
        self.nonfinite.check()

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._held_out_loss(batch, batch_idx, "val", prog_bar=True)

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._held_out_loss(batch, batch_idx, "test", prog_bar=False)

    def _held_out_loss(self, batch: dict, batch_idx: int, stage: str, prog_bar: bool) -> torch.Tensor:
        """The EMA weights' loss on a held-out batch, its noise seeded by the batch index."""
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        with self.ema_scope():
            loss = self._shared_step(batch, stage, generator)
        self.log(f"{stage}/loss", loss, prog_bar=prog_bar, sync_dist=True, batch_size=len(batch["prompt"]))
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        # EMA follows each real optimizer step, before any callback (checkpointing) sees the step end; a
        # step whose every micro-batch was skipped (non-finite) is no update.
        super().optimizer_step(*args, **kwargs)
        real, self._batches_since_step = self._batches_since_step, 0
        if self.ema is not None and real:
            self.ema.update()

    def ema_scope(self, enabled: bool = True) -> AbstractContextManager[None]:
        """Use the EMA weights inside the block when EMA is on."""
        return ema_applied(self.ema, enabled)

    def configure_optimizers(self):
        total = self.trainer.estimated_stepping_batches if self.trainer is not None else None
        return build_optimizer(self.trainable, self.owned_parameters(), self.optimization, total)

    # ----------------------------------------------------------------- checkpoint contents
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._fitting():
            # Never write weights a non-finite step has reached, whether the save comes from a training
            # hook or from validation's end (ModelCheckpoint with validation, or monitoring val/loss).
            self.nonfinite.check()
        skipped = self.nonfinite.steps_skipped
        write_model_entries(checkpoint, self._frozen_pretrained, self.ema, skipped, self.frozen_dtype)

    def _fitting(self) -> bool:
        trainer = self._trainer
        return trainer is not None and trainer.state.fn == "fit"

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = self.state_dict(keep_vars=True)
        skipped = read_model_entries(checkpoint, self._frozen_pretrained, state, self.ema)
        # a Trainer's resume counts on (on_fit_start); weights loaded for a new fit (no Trainer yet) start at 0
        self._resumed_skips = skipped if self._trainer is not None else 0
        self.nonfinite.steps_skipped = skipped

    # ----------------------------------------------------------------- speed options (fit)
    def setup(self, stage: str) -> None:
        """Hand the tokenizer to the data module; channels-last and compile before the optimizer exists."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_prompt_tokenizer"):
            datamodule.set_prompt_tokenizer(self._prompt_tokenizer)
        if stage != "fit":
            return
        self.nonfinite.refuse_unsynchronised_skip(
            self.trainer.world_size, self.trainer.accumulate_grad_batches
        )
        if channels_last_applies(self.speed.channels_last, self.trainer.strategy.root_device):
            use_channels_last(self.unet)
        if self.speed.compile_unet:
            compile_forward(self.unet)

    def on_fit_start(self) -> None:
        # A model fitted again (Python API) starts its counts afresh; a resumed fit goes on from its checkpoint's.
        self.nonfinite.reset()
        self.nonfinite.steps_skipped, self._resumed_skips = getattr(self, "_resumed_skips", 0), 0
        strategy = self.trainer.strategy
        self.nonfinite.across_ranks(lambda t, op: strategy.reduce(t, reduce_op=op), strategy.root_device)
        self._batches_since_step = 0
        dtype = training_dtype(self.trainer.precision)
        if self.speed.frozen_in_training_dtype and dtype is not None:
            frozen = [module for name, module in self.components().items() if name not in self.trainable]
            self.frozen_dtype.cast(self, frozen, dtype, self._frozen_reloads)
        if self.conditioning.text_embedding_cache:
            self.text_cache = open_text_cache(self.text, self.trainer, self.trained_text_parts())

    def teardown(self, stage: str) -> None:
        self.frozen_dtype.restore()
        self.text_cache = None

    def configure_callbacks(self) -> list[Callback]:
        return [TeardownOnException()]
