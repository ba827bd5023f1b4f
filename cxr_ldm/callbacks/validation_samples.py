"""Sample a fixed prompt list with fixed seeds at each validation and log the grid to TensorBoard."""

from __future__ import annotations

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid

from cxr_ldm.errors import ConfigError
from cxr_ldm.generation.sampling import sample


class ValidationSamples(Callback):
    """Rank zero only; EMA weights when the model keeps them; the prompts are logged as text.

    `every_n_epochs`: at validations of every n-th epoch. `every_n_steps`: only at validations whose training
    step is a multiple of n (validation every few hundred steps, pictures less often: a grid costs about as
    much CPU as three training steps of the tiny pipeline; a learning-curve probe judges every validation).
    """

    def __init__(
        self,
        prompts: list[str],
        seeds: list[int] | None = None,
        num_inference_steps: int = 15,
        guidance_scale: float = 4.0,
        scheduler: str = "dpm++",
        every_n_epochs: int = 1,
        every_n_steps: int | None = None,
    ) -> None:
        if seeds is not None and len(seeds) != len(prompts):
            raise ConfigError("ValidationSamples: give one seed per prompt (or no seeds)")
        if num_inference_steps < 1 or every_n_epochs < 1 or (every_n_steps is not None and every_n_steps < 1):
            raise ConfigError(
                f"ValidationSamples: num_inference_steps, every_n_epochs and every_n_steps must be >= 1, "
                f"got {num_inference_steps}, {every_n_epochs} and {every_n_steps}"
            )
        if not 0 <= guidance_scale < float("inf"):
            raise ConfigError(
                f"ValidationSamples: guidance_scale must be a finite number >= 0, got {guidance_scale}"
            )
        self.prompts = list(prompts)
        self.seeds = list(seeds) if seeds is not None else list(range(len(prompts)))
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.scheduler = scheduler
        self.every_n_epochs = every_n_epochs
        self.every_n_steps = every_n_steps

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        if self.every_n_steps is not None and trainer.global_step % self.every_n_steps:
            return
        self._log_samples(trainer, pl_module)

    @rank_zero_only
    def _log_samples(self, trainer: Trainer, pl_module: LightningModule) -> None:
        images = sample(
            pl_module,
            self.prompts,
            self.seeds,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            scheduler=self.scheduler,
        )
        grid = make_grid(images, nrow=min(len(self.prompts), 8), padding=2, pad_value=1.0)
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image"):
            return
        step = trainer.global_step
        experiment.add_image("samples/grid", grid, step)
        pairs = zip(self.prompts, self.seeds, strict=True)
        caption = "\n".join(f"{i}. seed {seed}: {prompt}" for i, (prompt, seed) in enumerate(pairs))
        experiment.add_text("samples/prompts", caption, step)
