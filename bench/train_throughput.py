"""Like-for-like training throughput: our `fit` path against a plain PyTorch loop, in one process.

- ours: the Lightning Trainer, model and data module built by the project's LightningCLI from `--config`,
  with the config's callbacks and logger; validation and periodic checkpoints are moved out of the timed
  window (they are outside it in the plain loop as well).
- plain: a loop written here that follows diffusers' `examples/text_to_image/train_text_to_image.py` step
  for step, with the same components (built from the same config), precision policy, optimizer settings
  and batches: VAE encode in the weight dtype (or a sample from cached latents), scale, noise (+ offset),
  random timesteps, text-encoder hidden states, U-Net under autocast, MSE (Min-SNR when configured),
  backward, gradient clipping when the trainer clips, AdamW step, LR-scheduler step, zero_grad, EMA step
  (diffusers' `EMAModel`) when the model keeps an EMA, the loss `.item()` and a TensorBoard scalar per step.
  Condition dropout, which diffusers' script lacks, is done as the config asks (rows of the empty prompt's
  tokens), so both loops do the same work.

The two interleave inside each round: after our warm-up, every `--chunk` of our steps is followed (from a
callback, outside our timing) by the same number of plain steps, so drift of the machine hits both within
seconds; warm-up steps of both are excluded. Each round is a fresh fit; the plain loop's components are
built once. Prints images/s of both and the ratio ours / plain per round, then the median and the spread
(min, max) over rounds:

    python bench/train_throughput.py --config configs/tiny.yaml                 # CPU, phantom data
    python bench/train_throughput.py --config configs/tiny.yaml --sd-shapes     # GPU: SD v1.x at 512 px, bf16
    python bench/train_throughput.py --config configs/tiny.yaml --sd-shapes --train-text-encoder

`--sd-shapes` builds Stable Diffusion v1.x's U-Net, VAE and CLIP ViT-L/14 text encoder from config (random
weights, nothing downloaded), trains from a latent cache at 512 px in bf16-mixed, and also reports the
achieved TFLOP/s (FLOPs of one step counted by `torch.utils.flop_counter`) against the GPU's bf16 peak.
Without `--data-root`, a small phantom tree is generated in a temporary folder.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from lightning import Callback

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SD_V1_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "sample_size": 512,
}
SD_V1_UNET = {
    "sample_size": 64,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
}
CLIP_VIT_L14_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}
# Dense bf16 Tensor Core peak (TFLOP/s) by device-name fragment, from the vendors' data sheets.
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}
LOW_DTYPE = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


# ----------------------------------------------------------------------------- configs
def load_config(path: str | Path) -> dict:
    """The config as a nested mapping, its `config:` base applied (composed variants work too)."""
    from cxr_ldm.training.config_files import composed

    return composed(path)


def sd_shapes(config: dict, train_text_encoder: bool, batch_size: int, vae_dir: Path) -> dict:
    """The config with SD v1.x components at 512 px, bf16-mixed on the GPU, training from a latent cache."""
    config = copy.deepcopy(config)
    model = config["model"]["init_args"]
    components = model.setdefault("components", {})
    components.update(vae_config=SD_V1_VAE, unet_config=SD_V1_UNET, text_encoder_config=CLIP_VIT_L14_TEXT)
    components["tokenizer_name_or_path"] = "clip"
    model["trainable"] = {"unet": {"lr": 5.0e-5}}
    if train_text_encoder:
        model["trainable"]["text_encoder"] = {"lr": 5.0e-5}
    trainer = config["trainer"]
    trainer.update(accelerator="gpu", devices=1, precision="bf16-mixed")
    data = config["data"]["init_args"]
    data.update(image_size=512, batch_size=batch_size, latent_cache_vae=str(vae_dir))
    return config


def timed_config(config: dict, run_dir: Path, data_root: Path, total_steps: int) -> dict:
    """Our config for the timed fit: its callbacks and logger, no validation, no checkpoint inside the window."""
    config = copy.deepcopy(config)
    trainer = config.setdefault("trainer", {})
    trainer.update(
        max_steps=total_steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
        enable_progress_bar=True,
    )
    logger = trainer.get("logger")
    if isinstance(logger, dict) and "save_dir" in logger.get("init_args", {}):
        logger["init_args"]["save_dir"] = str(run_dir)
    for callback in trainer.get("callbacks") or []:
        init_args = callback.get("init_args", {})
        if init_args.get("every_n_train_steps"):
            init_args["every_n_train_steps"] = total_steps + 1
    data = config["data"]["init_args"]
    data["root"] = str(data_root)
    data["cache_dir"] = str(run_dir.parent / "data-cache")
    return config


def build_cli(config: dict, run_dir: Path):
    """Model, data module and Trainer exactly as `python -m cxr_ldm fit --config ...` builds them."""
    from cxr_ldm.training.lightning_cli import run_lightning_cli

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_lightning_cli(["--config", str(path)], run=False)


# ----------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(Callback):
    """Time from the end of optimizer step `warmup` to the end of step `warmup + steps`."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start = self.end = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self.warmup:
            synchronize(pl_module.device)
            self.start = time.perf_counter()
        elif step == self.warmup + self.steps:
            synchronize(pl_module.device)
            self.end = time.perf_counter()


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def time_ours(config: dict, run_dir: Path, data_root: Path, warmup: int, steps: int):
    """(result, cli): images/s of our fit path (the CLI's model and data module are returned for reuse)."""
    cli = build_cli(timed_config(config, run_dir, data_root, warmup + steps), run_dir)
    timer = StepTimer(warmup, steps)
    cli.trainer.callbacks.append(timer)
    device = cli.trainer.strategy.root_device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cli.trainer.fit(cli.model, cli.datamodule)
    if timer.end is None:
        raise RuntimeError(f"our fit stopped before step {warmup + steps}; give the data module more images")
    seconds = timer.end - timer.start
    batch = cli.datamodule.hparams.batch_size
    result = {
        "images_per_s": steps * batch / seconds,
        "seconds": seconds,
        "peak_mem_gib": peak_memory_gib(device),
    }
    return result, cli


class PlainLoop:
    """diffusers' train_text_to_image.py training loop, on components built from our config."""

    def __init__(self, config: dict, datamodule, device: torch.device, log_dir: Path) -> None:
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel, compute_snr

        from cxr_ldm.data.prompt_tokens import PromptTokenizer
        from cxr_ldm.models.components import load_components, resolve_source

        model_args = config["model"]["init_args"]
        components = model_args.get("components") or {}
        objective = model_args.get("objective") or {}
        optimization = model_args.get("optimization") or {}
        trainer_args = config.get("trainer", {})
        trainable = model_args.get("trainable") or {"unet": {}}
        if set(trainable) - {"unet", "text_encoder"} or "unet" not in trainable:
            raise SystemExit(
                f"the plain loop trains unet (+ text_encoder); this config trains {sorted(trainable)}"
            )
        torch.manual_seed(int(config.get("seed_everything") or 0))
        parts = load_components(
            resolve_source(components.get("pretrained_model_name_or_path")),
            components.get("revision"),
            components.get("vae_config"),
            components.get("unet_config"),
            components.get("text_encoder_config"),
            components.get("text_encoder_name_or_path"),
            components.get("tokenizer_name_or_path"),
            components.get("scheduler_config"),
        )
        if components.get("prediction_type"):
            parts.noise_scheduler.register_to_config(prediction_type=components["prediction_type"])
        self.compute_snr = compute_snr
        self.device = device
        self.precision = str(trainer_args.get("precision", "32-true"))
        self.weight_dtype = LOW_DTYPE.get(self.precision, torch.float32)
        self.train_text = "text_encoder" in trainable
        self.vae, self.unet, self.text_encoder = parts.vae, parts.unet, parts.text_encoder
        self.noise_scheduler = parts.noise_scheduler
        self.vae.requires_grad_(False)
        self.text_encoder.requires_grad_(self.train_text)
        self.unet.train()
        self.text_encoder.train(self.train_text)
        if (model_args.get("speed") or {}).get("gradient_checkpointing"):
            self.unet.enable_gradient_checkpointing()
            if self.train_text:
                self.text_encoder.gradient_checkpointing_enable()
        # diffusers: frozen models in the weight dtype, trained ones in float32.
        self.vae.to(device, dtype=self.weight_dtype)
        self.text_encoder.to(device, dtype=torch.float32 if self.train_text else self.weight_dtype)
        self.unet.to(device)
        groups = [self._group(self.unet, trainable["unet"])]
        if self.train_text:
            groups.append(self._group(self.text_encoder, trainable["text_encoder"]))
        self.trained = [p for group in groups for p in group["params"]]
        self.optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8)
        self.lr_scheduler = get_scheduler(
            optimization.get("lr_scheduler", "constant"),
            optimizer=self.optimizer,
            num_warmup_steps=int(optimization.get("lr_warmup_steps", 0)),
            num_training_steps=10_000,
        )
        ema_decay = (model_args.get("ema") or {}).get("decay")
        self.ema = EMAModel(self.unet.parameters(), decay=ema_decay) if ema_decay else None
        if self.ema is not None:
            self.ema.to(device)
        self.scaler = torch.amp.GradScaler(device.type) if self.weight_dtype == torch.float16 else None
        self.max_grad_norm = trainer_args.get("gradient_clip_val")
        self.snr_gamma = objective.get("snr_gamma")
        self.noise_offset = float(objective.get("noise_offset", 0.0))
        self.condition_dropout = float(objective.get("condition_dropout", 0.1))
        max_tokens = (model_args.get("conditioning") or {}).get("max_prompt_tokens")
        tokenizer = parts.tokenizer
        self.tokenize = PromptTokenizer(
            tokenizer, max_tokens or min(getattr(tokenizer, "model_max_length", 77), 512)
        )
        self.empty_ids = self.tokenize([""])["input_ids"].to(device)
        self.scaling_factor = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        self.datamodule = datamodule
        if hasattr(datamodule, "set_prompt_tokenizer"):  # diffusers tokenizes in the dataset transform
            datamodule.set_prompt_tokenizer(self.tokenize)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.global_step = 0
        self._batches = None
        self._progress = None

    @staticmethod
    def _group(module: torch.nn.Module, settings: dict) -> dict:
        return {
            "params": [p for p in module.parameters() if p.requires_grad],
            "lr": float(settings.get("lr", 5e-5)),
            "weight_decay": float(settings.get("weight_decay", 1e-2)),
        }

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.weight_dtype, enabled=self.precision in LOW_DTYPE)

    def latents(self, batch: dict) -> torch.Tensor:
        if "latent_parameters" in batch:  # the latent cache: a sample of the cached posterior
            from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

            return DiagonalGaussianDistribution(batch["latent_parameters"]).sample() * self.scaling_factor
        with torch.no_grad():
            latents = self.vae.encode(batch["pixel_values"].to(self.weight_dtype)).latent_dist.sample()
        return latents * self.scaling_factor

    def loss(self, batch: dict) -> torch.Tensor:
        latents = self.latents(batch)
        noise = torch.randn_like(latents)
        if self.noise_offset:
            noise += self.noise_offset * torch.randn(
                (latents.shape[0], latents.shape[1], 1, 1), device=latents.device
            )
        bsz = latents.shape[0]
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (bsz,), device=latents.device
        ).long()
        noisy_latents = self.noise_scheduler.add_noise(latents, noise, timesteps)
        input_ids = batch["input_ids"]
        if self.condition_dropout:
            dropped = (torch.rand(bsz) < self.condition_dropout).to(input_ids.device)[:, None]
            input_ids = torch.where(dropped, self.empty_ids, input_ids)
        with torch.no_grad() if not self.train_text else torch.enable_grad(), self.autocast():
            encoder_hidden_states = self.text_encoder(input_ids)[0]
        if self.noise_scheduler.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        with self.autocast():
            model_pred = self.unet(noisy_latents, timesteps, encoder_hidden_states).sample
        if self.snr_gamma is None:
            return torch.nn.functional.mse_loss(model_pred.float(), target.float(), reduction="mean")
        snr = self.compute_snr(self.noise_scheduler, timesteps)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            snr = snr + 1
        weights = torch.stack([snr, self.snr_gamma * torch.ones_like(timesteps)], dim=1).min(dim=1)[0] / snr
        loss = torch.nn.functional.mse_loss(model_pred.float(), target.float(), reduction="none")
        return (loss.mean(dim=list(range(1, len(loss.shape)))) * weights).mean()

    def to_device(self, batch: dict) -> dict:
        return {
            k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
        }

    def step(self, batch: dict) -> float:
        loss = self.loss(batch)
        train_loss = loss.detach().float().mean().item()  # diffusers: gather(loss).mean().item()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.trained, self.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad()
        if self.ema is not None:
            self.ema.step(self.unet.parameters())
        self.global_step += 1
        self.writer.add_scalar("train_loss", train_loss, self.global_step)
        return train_loss

    def batches(self):
        if not getattr(self.datamodule, "datasets", None) and not hasattr(self.datamodule, "train_set"):
            self.datamodule.prepare_data()
            self.datamodule.setup("fit")
        while True:
            for batch in self.datamodule.train_dataloader():
                if "input_ids" not in batch:
                    batch.update(self.tokenize(batch["prompt"]))
                yield self.to_device(batch)

    def run_steps(self, count: int) -> tuple[float, int]:
        """Run `count` steps; (seconds, images), timed to the end of the last step."""
        from tqdm.auto import tqdm

        if self._batches is None:
            self._batches = self.batches()
        if self._progress is None:
            self._progress = tqdm(desc="Steps (plain)", leave=False)
        images = 0
        synchronize(self.device)
        start = time.perf_counter()
        with torch.enable_grad():
            for _ in range(count):
                batch = next(self._batches)
                images += len(batch["prompt"])
                loss = self.step(batch)
                self._progress.update(1)
                self._progress.set_postfix(step_loss=loss, lr=self.lr_scheduler.get_last_lr()[0])
        synchronize(self.device)
        return time.perf_counter() - start, images

    def restart_data(self, datamodule) -> None:
        self.datamodule = datamodule
        self._batches = None


def step_flops(plain: PlainLoop) -> float | None:
    """FLOPs of one plain training step (forward + backward), counted once outside the timing."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = next(plain.batches())
    counter = FlopCounterMode(display=False)
    with counter:
        loss = plain.loss(batch)
        loss.backward()
    plain.optimizer.zero_grad()
    return float(counter.get_total_flops())


def bf16_peak_tflops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    for fragment, peak in BF16_PEAK_TFLOPS.items():
        if fragment in name:
            return name, peak
    return name, None


# ----------------------------------------------------------------------------- the comparison
def summary(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": [round(v, 4) for v in values],
    }


class Interleave(Callback):
    """Inside our fit: after our warm-up, each `chunk` of our steps is followed by as many plain steps.

    Our time is the sum of our segments (each from the end of a plain chunk to the end of our chunk), so
    the time spent in the plain loop is not counted as ours.
    """

    def __init__(self, plain: PlainLoop, warmup: int, steps: int, chunk: int) -> None:
        self.plain, self.warmup, self.steps, self.chunk = plain, warmup, steps, chunk
        self.ours_seconds = self.plain_seconds = 0.0
        self.ours_images = self.plain_images = 0
        self.mark = None
        self.pending = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step < self.warmup or step > self.warmup + self.steps:
            return
        if step == self.warmup:
            self.plain.run_steps(self.warmup)  # the plain loop's warm-up
            synchronize(pl_module.device)
            self.mark = time.perf_counter()
            return
        self.pending += 1
        self.ours_images += len(batch["prompt"])
        if self.pending < self.chunk and step < self.warmup + self.steps:
            return
        synchronize(pl_module.device)
        self.ours_seconds += time.perf_counter() - self.mark
        seconds, images = self.plain.run_steps(self.pending)
        self.plain_seconds += seconds
        self.plain_images += images
        self.pending = 0
        synchronize(pl_module.device)
        self.mark = time.perf_counter()


def compare(
    config: dict,
    data_root: Path,
    work: Path,
    warmup: int,
    steps: int,
    repeats: int,
    chunk: int = 5,
    count_flops: bool = False,
) -> dict:
    """`repeats` fits of ours, each interleaved with the plain loop; images/s of each and the ratio per round."""
    ours, plain, ratios = [], [], []
    plain_loop = None
    device = None
    flops = None
    for round_index in range(repeats):
        run_dir = work / f"round-{round_index}"
        cli = build_cli(timed_config(config, run_dir, data_root, warmup + steps), run_dir)
        device = cli.trainer.strategy.root_device
        if plain_loop is None:
            plain_loop = PlainLoop(config, cli.datamodule, device, work / "plain-tensorboard")
            if count_flops:
                flops = step_flops(plain_loop)
        plain_loop.restart_data(cli.datamodule)
        interleave = Interleave(plain_loop, warmup, steps, chunk)
        cli.trainer.callbacks.append(interleave)
        cli.trainer.fit(cli.model, cli.datamodule)
        if interleave.ours_images == 0 or interleave.pending:
            raise RuntimeError(
                f"our fit stopped before step {warmup + steps}; give the data module more images"
            )
        ours.append(interleave.ours_images / interleave.ours_seconds)
        plain.append(interleave.plain_images / interleave.plain_seconds)
        ratios.append(ours[-1] / plain[-1])
        print(
            f"\nround {round_index + 1}/{repeats}: ours {ours[-1]:.2f} images/s, plain {plain[-1]:.2f} images/s, "
            f"ours/plain {ratios[-1]:.3f}",
            flush=True,
        )
        del cli
    batch = config["data"]["init_args"].get("batch_size")
    out = {
        "batch_size": batch,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "chunk": chunk,
        "rounds": repeats,
        "ours_images_per_s": summary(ours),
        "plain_images_per_s": summary(plain),
        "ratio_ours_over_plain": summary(ratios),
    }
    if flops is not None and batch:
        name, peak = bf16_peak_tflops(device)
        per_image = flops / batch
        achieved = {k: per_image * out[f"{k}_images_per_s"]["median"] / 1e12 for k in ("ours", "plain")}
        out.update(
            device=name,
            step_tflop=flops / 1e12,
            achieved_tflops={k: round(v, 3) for k, v in achieved.items()},
            bf16_peak_tflops=peak,
            fraction_of_peak={k: round(v / peak, 3) for k, v in achieved.items()} if peak else None,
        )
    return out


def phantom_data(work: Path, studies: int, size: int) -> Path:
    from cxr_ldm.phantom import generate_phantom

    root = work / "phantom"
    generate_phantom(root, studies, size, seed=0, progress=False, workers=1)
    return root


def save_vae(folder: Path) -> Path:
    """A VAE of SD v1.x's shape (random weights) as a folder the latent cache can load."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(**SD_V1_VAE).save_pretrained(folder)
    return folder


def print_result(name: str, result: dict) -> None:
    ours, plain, ratio = (
        result[k] for k in ("ours_images_per_s", "plain_images_per_s", "ratio_ours_over_plain")
    )
    overhead = 1 / ratio["median"] - 1
    print(
        f"{name}: ours {ours['median']:.2f} images/s [{ours['min']:.2f}, {ours['max']:.2f}], "
        f"plain {plain['median']:.2f} [{plain['min']:.2f}, {plain['max']:.2f}], "
        f"ours/plain median {ratio['median']:.3f} [{ratio['min']:.3f}, {ratio['max']:.3f}] "
        f"(our time per image {overhead:+.1%} vs plain) over {result['rounds']} rounds"
    )
    if result.get("achieved_tflops"):
        print(
            f"{name}: {result['device']}: {result['step_tflop']:.2f} TFLOP per step; achieved "
            f"{result['achieved_tflops']} TFLOP/s, bf16 peak {result['bf16_peak_tflops']}, "
            f"fraction {result['fraction_of_peak']}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    parser.add_argument("--data-root", help="phantom / MIMIC-CXR-JPG tree; default: a generated phantom")
    parser.add_argument("--phantom-studies", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--chunk", type=int, default=5, help="steps of one loop before switching to the other"
    )
    parser.add_argument("--batch-size", type=int, help="override data.init_args.batch_size")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (CPU)")
    parser.add_argument("--sd-shapes", action="store_true", help="SD v1.x shapes at 512 px, bf16, on CUDA")
    parser.add_argument("--train-text-encoder", action="store_true", help="with --sd-shapes: U-Net + CLIP")
    parser.add_argument("--work-dir", help="keep runs here (default: a temporary folder)")
    parser.add_argument("--json", help="write the result here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sd_shapes and not torch.cuda.is_available():
        raise SystemExit("--sd-shapes needs a CUDA device; on a CPU run without it (tiny shapes)")
    config = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        work = Path(args.work_dir or tmp)
        size = 512 if args.sd_shapes else max(64, int(config["data"]["init_args"].get("image_size", 64)))
        data_root = Path(args.data_root) if args.data_root else phantom_data(work, args.phantom_studies, size)
        if args.sd_shapes:
            config = sd_shapes(
                config, args.train_text_encoder, args.batch_size or 8, save_vae(work / "sd-vae")
            )
        elif args.batch_size:
            config["data"]["init_args"]["batch_size"] = args.batch_size
        result = compare(
            config,
            data_root,
            work,
            args.warmup,
            args.steps,
            args.repeats,
            args.chunk,
            count_flops=args.sd_shapes,
        )
    name = (
        "sd-shapes " + ("unet+text_encoder" if args.train_text_encoder else "unet")
        if args.sd_shapes
        else "config"
    )
    print_result(name, result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
