"""An experiment's outputs: `results.json` (every run, the mean ± sd per group, the claims), `report.md`,
figures drawn with matplotlib, and the HPARAMS view of TensorBoard comparing every (arm, seed)."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.utils import save_image

from cxr_ldm.data.atomic import write_text_atomic
from cxr_ldm.evaluation.metrics.metric_names import (
    AUROC,
    BALANCED_ACCURACY,
    COND_AUROC,
    COND_BALANCED_ACCURACY,
    FID,
    KID,
    MS_SSIM,
)
from cxr_ldm.experiments.claims import add_values, check_claims, flatten
from cxr_ldm.experiments.convergence import arm_statuses, rising_arms
from cxr_ldm.experiments.followup import FollowupRun, Values
from cxr_ldm.experiments.learning_curves import convergence_table, learning_curve_figure
from cxr_ldm.experiments.spec import ExperimentConfig
from cxr_ldm.experiments.units import plain
from cxr_ldm.generation.generated_folder import read_generated

GRID_COLUMNS = 8
PROBE_BA, PROBE_AUROC = f"probe/{COND_BALANCED_ACCURACY}", f"probe/{COND_AUROC}"
TEST_BA, TEST_AUROC = f"test_prompts/{COND_BALANCED_ACCURACY}", f"test_prompts/{COND_AUROC}"
RECALL5 = "retrieval/t2i_recall@5"
# The headline metrics logged to TensorBoard's HPARAMS view and listed per run.
HEADLINE = (
    PROBE_BA,
    PROBE_AUROC,
    TEST_BA,
    TEST_AUROC,
    FID,
    KID,
    f"fidelity/{FID}",
    f"fidelity/{KID}",
    MS_SSIM,
    RECALL5,
)


def group_values(
    ceilings: dict, baseline: dict | None, arms: dict, followups: Sequence[FollowupRun] = ()
) -> Values:
    """`values[group][metric]` = one value per seed, for every group a claim may name."""
    values: Values = {}
    for name in ("real_test", "vae_reconstructions"):
        add_values(values, name, flatten(ceilings[name]))
    add_values(values, "real_validation", flatten(ceilings["validate_vs_test"]))
    if baseline is not None:
        add_values(values, "baseline", flatten(baseline))
    for name, seeds in arms.items():
        for seed in sorted(seeds):
            add_values(values, name, flatten(seeds[seed]["metrics"]))
    for run in followups:
        for group, metrics in (run.result.values if run.result else {}).items():
            for metric, seq in metrics.items():
                values.setdefault(group, {}).setdefault(metric, []).extend(seq)
    return values


def summarize(values: dict) -> dict:
    out = {}
    for group, metrics in values.items():
        out[group] = {}
        for metric, seq in metrics.items():
            finite = [v for v in seq if math.isfinite(v)]
            out[group][metric] = {
                "mean": statistics.fmean(finite) if finite else math.nan,
                "sd": statistics.stdev(finite) if len(finite) > 1 else 0.0,
                "n": len(finite),
                "values": seq,
            }
    return out


def config_document(config: ExperimentConfig, followups: Sequence[FollowupRun]) -> dict:
    """The experiment config as data, each follow-up's settings under its key (before the claims)."""
    document = plain(config)
    claims = document.pop("claims")
    document.update({run.followup.key: plain(run.followup.settings) for run in followups})
    return {**document, "claims": claims}


def assemble_results(
    config: ExperimentConfig, ceilings: dict, baseline, arms: dict, followups: Sequence[FollowupRun], times
) -> dict:
    """The results document: every run, the mean ± sd per group, the claims, each follow-up under its key."""
    values = group_values(ceilings, baseline, arms, followups)
    statuses = arm_statuses(config, arms)
    claims = check_claims(config.claims, values, rising_arms(statuses))
    return {
        "name": config.name,
        "config": config_document(config, followups),
        "references": ceilings,
        "baseline": baseline,
        "arms": {name: {f"seed{s}": r for s, r in sorted(seeds.items())} for name, seeds in arms.items()},
        "summary": summarize(values),
        "convergence": statuses,
        "claims": [
            {
                "id": c.claim.id,
                "text": c.claim.text,
                "source": c.claim.source,
                "verdict": c.verdict,
                "comparisons": [
                    {
                        "text": p.describe(),
                        "verdict": p.verdict,
                        "difference": p.difference,
                        "spread": p.spread,
                    }
                    for p in c.comparisons
                ],
            }
            for c in claims
        ],  # fmt: skip
        **{run.followup.key: run.result.results if run.result else None for run in followups},
        "times_s": times,
    }


def _cell(summary: dict, group: str, metric: str, digits: int = 3) -> str:
    entry = summary.get(group, {}).get(metric)
    if entry is None or not math.isfinite(entry["mean"]):
        return ""
    if entry["n"] > 1:
        return f"{entry['mean']:.{digits}f} ± {entry['sd']:.{digits}f}"
    return f"{entry['mean']:.{digits}f}"


def headline_table(config: ExperimentConfig, results: dict) -> list[str]:
    """Arms x metrics, mean ± sd over seeds, with the baseline and the real-image ceilings."""
    findings = list(config.protocol.findings)
    summary = results["summary"]
    p = config.protocol
    fidelity = p.fid_guidance is not None and p.fid_guidance != p.guidance
    columns = [f"probe BA {f}" for f in findings] + ["probe BA macro", "probe AUROC macro", "test-prompt BA macro",
                                                      f"FID g{p.guidance:g}", f"KID g{p.guidance:g}"]  # fmt: skip
    if fidelity:
        columns += [f"FID g{p.fid_guidance:g}", f"KID g{p.fid_guidance:g}"]
    columns += ["MS-SSIM", "t2i R@5"]

    def row(label: str, group: str, seeds: int | str, real: bool = False) -> str:
        ba, au = (BALANCED_ACCURACY, AUROC) if real else (PROBE_BA, PROBE_AUROC)
        cells = [_cell(summary, group, f"{ba}/{f}") for f in findings]
        cells += [
            _cell(summary, group, ba),
            _cell(summary, group, au),
            "" if real else _cell(summary, group, TEST_BA),
        ]
        cells += [_cell(summary, group, FID), _cell(summary, group, KID, 4)]
        if fidelity:
            cells += [_cell(summary, group, f"fidelity/{FID}"), _cell(summary, group, f"fidelity/{KID}", 4)]
        cells += [_cell(summary, group, MS_SSIM), _cell(summary, group, RECALL5)]
        return f"| {label} | {seeds} | " + " | ".join(cells) + " |"

    lines = ["| arm | seeds | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    if results.get("baseline") is not None:
        lines.append(row("pretrained, before fine-tuning", "baseline", 1))
    for arm in config.arms:
        if arm.name in results["arms"]:
            lines.append(row(f"**{arm.name}**", arm.name, len(results["arms"][arm.name])))
    lines.append(row("ceiling: real test images", "real_test", "-", real=True))
    lines.append(row("ceiling: their VAE reconstructions", "vae_reconstructions", "-", real=True))
    lines.append(row("real validation vs test images", "real_validation", "-", real=True))
    return lines


def runs_table(config: ExperimentConfig, results: dict) -> list[str]:
    """Every (arm, seed) run: the numbers behind each mean ± sd."""
    lines = ["| arm | seed | probe BA macro | probe AUROC macro | test-prompt BA macro | FID | MS-SSIM | t2i R@5 | "
             "fit s | evaluation s |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for arm in config.arms:
        for key, run in results["arms"].get(arm.name, {}).items():
            flat = flatten(run["metrics"])
            cells = [flat.get(m, math.nan) for m in (PROBE_BA, PROBE_AUROC, TEST_BA, FID, MS_SSIM, RECALL5)]
            seconds = run.get("seconds", {})
            lines.append(f"| {arm.name} | {key[4:]} | " + " | ".join(f"{c:.3f}" if math.isfinite(c) else "" for c in cells)
                         + f" | {seconds.get('fit', '')} | {seconds.get('evaluation', '')} |")  # fmt: skip
    return lines


def claims_section(results: dict) -> list[str]:
    lines = []
    for claim in results["claims"]:
        source = f" ({claim['source']})" if claim["source"] else ""
        lines.append(f"- **{claim['id']}**{source}: {claim['text']} — **{claim['verdict']}**")
        lines += [f"  - {part['text']}" for part in claim["comparisons"]]
    return lines


def figures(out: Path, config: ExperimentConfig, results: dict) -> list[Path]:
    """Bar charts (mean, seeds as dots) of the probes' macro balanced accuracy and of CXR FID per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    summary = results["summary"]
    groups = (["baseline"] if results.get("baseline") is not None else []) + [
        a.name for a in config.arms if a.name in results["arms"]
    ]
    paths = []
    for metric, label, name, ceiling in (
        (PROBE_BA, "finding probes: macro balanced accuracy", "probes.png", ("real_test", BALANCED_ACCURACY)),
        (FID, f"CXR FID at guidance {config.protocol.guidance:g} (lower is closer)", "fid.png",
         ("real_validation", FID)),
    ):  # fmt: skip
        figure, axes = plt.subplots(figsize=(max(4.0, 0.9 * len(groups) + 1.5), 3.2), dpi=100)
        for x, group in enumerate(groups):
            entry = summary.get(group, {}).get(metric)
            if entry is None:
                continue
            axes.bar(x, entry["mean"], color="#4c72b0" if group != "baseline" else "#999999")
            axes.scatter([x] * len(entry["values"]), entry["values"], color="black", s=10, zorder=3)
        reference = summary.get(ceiling[0], {}).get(ceiling[1])
        if reference is not None:
            axes.axhline(
                reference["mean"], color="#c44e52", linestyle="--", label=ceiling[0].replace("_", " ")
            )
            axes.legend(fontsize=7, loc="best")
        axes.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=8)
        axes.set_title(label, fontsize=9)
        figure.tight_layout()
        path = folder / name
        figure.savefig(path)
        plt.close(figure)
        paths.append(path)
    curve = learning_curve_figure(folder, results)
    paths += [curve] if curve is not None else []
    paths += image_grids(out, config, results, groups)
    return paths


def image_grids(out: Path, config: ExperimentConfig, results: dict, groups: list[str]) -> list[Path]:
    """`probe-images.png`: per probe prompt one row of images per group (baseline, then each arm's first seed);
    `samples.png`: real test images, then the same prompts drawn by each group (same seeds)."""
    folders = {}
    for group in groups:
        if group == "baseline":
            folders[group] = out / "baseline" / "eval"
        else:
            first = next(iter(results["arms"][group]))
            folders[group] = out / "arms" / group / first / "eval"
    size = config.data.image_size
    per_prompt = config.protocol.probe_images
    count = min(GRID_COLUMNS, per_prompt)
    probes = {g: read_generated(f / "probe", per_prompt, size).pixels01() for g, f in folders.items()}
    rows = []
    for index in range(len(config.protocol.findings)):
        first = index * per_prompt
        rows += [probes[g][first : first + count] for g in groups]
    paths = []
    if rows:
        path = out / "figures" / "probe-images.png"
        save_image(torch.cat(rows), path, nrow=count, padding=2, pad_value=1.0)
        paths.append(path)
    tests = {
        g: read_generated(f / "test", 1, size, limit=GRID_COLUMNS).pixels01() for g, f in folders.items()
    }
    if tests:
        path = out / "figures" / "samples.png"
        width = min(len(t) for t in tests.values())
        save_image(torch.cat([t[:width] for t in tests.values()]), path, nrow=width, padding=2,
                   pad_value=1.0)  # fmt: skip
        paths.append(path)
    return paths


def log_hparams(out: Path, config: ExperimentConfig, results: dict) -> Path:
    """One TensorBoard HPARAMS session per (arm, seed) under `tensorboard/hparams/`, rewritten with the report."""
    from torch.utils.tensorboard import SummaryWriter

    folder = out / "tensorboard" / "hparams"
    if folder.exists():
        shutil.rmtree(folder)
    specs = {arm.name: arm for arm in config.arms}
    for name, seeds in results["arms"].items():
        for key, run in seeds.items():
            flat = flatten(run["metrics"])
            arm = specs[name]
            hparams = {"arm": name, "seed": run["seed"], "steps": config.steps or -1,
                       "configs": " ".join(Path(c).name for c in arm.configs)}  # fmt: skip
            metrics = {f"final/{m}": flat[m] for m in HEADLINE if m in flat and math.isfinite(flat[m])}
            with SummaryWriter(log_dir=str(folder / f"{name}-{key}")) as writer:
                writer.add_hparams(hparams, metrics, run_name=".")
    return folder


def write_report(
    out: Path, config: ExperimentConfig, results: dict, sections: Sequence[list[str]] = ()
) -> Path:
    """`report.md` (with `sections`, the follow-ups' markdown lines, after every run) and `results.json`."""
    refs = results["references"]
    images = refs.get("images", {})
    p = config.protocol
    shown = "all" if p.test_prompts is None else f"a seeded {p.test_prompts} of the"
    log_hparams(out, config, results)
    lines = [
        f"# {config.name}", "",
        f"Pretrained pipeline `{config.pretrained}`; real images under `{config.data.root}`: {images.get('train')} "
        f"train, {images.get('validate')} validation, {images.get('test')} test. Every arm trains "
        f"{config.steps if config.steps is not None else 'its config''s'} steps per seed. Images: {p.scheduler}, "
        f"{p.sample_steps} steps, guidance {p.guidance:g}; {p.probe_images} images per finding probe prompt, one "
        f"image per {shown} real test prompts.", "",
        "The evaluator is a classifier trained on the real training split; its operating point per finding is "
        "chosen on the real validation split before it sees a generated image. BA = balanced accuracy (0.5 is "
        "chance). FID / KID on the evaluator's features against every real test image. MS-SSIM between samples "
        "of one prompt (lower = more diverse). t2i R@5: a prompt retrieves an image drawn from it among the "
        "five nearest (retriever trained on the real training split).", "",
        "## Results (mean ± sd over seeds)", "",
        *headline_table(config, results), "",
        "## Convergence (learning curves)", "",
        *convergence_table(config, results), "",
        "## Claims of the papers, checked", "",
        "Rule (fixed before any result): the difference of the means against two standard errors of that "
        "difference over seeds (`cxr_ldm/experiments/claims.py`), in the metric's better direction (lower "
        "for FID and KID). One value on a side that depends on the training seed: one seed, not judged. Both "
        "sides references measured once: a threshold, decided by the margin alone. A side still rising at the "
        "cap of its training: undecided.", "",
        *claims_section(results), "",
        "## Every run", "",
        *runs_table(config, results), "",
    ]  # fmt: skip
    for section in sections:
        lines += section
    figure_paths = figures(out, config, results)
    lines += ["## Figures", ""]
    lines += [f"![{path.stem}]({path.relative_to(out)})" for path in figure_paths]
    lines += ["", "probe-images.png: per probe prompt (in the order of the findings above) one row per model: "
              "the pretrained pipeline, then each arm's first seed (same seeds).", "",
              "TensorBoard: `tensorboard --logdir " + str(out / "tensorboard") + "` (HPARAMS compares the arms).", "",
              "## Wall time of this run (s)", "", *(f"- {k}: {v}" for k, v in results["times_s"].items()), ""]  # fmt: skip
    write_text_atomic(out / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path
