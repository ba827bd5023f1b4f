"""`python -m cxr_ldm.demo --out runs/demo`: the whole project on phantom data, on a CPU, in one command.

Steps: phantom data -> tiny pretrained pipeline (built if missing) -> evaluator classifier trained on the real
training split, its operating points chosen on the real validation split -> `fit --config configs/demo.yaml`
-> before and after fine-tuning: finding probes (one prompt per finding) and one image per test prompt (all, or
a seeded subset), balanced accuracy / AUROC per finding, CXR FID and KID (evaluator features) at the sampling
guidance and at `--fid-guidance` -> a small augmentation experiment -> `report.md`, image grids and
TensorBoard logs under `--out`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from cxr_ldm.augmentation import (
    AugmentationConfig,
    ClassifierSettings,
    DiffusionSettings,
    SynthesisSettings,
    run_experiment,
)
from cxr_ldm.augmentation.classifier_arm import (
    classify_image_set,
    finding_labels,
    image_set_probabilities,
    train_classifier,
)
from cxr_ldm.augmentation.image_set import ImageSet, to_uint8
from cxr_ldm.augmentation.subsets import load_datamodule_for, read_split
from cxr_ldm.augmentation.synthetic import prompt_records, read_synthetic
from cxr_ldm.data.atomic import write_text_atomic
from cxr_ldm.demo.report import write_report
from cxr_ldm.demo.tiny_components import IMAGE_SIZE
from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.fid import fid_classifier, kid_classifier
from cxr_ldm.evaluation.finding_prompts import finding_prompts
from cxr_ldm.evaluation.generation import GenerationSettings, generate_images
from cxr_ldm.evaluation.metric_names import FID, KID, on_real_images
from cxr_ldm.evaluation.operating_points import operating_points
from cxr_ldm.evaluation.reconstruction import reconstruct
from cxr_ldm.labels import HEADLINE_FINDINGS
from cxr_ldm.models.samplers import SAMPLERS

_CHECKOUT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
CONFIG = str(_CHECKOUT_CONFIG if _CHECKOUT_CONFIG.is_file() else Path("configs") / "demo.yaml")


def vae_reconstructions(vae, images: ImageSet) -> ImageSet:
    """The real images through the pretrained VAE (posterior mode): the most any generated image can keep."""
    with torch.no_grad():
        decoded = reconstruct(vae, images.images.float() / 255, batch_size=64)
    return ImageSet(to_uint8(decoded * 2 - 1), images.labels, images.prompts, images.ids)


def evaluate_source(
    source,
    name: str,
    out: Path,
    shown: ImageSet,
    test: ImageSet,
    probes,
    evaluator,
    cuts,
    settings,
    probe_images,
    fid_guidance: float | None = None,
) -> dict:
    """Finding probes (`probe_images` per finding prompt) and one image per prompt of `shown`, then their
    metrics; FID and KID against every real test image, also for images of `shown` at `fid_guidance`."""
    generate_images(
        source, probes, out / f"probe-{name}", replace(settings, per_prompt=probe_images), progress=False
    )
    generate_images(source, prompt_records(shown), out / f"generated-{name}", settings, progress=False)
    probe = read_synthetic(out / f"probe-{name}", probe_images, IMAGE_SIZE)
    fake = read_synthetic(out / f"generated-{name}", 1, IMAGE_SIZE)
    results = {
        "probe": classify_image_set(evaluator, probe, cuts),
        "test_prompts": classify_image_set(evaluator, fake, cuts),
        **distances(test, fake, evaluator),
    }
    if fid_guidance is not None and fid_guidance != settings.guidance_scale:
        # Guidance trades fidelity for conditioning: FID is also measured where fidelity is the aim.
        fidelity = replace(settings, guidance_scale=fid_guidance)
        generate_images(source, prompt_records(shown), out / f"fidelity-{name}", fidelity, progress=False)
        images = read_synthetic(out / f"fidelity-{name}", 1, IMAGE_SIZE)
        results["fidelity"] = {"guidance": fid_guidance, **distances(test, images, evaluator)}
    return results


def distances(real: ImageSet, other: ImageSet, evaluator) -> dict:
    """CXR FID and KID (evaluator features) of `other` against `real`."""
    real01, other01 = real.images.float() / 255, other.images.float() / 255
    return {
        FID: fid_classifier(real01, other01, evaluator),
        KID: kid_classifier(real01, other01, evaluator),
    }


def sample_rows(count: int, limit: int | None) -> list[int]:
    """A seeded subset of `limit` rows (all when `limit` is None or larger), in their original order."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted(torch.randperm(count, generator=torch.Generator().manual_seed(0))[:limit].tolist())


def ensure_phantom(data: Path, studies: int) -> None:
    """Make the demo's phantom, or keep the one there when it was made with the same settings.

    A phantom of other settings (an earlier demo's size) is made anew: the manifest proves the folder is a
    phantom, and the data caches key on the CSV files, so nothing stale is read.
    """
    from cxr_ldm.phantom import generate_phantom

    wanted = {"studies": studies, "size": IMAGE_SIZE, "seed": 0, "corrupt": 0.0}
    manifest = data / "phantom-manifest.json"
    if manifest.is_file():
        made = json.loads(manifest.read_text())
        if made.get("params") == wanted:
            return
        if made.get("generator") != "cxr_ldm.phantom":
            raise ConfigError(f"{data} is not a phantom made by cxr_ldm; pass --data with another folder")
        print(
            f"[demo] {data} holds a phantom of other settings ({made.get('params')}); making it anew",
            flush=True,
        )
        shutil.rmtree(data)
    generate_phantom(data, studies, IMAGE_SIZE, 0, progress=False)


DERIVED = (
    "finetune", "probe-before", "probe-after", "generated-before", "generated-after", "fidelity-before",
    "fidelity-after", "augment",
)  # fmt: skip


def folder_digest(folder: Path) -> str:
    """Content hash of every file under `folder` (the pretrained pipeline: a few MB)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def keep_outputs_of_same_inputs(out: Path, inputs: dict) -> None:
    """A rerun resumes what an interrupted run left (fine-tune checkpoint, images, augmentation arms), but
    only when it came from the same pretrained pipeline, data and budgets; otherwise it is cleared first."""
    stamp = out / "inputs.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == inputs:
        return
    stale = [name for name in DERIVED if (out / name).exists()]
    if stale:
        print(f"[demo] clearing {', '.join(stale)} in {out}: made from other inputs", flush=True)
    for name in stale:
        shutil.rmtree(out / name)
    write_text_atomic(stamp, json.dumps(inputs, indent=2) + "\n")


def run_demo(args: argparse.Namespace) -> dict:
    from cxr_ldm.cli import run_fit
    from cxr_ldm.demo.pretrain import build_pretrained
    from cxr_ldm.evaluation.image_source import load_image_source

    out, data, pretrained = Path(args.out), Path(args.data), Path(args.pretrained)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        times[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()
        print(f"[demo] {name}: {times[name]} s", flush=True)

    ensure_phantom(data, args.studies)
    lap("phantom")
    if not (pretrained / "model_index.json").is_file():
        build_pretrained(pretrained, out / "pretrain-work")
    lap("tiny pretrained pipeline")
    budgets = {k: v for k, v in vars(args).items() if k not in ("out", "data", "pretrained")}
    keep_outputs_of_same_inputs(out, {"pretrained": folder_digest(pretrained), **budgets})

    overrides = {"root": str(data), "cache_dir": str(out / "cache")}
    classifier = ClassifierSettings(
        findings=list(HEADLINE_FINDINGS), image_size=IMAGE_SIZE, growth_rate=8, block_config=[2, 2, 2],
        num_init_features=16, lr=3e-3, steps=args.classifier_steps, batch_size=32, accelerator="cpu",
    )  # fmt: skip
    module = load_datamodule_for(CONFIG, overrides, IMAGE_SIZE)
    train, validate, test = (read_split(module, split) for split in ("train", "validate", "test"))
    evaluator = train_classifier(train, classifier, seed=0)
    cuts = operating_points(
        image_set_probabilities(evaluator, validate), finding_labels(evaluator, validate), evaluator.findings
    )
    pretrained_source = load_image_source(pretrained)
    evaluator_real = {
        "real_test": on_real_images(classify_image_set(evaluator, test, cuts)),
        "vae_reconstructions": on_real_images(
            classify_image_set(evaluator, vae_reconstructions(pretrained_source.vae(), test), cuts)
        ),
        "thresholds": cuts,
        "validate_vs_test": distances(test, validate, evaluator),  # what two real samples differ by
    }
    lap("evaluator classifier")

    run_dir = out / "finetune"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if not (run_dir / "done").is_file():  # resumes from last.ckpt after an interruption
        run_fit(
            [CONFIG],
            {
                "model.init_args.pretrained_model_name_or_path": str(pretrained),
                **{f"data.init_args.{k}": v for k, v in overrides.items()},
                "data.init_args.latent_cache_vae": str(pretrained),
                "trainer.max_steps": args.finetune_steps,
                "trainer.default_root_dir": str(run_dir),
                "trainer.logger.init_args.save_dir": str(run_dir),
            },
            ckpt_path="auto",
        )
        (run_dir / "done").touch()
    lap("fine-tune")

    options = module.options
    probes = finding_prompts(
        evaluator.findings, options.prompt_mode, options.prompt_template, options.finding_words
    )
    settings = GenerationSettings(per_prompt=1, num_inference_steps=args.sample_steps, guidance_scale=args.guidance,
                                  scheduler=args.scheduler, seed=1000, batch_size=64)  # fmt: skip
    shown = test.take(sample_rows(len(test), args.test_prompts))
    common = (out, shown, test, probes, evaluator, cuts, settings, args.probe_images, args.fid_guidance)
    before = evaluate_source(pretrained_source, "before", *common)
    after = evaluate_source(load_image_source(checkpoint), "after", *common)
    lap("generate and evaluate")

    config = AugmentationConfig(
        out=str(out / "augment"), data=CONFIG, data_overrides=overrides, sizes=list(args.aug_sizes),
        conditions=["real", "synthetic_1x", f"synthetic_{args.aug_multiple}x", "real+synthetic_1x"],
        seeds=list(range(args.aug_seeds)), classifier=replace(classifier, steps=args.aug_classifier_steps),
        synthesis=SynthesisSettings(num_inference_steps=args.sample_steps, guidance_scale=args.guidance,
                                    scheduler=args.scheduler, batch_size=64),
        diffusion=DiffusionSettings(model=str(checkpoint)),
    )  # fmt: skip
    augmentation = run_experiment(config)
    lap("augmentation experiment")

    results = {
        "times_s": times, "train_images": len(train), "validate_images": len(validate), "test_images": len(test),
        "test_prompts": len(shown),
        "evaluator": evaluator_real, "probe_prompts": [p.prompt for p in probes], "before": before, "after": after,
        "augmentation_table": str(augmentation.outputs["table"]),
    }  # fmt: skip
    write_report(out, results, shown, pretrained, checkpoint, args)
    lap("report")
    results["times_s"] = times
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cxr_ldm.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--data", default="data/demo-phantom")
    parser.add_argument("--pretrained", default="artifacts/tiny-pretrained")
    parser.add_argument("--studies", type=int, default=1600)
    parser.add_argument("--classifier-steps", type=int, default=400)
    parser.add_argument("--finetune-steps", type=int, default=2000)
    parser.add_argument("--sample-steps", type=int, default=15)
    parser.add_argument(
        "--scheduler",
        default="dpm++",
        choices=list(SAMPLERS),
        help="sampler of every generated image (docs/evaluation.md: the sampler study)",
    )
    parser.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale")
    parser.add_argument(
        "--fid-guidance",
        type=float,
        default=2.0,
        help="also measure FID and KID on test-prompt images at this guidance (equal to --guidance: not again)",
    )
    parser.add_argument("--probe-images", type=int, default=32, help="images per finding prompt")
    parser.add_argument(
        "--test-prompts",
        type=int,
        default=None,
        help="a seeded subset of the test prompts (default: all of them)",
    )
    parser.add_argument("--aug-sizes", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--aug-multiple", type=int, default=2)
    parser.add_argument("--aug-seeds", type=int, default=2)
    parser.add_argument("--aug-classifier-steps", type=int, default=150, help="every arm's classifier budget")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    torch.manual_seed(0)
    run_demo(parse_args(argv))
    return 0
