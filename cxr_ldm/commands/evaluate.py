"""`python -m cxr_ldm evaluate`: generate (or read) images and write metrics.json and metrics.md.

Under torchrun (or RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT) every rank draws its share of the images
and computes its share of the evaluator features and nearest-neighbour searches; rank 0 merges them and
writes the metrics, the same as one process would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DESCRIPTION = (
    "evaluate a model's generated images: FID, MS-SSIM, classification, retrieval, reports, VAE, memorization"
)


def operating_point_images(datamodule, generated, real_test, args):
    """The real images the evaluator's operating points are chosen on: the validation split (the compared
    split itself under `--split validate`); None when the prompts have no labels and no point is needed."""
    from cxr_ldm.data.real_split import read_split
    from cxr_ldm.errors import ConfigError

    if not generated.labelled:
        return None
    if args.split == "validate":
        return real_test
    try:
        return read_split(datamodule, "validate", args.max_real)
    except ConfigError as error:
        raise ConfigError(
            f"the evaluator's operating points are chosen on the validation images: {error}"
        ) from None


def main(argv: list[str]) -> int:
    from cxr_ldm.commands.argument_types import bounded_int, fraction
    from cxr_ldm.commands.generate import add_generation_arguments

    parser = argparse.ArgumentParser(prog="python -m cxr_ldm evaluate", description=DESCRIPTION)
    parser.add_argument(
        "--model", type=Path, help="LatentDiffusion .ckpt or diffusers dir (generation and VAE)"
    )
    parser.add_argument("--data", required=True, type=Path, help="fit or data YAML of the real images")
    parser.add_argument("--data-root", default=None, help="override data.init_args.root")
    parser.add_argument("--cache-dir", default=None, help="override data.init_args.cache_dir")
    parser.add_argument(
        "--split", default="test", help="real split to compare with and prompt from (default test)"
    )
    parser.add_argument(
        "--classifier", required=True, type=Path, help="CxrClassifier checkpoint (the evaluator)"
    )
    parser.add_argument("--retriever", type=Path, help="ImageTextRetriever checkpoint (retrieval, reports)")
    parser.add_argument("--generated", type=Path, help="an existing generated folder: skip generation")
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (metrics.json, metrics.md, generated/)"
    )
    parser.add_argument(
        "--max-real",
        type=bounded_int(1),
        default=2000,
        help="real images per split at most (seeded subset; default: 2000)",
    )
    parser.add_argument(
        "--inception-weights",
        default=None,
        help="local InceptionV3 FID weights file (torch-fidelity's; needs: pip install torch-fidelity)",
    )
    parser.add_argument(
        "--memorization-threshold",
        type=fraction,
        default=0.02,
        help="RMSE in [0, 1] pixel units (default: 0.02)",
    )
    parser.add_argument(
        "--vae-images",
        type=bounded_int(1),
        default=64,
        help="real images in the VAE reconstruction study (default: 64)",
    )
    parser.add_argument("--no-progress", action="store_true")
    add_generation_arguments(parser)
    args = parser.parse_args(argv)
    if args.model is None and args.generated is None:
        parser.error("give --model (to generate) or --generated (an existing folder)")
    from cxr_ldm.errors import ConfigError
    from cxr_ldm.output_folders import check_output_folder

    try:
        check_output_folder(args.out, "--out", "metrics.json, metrics.md and generated/")
    except ConfigError as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 2

    from cxr_ldm.checkpoints import load_checkpoint
    from cxr_ldm.data.real_split import read_split
    from cxr_ldm.evaluation.evaluators import CxrClassifier, ImageTextRetriever
    from cxr_ldm.evaluation.metrics.fid import check_inception_weights
    from cxr_ldm.evaluation.sharding import barrier, init_distributed
    from cxr_ldm.evaluation.suite import EvaluationOptions, RealImages, evaluate_generated
    from cxr_ldm.generation import (
        GenerationSettings,
        generate_images,
        load_image_source,
        prompts_from_datamodule,
        read_generated,
    )
    from cxr_ldm.generation.torch_device import pick_device
    from cxr_ldm.training.datamodule import load_datamodule

    started = time.perf_counter()
    try:
        device = pick_device(args.device, "--device")
        if args.inception_weights:
            check_inception_weights(args.inception_weights)
        rank, world = init_distributed()
        datamodule = load_datamodule(args.data, root=args.data_root, cache_dir=args.cache_dir, num_workers=0)
        classifier = load_checkpoint(args.classifier, CxrClassifier, "--classifier").to(device)
        retriever = (
            load_checkpoint(args.retriever, ImageTextRetriever, "--retriever").to(device)
            if args.retriever
            else None
        )
        source = load_image_source(args.model, device, args.pretrained) if args.model else None
        generated_dir = args.generated or args.out / "generated"
        if args.generated is None:
            records = prompts_from_datamodule(datamodule, args.split)
            records = records[: args.limit] if args.limit else records
            settings = GenerationSettings(
                args.per_prompt, args.guidance, args.steps, args.scheduler, args.seed, args.batch_size
            )
            from cxr_ldm.generation.generated_folder import model_fingerprint

            generate_images(
                source, records, generated_dir, settings, progress=not args.no_progress,
                model=model_fingerprint(args.model), overwrite=args.overwrite,
            )  # fmt: skip
            barrier()  # rank 0 has written metadata.csv
        generated = read_generated(generated_dir)
        real_test = read_split(datamodule, args.split, args.max_real, key="--split")
        real_train = read_split(datamodule, "train", args.max_real)
        real_validate = operating_point_images(datamodule, generated, real_test, args)
    except ConfigError as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 2
    options = EvaluationOptions(args.inception_weights, args.memorization_threshold, args.vae_images)
    vae = source.vae() if source else None
    real = RealImages(real_test, real_train, real_validate)
    report = evaluate_generated(generated, real, classifier, retriever, vae, options, rank, world, args.out)
    if report is None:  # another rank: its share went to rank 0
        return 0
    report.info.update(
        model=str(args.model), generated_dir=str(generated_dir), classifier=str(args.classifier),
        retriever=str(args.retriever), wall_seconds=round(time.perf_counter() - started, 1), ranks=world,
    )  # fmt: skip
    path = report.write(args.out)
    print(report.markdown())
    print(f"wrote {path}")
    json.loads(path.read_text())
    return 0
