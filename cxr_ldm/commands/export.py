"""`python -m cxr_ldm export`: a checkpoint to a diffusers directory.

A `LatentDiffusion` checkpoint becomes a pipeline directory (LoRA merged, textual-inversion tokens in the
tokenizer, a custom text side described beside it); an `Autoencoder` checkpoint becomes an `AutoencoderKL`
directory; a `TextProjectionPretrainer` checkpoint becomes a text projection folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxr_ldm.errors import ConfigError
from cxr_ldm.output_folders import check_output_folder
from cxr_ldm.sampler_names import SAMPLER_NAMES

DESCRIPTION = "write a checkpoint as a diffusers pipeline directory (safetensors)"


def checkpoint_kind(path: Path, checkpoint: dict) -> str:
    """`latent_diffusion`, `autoencoder` or `text_projection`, from the state keys of `checkpoint` (read from
    `path`); ConfigError for any other file."""
    if not isinstance(checkpoint.get("state_dict"), dict) or "pytorch-lightning_version" not in checkpoint:
        raise ConfigError(
            f"--ckpt {path} is no checkpoint written by `python -m cxr_ldm fit` (no Lightning state)"
        )
    prefixes = {key.split(".", 1)[0] for key in checkpoint["state_dict"]}
    prefixes |= set(checkpoint.get("frozen_pretrained", {}))  # left out of the state dict, rebuilt on load
    if "unet" in prefixes:
        return "latent_diffusion"
    if "projection" in prefixes and "vae" not in prefixes:
        return "text_projection"
    if "vae" in prefixes:
        return "autoencoder"
    raise ConfigError(
        f"--ckpt {path} holds none of the models export writes (LatentDiffusion, Autoencoder, "
        f"TextProjectionPretrainer; its parts: {sorted(prefixes)[:5]})"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxr_ldm export", description=DESCRIPTION)
    parser.add_argument(
        "--ckpt",
        required=True,
        type=Path,
        help="a LatentDiffusion, Autoencoder or TextProjectionPretrainer checkpoint",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--ema writes the EMA weights, --no-ema the raw ones (default: EMA when the model keeps it, "
        "as sampling, validation and generate do)",
    )
    parser.add_argument(
        "--pretrained",
        default=None,
        metavar="DIR",
        help="where a LatentDiffusion or VAE checkpoint's pretrained pipeline is now, when the run was moved from another "
        "machine (in place of its components.pretrained_model_name_or_path; its frozen parts are checked against "
        "the checkpoint)",
    )
    parser.add_argument(
        "--scheduler",
        default="pndm",
        choices=SAMPLER_NAMES,
        help="inference scheduler saved with the pipeline (default: pndm)",
    )
    args = parser.parse_args(argv)
    if args.ckpt.is_dir():
        parser.error(f"checkpoint {args.ckpt} is a folder; give the .ckpt file (e.g. {args.ckpt}/last.ckpt)")
    if not args.ckpt.is_file():
        parser.error(f"checkpoint {args.ckpt} does not exist")

    try:
        check_output_folder(args.out, "--out", "the export")
        return _export(args)
    except ConfigError as error:
        print(f"export: error: {error}", file=sys.stderr)
        return 2


def _export(args: argparse.Namespace) -> int:
    from cxr_ldm.checkpoints import load_checkpoint, read_checkpoint
    from cxr_ldm.generation.export import export_pipeline, export_vae, pipeline_folder
    from cxr_ldm.models import Autoencoder, LatentDiffusion, TextProjectionPretrainer

    checkpoint = read_checkpoint(args.ckpt, "--ckpt", mmap=True)
    kind = checkpoint_kind(args.ckpt, checkpoint)
    if kind == "autoencoder":
        # the VAE is trained whole: the pretrained pipeline gives its architecture, the checkpoint every weight
        moved = {} if args.pretrained is None else {"pretrained_model_name_or_path": args.pretrained}
        if moved and checkpoint.get("hyper_parameters", {}).get("vae_config"):
            raise ConfigError(
                f"--pretrained {args.pretrained}: the VAE of {args.ckpt} was built from model.init_args.vae_config, "
                "not from a pipeline: drop --pretrained"
            )
        export_vae(
            Autoencoder.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True, **moved),
            args.out,
        )
        print(f"wrote {args.out}; load it with diffusers.AutoencoderKL.from_pretrained('{args.out}')")
        return 0
    if kind == "text_projection":
        if args.pretrained is not None:
            raise ConfigError(
                f"--pretrained {args.pretrained}: {args.ckpt} is a text projection checkpoint, which names its text "
                "encoders itself; --pretrained is for a LatentDiffusion or VAE checkpoint: drop it"
            )
        model = TextProjectionPretrainer.load_from_checkpoint(
            args.ckpt, map_location="cpu", weights_only=True
        )
        model.projection.save(args.out)
        print(f"wrote {args.out}; use it as model.init_args.conditioning.text_projection_weights")
        return 0
    pipeline_folder(args.out)  # before the model is loaded
    try:
        model = load_checkpoint(args.ckpt, LatentDiffusion, "--ckpt", args.pretrained)
    except ConfigError as error:
        raise ConfigError(f"{args.ckpt}: {error}") from None
    ema = model.ema is not None if args.ema is None else args.ema
    out = export_pipeline(model, args.out, ema=ema, scheduler=args.scheduler)
    extra = f" (custom text side: see {out / 'README.md'})" if (out / "README.md").is_file() else ""
    print(
        f"wrote {out} ({'EMA' if ema else 'raw'} weights); load it with "
        f"diffusers.StableDiffusionPipeline.from_pretrained('{out}'){extra}"
    )
    return 0
