"""`python -m cxr_ldm.demo --out runs/demo`: the whole project on phantom data, on a CPU, in one command.

Steps: phantom data -> tiny pretrained pipeline (built if missing) -> evaluator classifier trained on the real
training split -> `fit --config configs/demo.yaml` -> images for every test prompt before and after fine-tuning
-> conditioned accuracy per finding and CXR FID (evaluator features) -> a small augmentation experiment ->
`report.md`, sample grids and TensorBoard logs under `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cxr_ldm.augmentation import (
    AugmentationConfig,
    ClassifierSettings,
    DiffusionSettings,
    SynthesisSettings,
    run_experiment,
)
from cxr_ldm.augmentation.classifier_arm import evaluate_classifier, train_classifier
from cxr_ldm.augmentation.subsets import load_datamodule_for, read_split
from cxr_ldm.augmentation.synthetic import prompt_records, read_synthetic
from cxr_ldm.demo.report import write_report
from cxr_ldm.demo.tiny_components import IMAGE_SIZE
from cxr_ldm.evaluation.conditioned_classification import conditioned_classification
from cxr_ldm.evaluation.fid import fid_classifier
from cxr_ldm.evaluation.generation import GenerationSettings, generate_images
from cxr_ldm.labels import CHEXPERT_LABELS, HEADLINE_FINDINGS

CONFIG = "configs/demo.yaml"


def evaluate_source(source, test, records, out: Path, evaluator, settings: GenerationSettings) -> dict:
    """One image per test prompt, then conditioned accuracy / AUROC per finding and CXR FID against real test."""
    generate_images(source, records, out, settings, progress=False)
    fake = read_synthetic(out, 1, IMAGE_SIZE)
    probabilities = evaluator.predict_proba(fake.images.float() / 127.5 - 1.0)
    index = [CHEXPERT_LABELS.index(f) for f in evaluator.findings]
    metrics, _ = conditioned_classification(probabilities, fake.labels[:, index], evaluator.findings)
    metrics["fid_cxr"] = fid_classifier(test.images.float() / 255, fake.images.float() / 255, evaluator)
    return metrics


def run_demo(args: argparse.Namespace) -> dict:
    from cxr_ldm.__main__ import main as cli
    from cxr_ldm.demo.pretrain import build_pretrained
    from cxr_ldm.evaluation.image_source import load_image_source
    from cxr_ldm.phantom import generate_phantom

    out, data, pretrained = Path(args.out), Path(args.data), Path(args.pretrained)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        times[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()
        print(f"[demo] {name}: {times[name]} s", flush=True)

    if not (data / "phantom-manifest.json").is_file():
        generate_phantom(data, args.studies, IMAGE_SIZE, 0, progress=False)
    lap("phantom")
    if not (pretrained / "model_index.json").is_file():
        build_pretrained(pretrained, out / "pretrain-work", vae_steps=args.pretrain_vae_steps,
                         unet_steps=args.pretrain_unet_steps, batch_size=16)  # fmt: skip
    lap("tiny pretrained pipeline")

    overrides = {"root": str(data), "cache_dir": str(out / "cache")}
    classifier = ClassifierSettings(
        findings=list(HEADLINE_FINDINGS), image_size=IMAGE_SIZE, growth_rate=8, block_config=[2, 2, 2],
        num_init_features=16, lr=3e-3, steps=args.classifier_steps, batch_size=32, accelerator="cpu",
    )  # fmt: skip
    module = load_datamodule_for(CONFIG, overrides, IMAGE_SIZE)
    train, test = read_split(module, "train"), read_split(module, "test")
    evaluator = train_classifier(train, classifier, seed=0)
    evaluator_real = evaluate_classifier(evaluator, test)
    lap("evaluator classifier")

    run_dir = out / "finetune"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        code = cli(["fit", "--config", CONFIG, "--model.init_args.pretrained_model_name_or_path", str(pretrained),
                    *(f"--data.init_args.{k}={v}" for k, v in overrides.items()),
                    "--trainer.max_steps", str(args.finetune_steps), "--trainer.default_root_dir", str(run_dir),
                    "--trainer.logger.init_args.save_dir", str(run_dir)])  # fmt: skip
        if code != 0:
            raise RuntimeError("the demo's fine-tune failed")
    lap("fine-tune")

    records = prompt_records(test)
    settings = GenerationSettings(per_prompt=1, num_inference_steps=args.sample_steps, guidance_scale=4.0,
                                  scheduler="ddim", seed=1000, batch_size=64)  # fmt: skip
    before = evaluate_source(
        load_image_source(pretrained), test, records, out / "generated-before", evaluator, settings
    )
    after = evaluate_source(
        load_image_source(checkpoint), test, records, out / "generated-after", evaluator, settings
    )
    lap("generate and evaluate")

    config = AugmentationConfig(
        out=str(out / "augment"), data=CONFIG, data_overrides=overrides, sizes=list(args.aug_sizes),
        conditions=["real", "synthetic_1x", f"synthetic_{args.aug_multiple}x", "real+synthetic_1x"],
        seeds=list(range(args.aug_seeds)), classifier=classifier,
        synthesis=SynthesisSettings(num_inference_steps=args.sample_steps, scheduler="ddim", batch_size=64),
        diffusion=DiffusionSettings(model=str(checkpoint)),
    )  # fmt: skip
    augmentation = run_experiment(config)
    lap("augmentation experiment")

    results = {
        "times_s": times, "train_images": len(train), "test_images": len(test), "evaluator_on_real_test": evaluator_real,
        "before": before, "after": after, "augmentation_table": str(augmentation.outputs["table"]),
    }  # fmt: skip
    write_report(out, results, test, pretrained, checkpoint, args)
    lap("report")
    results["times_s"] = times
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cxr_ldm.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--data", default="data/demo-phantom")
    parser.add_argument("--pretrained", default="artifacts/tiny-pretrained")
    parser.add_argument("--studies", type=int, default=800)
    parser.add_argument("--pretrain-vae-steps", type=int, default=300)
    parser.add_argument("--pretrain-unet-steps", type=int, default=600)
    parser.add_argument("--classifier-steps", type=int, default=200)
    parser.add_argument("--finetune-steps", type=int, default=1000)
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--aug-sizes", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--aug-multiple", type=int, default=4)
    parser.add_argument("--aug-seeds", type=int, default=2)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    torch.manual_seed(0)
    run_demo(parse_args(argv))
    return 0
