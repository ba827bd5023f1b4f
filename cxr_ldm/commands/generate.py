"""`python -m cxr_ldm generate`: K images per prompt into an image/prompt folder with metadata.csv."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cxr_ldm.commands.argument_types import non_negative_float, positive_int
from cxr_ldm.sampler_names import SAMPLER_NAMES

DESCRIPTION = "generate images from prompts (a file or a data split) into an image/prompt folder"


PRETRAINED_HELP = (
    "where a .ckpt's pretrained pipeline is now, when the run was moved from another machine (in place of its "
    "components.pretrained_model_name_or_path; its frozen parts are checked against the checkpoint)"
)


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `generate` and `evaluate`."""
    parser.add_argument("--pretrained", default=None, metavar="DIR", help=PRETRAINED_HELP)
    parser.add_argument("--per-prompt", type=positive_int, default=4, help="images per prompt (default 4)")
    parser.add_argument(
        "--guidance",
        type=non_negative_float,
        default=4.0,
        help="classifier-free guidance scale >= 0 (default 4; 1 is plain conditional sampling)",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=15,
        help="inference steps (default 15; the papers: --scheduler pndm --steps 75)",
    )
    parser.add_argument(
        "--scheduler",
        default="dpm++",
        choices=SAMPLER_NAMES,
        help="dpm++ (default), pndm, ddim, euler, euler_a, unipc",
    )
    parser.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N prompts")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="the output folder may hold images made with other settings, prompts or model: delete them",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:1 or mps (default: cuda:LOCAL_RANK if available, else cpu)",
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxr_ldm generate", description=DESCRIPTION)
    parser.add_argument(
        "--model", required=True, type=Path, help="LatentDiffusion .ckpt or diffusers pipeline dir"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", type=Path, help=".csv (prompt column, optional label columns) or .txt")
    source.add_argument("--data-config", type=Path, help="fit or data YAML; prompts and labels of --split")
    parser.add_argument("--split", default=None, help="split of --data-config (default test)")
    parser.add_argument(
        "--finding-prompts",
        action="store_true",
        help="instead of a split: one prompt per headline finding and a normal one, written in the prompt "
        "style of --data-config (labels or template), each with complete labels",
    )
    parser.add_argument("--data-root", default=None, help="override data.init_args.root")
    parser.add_argument("--cache-dir", default=None, help="override data.init_args.cache_dir")
    parser.add_argument("--out", required=True, type=Path, help="output folder (resumed if it exists)")
    parser.add_argument("--no-progress", action="store_true")
    add_generation_arguments(parser)
    args = parser.parse_args(argv)

    from cxr_ldm.errors import ConfigError
    from cxr_ldm.generation import GenerationSettings, generate_images, load_image_source
    from cxr_ldm.generation.finding_prompts import finding_prompts
    from cxr_ldm.generation.prompt_records import prompts_from_datamodule, read_prompt_file
    from cxr_ldm.generation.torch_device import pick_device
    from cxr_ldm.training.datamodule import load_datamodule

    try:
        device = pick_device(args.device, "--device")
        if args.prompts is not None:
            if args.finding_prompts:
                raise ConfigError(
                    "--finding-prompts takes its prompt style from --data-config, not --prompts"
                )
            unread = [option for option, value in (("--split", args.split), ("--data-root", args.data_root),
                                                   ("--cache-dir", args.cache_dir)) if value is not None]  # fmt: skip
            if unread:
                raise ConfigError(
                    f"{', '.join(unread)} choose what --data-config reads; with --prompts they would be left out: "
                    "drop them, or give --data-config in place of --prompts"
                )
            records = read_prompt_file(args.prompts)
        elif args.finding_prompts:
            options = load_datamodule(args.data_config, root=args.data_root, cache_dir=args.cache_dir).options
            records = finding_prompts(
                mode=options.prompt_mode,
                template=options.prompt_template,
                finding_words=options.finding_words,
            )
        else:
            datamodule = load_datamodule(
                args.data_config, root=args.data_root, cache_dir=args.cache_dir, num_workers=0
            )
            records = prompts_from_datamodule(datamodule, args.split or "test")
        records = records[: args.limit] if args.limit else records
        source = load_image_source(args.model, device, args.pretrained)
        if os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT"):
            # torchrun: the ranks join one group (once the arguments are known good: a rank that cannot start
            # waits for no other) and meet at a barrier before rank 0 writes metadata.csv; ranks run one after
            # another with RANK / WORLD_SIZE alone need none: rank 0 goes last
            from cxr_ldm.evaluation.sharding import init_distributed

            init_distributed()
    except ConfigError as error:
        print(f"generate: error: {error}", file=sys.stderr)
        return 2
    settings = GenerationSettings(
        args.per_prompt, args.guidance, args.steps, args.scheduler, args.seed, args.batch_size
    )
    from cxr_ldm.generation.generated_folder import model_fingerprint

    try:
        out = generate_images(
            source,
            records,
            args.out,
            settings,
            progress=not args.no_progress,
            model=model_fingerprint(args.model),
            overwrite=args.overwrite,
        )
    except ConfigError as error:
        print(f"generate: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(records) * args.per_prompt} images and {out / 'metadata.csv'}")
    return 0
