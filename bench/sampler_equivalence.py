"""Do faster samplers give the same evaluation as PNDM 75? Same fine-tuned checkpoint, prompts and seeds.

    python bench/sampler_equivalence.py --out runs/sampler-study

Set-up as the demo (`configs/experiments/demo.yaml`), at budgets of its options: the phantom, the evaluator
classifier trained on the real training split with its operating points from the real validation split,
and the demo's fine-tune from `artifacts/tiny-pretrained`. Then, for every study seed and
every sampler (`NAME:STEPS`, default PNDM 75, DDIM 50 / 20, DPM-Solver++ 25 / 20 / 15, UniPC 20):

- finding probes (`--probe-images` per finding prompt): macro balanced accuracy of the evaluator at its
  operating points, and MS-SSIM between the samples of one prompt;
- one image per prompt of a seeded subset of the test prompts (`--test-prompts`): CXR FID and KID
  (evaluator features) against every real test image;
- U-Net forward passes per sampling call (each pass carries the prompt and the empty prompt for guidance)
  and wall seconds per image.

Study seed s draws image i with seed `1000 + 100000 * s + i`, for every sampler. The rule: a sampler is
equivalent when each metric's mean over the seeds lies within mean +- 2 sd (over the seeds) of the reference
(the first sampler); the recommended sampler is the equivalent one with the fewest U-Net passes.
Every (sampler, seed) result is a JSON file under `OUT/results/`, images under `OUT/images/`: a rerun only
computes what is missing. `OUT/summary.md` and `OUT/summary.json` hold the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cxr_ldm.data.atomic import write_text_atomic  # noqa: E402
from cxr_ldm.data.real_split import read_split  # noqa: E402
from cxr_ldm.evaluation.ceilings import distances  # noqa: E402
from cxr_ldm.evaluation.evaluators.classifier_training import build_classifier, train_classifier  # noqa: E402
from cxr_ldm.evaluation.metrics.conditioned_classification import (  # noqa: E402
    classify_image_set,
    finding_labels,
    image_set_probabilities,
)
from cxr_ldm.evaluation.metrics.diversity import ms_ssim_diversity  # noqa: E402
from cxr_ldm.evaluation.metrics.metric_names import (  # noqa: E402
    COND_BALANCED_ACCURACY,
    FID,
    KID,
    MS_SSIM,
    current_names,
)
from cxr_ldm.evaluation.metrics.operating_points import operating_points  # noqa: E402
from cxr_ldm.evaluation.protocol import sample_rows  # noqa: E402
from cxr_ldm.experiments.phantom_data import ensure_phantom  # noqa: E402
from cxr_ldm.experiments.synthetic_augmentation import ClassifierSettings  # noqa: E402
from cxr_ldm.generation.finding_prompts import finding_prompts  # noqa: E402
from cxr_ldm.generation.generated_folder import GenerationSettings, generate_images, read_generated  # noqa: E402
from cxr_ldm.generation.prompt_records import prompt_records  # noqa: E402
from cxr_ldm.labels import HEADLINE_FINDINGS  # noqa: E402
from cxr_ldm.training.datamodule import load_datamodule_for  # noqa: E402

# the demo's fine-tune (configs/experiments/demo.yaml's arm) and the data it reads
CONFIGS = [str(REPO / p) for p in ("configs/finetune/sd14-unet-text-pa.yaml", "configs/experiments/_phantom/finetune.yaml",
                                   "configs/experiments/_phantom/arms/unet-text.yaml")]  # fmt: skip
CONFIG = str(REPO / "configs" / "experiments" / "_phantom" / "data.yaml")
IMAGE_SIZE = 64
SAMPLERS = ["pndm:75", "ddim:50", "ddim:20", "dpm++:25", "dpm++:20", "dpm++:15", "unipc:20"]
METRICS = {  # key -> (column title, better)
    "probe_balanced_accuracy": ("probe balanced accuracy", "higher"),
    FID: ("CXR FID", "lower"),
    KID: ("CXR KID", "lower"),
    MS_SSIM: ("MS-SSIM", "lower = more diverse"),
}


class UNetCounter:
    """Counts U-Net forward passes (a forward hook on the model's U-Net)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.calls = 0
        self.handle = unet.register_forward_hook(self._hook)

    def _hook(self, *_) -> None:
        self.calls += 1


class CountingSource:
    """An image source that records U-Net passes per `sample` call and the seconds spent sampling."""

    def __init__(self, source) -> None:
        self.source = source
        self.counter = UNetCounter(source.model.unet)
        self.passes: list[int] = []
        self.seconds = 0.0
        self.images = 0

    def sample(self, prompts, seeds, **kwargs):
        before, start = self.counter.calls, time.perf_counter()
        images = self.source.sample(prompts, seeds, **kwargs)
        self.seconds += time.perf_counter() - start
        self.images += len(prompts)
        self.passes.append(self.counter.calls - before)
        return images


def parse_sampler(text: str) -> tuple[str, int]:
    name, _, steps = text.partition(":")
    if not steps.isdigit():
        raise SystemExit(f"--samplers takes NAME:STEPS (e.g. ddim:20), not {text!r}")
    return name, int(steps)


def evaluator_and_cuts(args, out: Path, train, validate):
    """The demo's evaluator classifier (cached in OUT/evaluator.pt) and its operating points."""
    settings = ClassifierSettings(
        findings=list(HEADLINE_FINDINGS), image_size=IMAGE_SIZE, growth_rate=8, block_config=[2, 2, 2],
        num_init_features=16, lr=3e-3, steps=args.classifier_steps, batch_size=32, accelerator="cpu",
    )  # fmt: skip
    path = out / "evaluator.pt"
    if path.is_file():
        evaluator = build_classifier(settings)
        evaluator.load_state_dict(torch.load(path, weights_only=True))
        evaluator.eval()
    else:
        evaluator = train_classifier(train, settings, seed=0)
        torch.save(evaluator.state_dict(), path)
    cuts = operating_points(
        image_set_probabilities(evaluator, validate), finding_labels(evaluator, validate), evaluator.findings
    )
    return evaluator, cuts


def fine_tune(args, out: Path, overrides: dict) -> Path:
    """The demo's fit (`CONFIGS`) for `--finetune-steps` steps (resumes from last.ckpt)."""
    from cxr_ldm.__main__ import main as cli

    run_dir = out / "finetune"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if not (run_dir / "done").is_file():
        code = cli(["fit", *(a for c in CONFIGS for a in ("--config", c)), "--model.init_args.components.pretrained_model_name_or_path", args.pretrained,
                    *(f"--data.init_args.{k}={v}" for k, v in overrides.items()),
                    f"--data.init_args.latent_cache_vae={args.pretrained}",
                    "--trainer.max_steps", str(args.finetune_steps), "--trainer.default_root_dir", str(run_dir),
                    "--trainer.logger.init_args.save_dir", str(run_dir), "--ckpt_path", "last"])  # fmt: skip
        if code != 0:
            raise RuntimeError("the fine-tune failed")
        (run_dir / "done").touch()
    return checkpoint


def run_one(source, tag: str, seed: int, args, probes, shown, test, evaluator, cuts, out: Path) -> dict:
    """Generate and measure one (sampler, seed); the timing counts only images drawn in this call."""
    name, steps = parse_sampler(tag)
    settings = GenerationSettings(
        per_prompt=1, num_inference_steps=steps, guidance_scale=args.guidance, scheduler=name,
        seed=1000 + 100000 * seed, batch_size=args.batch_size,
    )  # fmt: skip
    folder = out / "images" / f"{name}-{steps}-seed{seed}"
    source.passes, source.seconds, source.images = [], 0.0, 0
    probe_settings = replace(settings, per_prompt=args.probe_images)
    generate_images(source, probes, folder / "probe", probe_settings, progress=False)
    generate_images(source, prompt_records(shown), folder / "test", settings, progress=False)
    probe = read_generated(folder / "probe", args.probe_images, IMAGE_SIZE)
    fake = read_generated(folder / "test", 1, IMAGE_SIZE)
    found = classify_image_set(evaluator, probe, cuts)
    return {
        "sampler": name,
        "steps": steps,
        "seed": seed,
        "probe_balanced_accuracy": found[COND_BALANCED_ACCURACY],
        "probe": found,
        **distances(test, fake, evaluator),
        MS_SSIM: ms_ssim_diversity(probe.pixels01(), probe.prompt_index),
        "unet_passes": max(source.passes) if source.passes else None,
        "seconds_per_image": source.seconds / source.images if source.images else None,
        "images_timed": source.images,
        "images": len(probe) + len(fake),
    }


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: dict[str, list[dict]], samplers: list[str]) -> dict:
    """Mean and sd per sampler and metric; which samplers are within mean +- 2 sd of the reference."""
    rows = {}
    for tag in samplers:
        runs = results.get(tag, [])
        if not runs:
            continue
        row = {
            "seeds": len(runs),
            "unet_passes": next((r["unet_passes"] for r in runs if r["unet_passes"]), None),
        }
        timed = [r["seconds_per_image"] for r in runs if r["seconds_per_image"] is not None]
        row["seconds_per_image"] = statistics.fmean(timed) if timed else None
        for key in METRICS:
            row[key] = mean_sd([r[key] for r in runs])
        rows[tag] = row
    reference = samplers[0]
    if reference in rows:
        ref = rows[reference]
        by_seed = {r["seed"]: r for r in results[reference]}
        for tag, row in rows.items():
            # Same seeds, so the per-seed difference from the reference shows a shift that seed noise hides.
            paired = [(r, by_seed[r["seed"]]) for r in results[tag] if r["seed"] in by_seed]
            row["paired_difference"] = {key: mean_sd([a[key] - b[key] for a, b in paired]) for key in METRICS}
            row["within"] = {
                key: abs(row[key][0] - ref[key][0]) <= 2 * ref[key][1] + 1e-12 for key in METRICS
            }
            row["equivalent"] = all(row["within"].values())
        candidates = [t for t, r in rows.items() if r["equivalent"] and r["unet_passes"]]
        best = min(candidates, key=lambda t: rows[t]["unet_passes"]) if candidates else reference
    else:
        best = None
    return {"reference": reference, "recommended": best, "rows": rows}


def summary_markdown(summary: dict, args) -> str:
    head = ["sampler", "seeds", *(METRICS[k][0] for k in METRICS), "U-Net passes", "s / image", "within"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for tag, row in summary["rows"].items():
        cells = [tag, str(row["seeds"])]
        for key in METRICS:
            mean, sd = row[key]
            mark = "" if row.get("within", {}).get(key, True) else " (out)"
            cells.append(f"{mean:.3f} ± {sd:.3f}{mark}")
        cells.append(str(row["unet_passes"]))
        cells.append("-" if row["seconds_per_image"] is None else f"{row['seconds_per_image']:.3f}")
        cells.append("yes" if row.get("equivalent") else "no")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per-seed difference from the reference (same seeds and prompts), mean ± sd:",
        "",
        "| sampler | " + " | ".join(METRICS[k][0] for k in METRICS) + " |",
        "|" + "---|" * (len(METRICS) + 1),
    ]
    for tag, row in summary["rows"].items():
        if "paired_difference" in row and tag != summary["reference"]:
            cells = [f"{m:+.3f} ± {sd:.3f}" for m, sd in (row["paired_difference"][k] for k in METRICS)]
            lines.append(f"| {tag} | " + " | ".join(cells) + " |")
    note = (
        f"\nReference: {summary['reference']}; within = every metric's mean within the reference's mean ± 2 sd "
        f"over seeds. Recommended (fewest U-Net passes among those within): **{summary['recommended']}**.\n"
        f"Guidance {args.guidance}; {args.probe_images} images per finding prompt; {args.test_prompts} test "
        f"prompts, one image each; fine-tune {args.finetune_steps} steps; evaluator {args.classifier_steps} steps.\n"
    )
    return "\n".join(lines) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/sampler-study")
    parser.add_argument(
        "--data", default="data/demo-phantom", help="the demo's phantom folder (made if missing)"
    )
    parser.add_argument("--pretrained", default=str(REPO / "artifacts" / "tiny-pretrained"))
    parser.add_argument("--studies", type=int, default=1600)
    parser.add_argument("--classifier-steps", type=int, default=400)
    parser.add_argument("--finetune-steps", type=int, default=2000)
    parser.add_argument(
        "--checkpoint", default=None, help="a fine-tuned checkpoint to study instead of fitting one"
    )
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--probe-images", type=int, default=16, help="images per finding prompt")
    parser.add_argument("--test-prompts", type=int, default=96, help="a seeded subset of the test prompts")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--samplers", nargs="+", default=SAMPLERS, help="NAME:STEPS; the first is the reference"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    for tag in args.samplers:
        parse_sampler(tag)

    from cxr_ldm.generation.image_source import load_image_source

    torch.manual_seed(0)
    out, data = Path(args.out), Path(args.data)
    (out / "results").mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    ensure_phantom(data, args.studies, IMAGE_SIZE)
    overrides = {"root": str(data), "cache_dir": str(out / "cache")}
    module = load_datamodule_for(CONFIG, overrides, IMAGE_SIZE)
    train, validate, test = (read_split(module, split) for split in ("train", "validate", "test"))
    evaluator, cuts = evaluator_and_cuts(args, out, train, validate)
    checkpoint = Path(args.checkpoint) if args.checkpoint else fine_tune(args, out, overrides)
    print(f"[study] set-up {time.perf_counter() - clock:.0f} s; checkpoint {checkpoint}", flush=True)

    probes = finding_prompts(evaluator.findings, module.options.prompt_mode, module.options.prompt_template)
    shown = test.take(sample_rows(len(test), args.test_prompts))
    source = CountingSource(load_image_source(checkpoint))
    source.source.sample(
        ["warm-up"], [0], num_inference_steps=2, scheduler="ddim"
    )  # first-call costs untimed
    results: dict[str, list[dict]] = {}
    for seed in range(args.seeds):  # every sampler at seed 0 first: a partial study still compares them all
        for tag in args.samplers:
            name, steps = parse_sampler(tag)
            path = out / "results" / f"{name}-{steps}-seed{seed}.json"
            if not path.is_file():
                start = time.perf_counter()
                found = run_one(source, tag, seed, args, probes, shown, test, evaluator, cuts, out)
                write_text_atomic(path, json.dumps(found, indent=2) + "\n")
                print(f"[study] {tag} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
            results.setdefault(tag, []).append(current_names(json.loads(path.read_text())))
        summary = summarise(results, args.samplers)
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        write_text_atomic(out / "summary.md", summary_markdown(summary, args))
    print((out / "summary.md").read_text(), flush=True)
    print(f"[study] total {time.perf_counter() - clock:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
