"""The demo's `report.md` and its image grids: finding probes and test prompts, before vs after fine-tuning."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.utils import save_image

from cxr_ldm.augmentation.synthetic import read_synthetic
from cxr_ldm.demo.tiny_components import IMAGE_SIZE
from cxr_ldm.evaluation.metric_names import (
    AUROC,
    BALANCED_ACCURACY,
    COND_AUROC,
    COND_BALANCED_ACCURACY,
    FID,
    KID,
)

GRID_COLUMNS = 8


def _cells(metrics: dict, findings: list[str], key: str) -> str:
    values = [metrics.get(f"{key}/{f}", math.nan) for f in findings] + [metrics.get(key, math.nan)]
    return " | ".join(f"{v:.3f}" for v in values)


def _table(findings: list[str], rows: list[tuple[str, dict, str]]) -> list[str]:
    head = ["| | " + " | ".join(findings) + " | macro |", "|" + "---|" * (len(findings) + 2)]
    return head + [f"| {label} | {_cells(metrics, findings, key)} |" for label, metrics, key in rows]


def _prompts_used(results: dict) -> str:
    """How many real test prompts were generated from, in words."""
    if results["test_prompts"] >= results["test_images"]:
        return "one image generated for each of their prompts"
    return f"{results['test_prompts']} of their prompts drawn, one image each"


def _distance_rows(before: dict, after: dict, reference: dict, label: str) -> list[str]:
    return [
        f"| FID, {label} | {before[FID]:.3f} | {after[FID]:.3f} | {reference[FID]:.3f} |",
        f"| KID, {label} | {before[KID]:.4f} | {after[KID]:.4f} | {reference[KID]:.4f} |",
    ]


def _probe_grid(out: Path, prompts: list[str], per_prompt: int) -> Path:
    """Per probe prompt two rows of `GRID_COLUMNS` images: before, then after fine-tuning (same seeds)."""
    before = read_synthetic(out / "probe-before", per_prompt, IMAGE_SIZE).images
    after = read_synthetic(out / "probe-after", per_prompt, IMAGE_SIZE).images
    rows = []
    for index in range(len(prompts)):
        first = index * per_prompt
        rows += [before[first : first + GRID_COLUMNS], after[first : first + GRID_COLUMNS]]
    path = out / "probes.png"
    save_image(torch.cat(rows).float() / 255, path, nrow=GRID_COLUMNS, padding=2, pad_value=1.0)
    return path


def write_report(out: Path, results: dict, test, pretrained: Path, checkpoint: Path, args) -> Path:
    """Write `out/report.md`, `out/probes.png` and `out/samples.png` (rows: real test image, before, after).

    `test` holds the real test images whose prompts were drawn, in the order they were drawn."""
    before = read_synthetic(out / "generated-before", 1, IMAGE_SIZE)
    after = read_synthetic(out / "generated-after", 1, IMAGE_SIZE)
    count = min(GRID_COLUMNS, len(test))
    grid = torch.cat([test.images[:count], before.images[:count], after.images[:count]]).float() / 255
    save_image(grid, out / "samples.png", nrow=count, padding=2, pad_value=1.0)
    _probe_grid(out, results["probe_prompts"], args.probe_images)
    b, a, evaluator = results["before"], results["after"], results["evaluator"]
    findings = list(evaluator["thresholds"])
    real, vae, reference = (
        evaluator["real_test"],
        evaluator["vae_reconstructions"],
        evaluator["validate_vs_test"],
    )
    prompts = ", ".join(f'"{p}"' for p in results["probe_prompts"])
    lines = [
        "# cxr-ldm demo report (phantom data, CPU)", "",
        f"Pretrained pipeline: `{pretrained}`; fine-tuned checkpoint: `{checkpoint}` ({args.finetune_steps} steps).",
        f"Real images: {results['train_images']} train, {results['validate_images']} validation, "
        f"{results['test_images']} test ({_prompts_used(results)}). Sampling: {args.scheduler}, "
        f"{args.sample_steps} steps, guidance {args.guidance}.", "",
        "The evaluator is a small classifier trained on the real training split. A finding counts as present at the",
        "evaluator's operating point on the real validation images (maximal sensitivity + specificity there), fixed",
        "before it sees a generated image. Balanced accuracy is the mean of sensitivity and specificity: 0.5 is chance",
        "whatever the prevalence.", "",
        "## Does the evaluator see the finding the prompt asked for?", "",
        f"{args.probe_images} images for each prompt {prompts}; for each finding its own prompt's images are the",
        "positives and the other prompts' images the negatives.", "",
        *_table(findings, [
            ("balanced accuracy before", b["probe"], COND_BALANCED_ACCURACY),
            ("balanced accuracy after", a["probe"], COND_BALANCED_ACCURACY),
            ("AUROC before", b["probe"], COND_AUROC),
            ("AUROC after", a["probe"], COND_AUROC),
            ("real test images: balanced accuracy", real, BALANCED_ACCURACY),
            ("real test images: AUROC", real, AUROC),
            ("VAE reconstructions of them: balanced accuracy", vae, BALANCED_ACCURACY),
            ("VAE reconstructions of them: AUROC", vae, AUROC),
        ]), "",
        "![finding probes](probes.png)", "",
        "Rows in pairs per prompt (in the order above): before fine-tuning, after (same seeds).", "",
        "## One image per real test prompt (their labels, several findings at once)", "",
        *_table(findings, [
            ("balanced accuracy before", b["test_prompts"], COND_BALANCED_ACCURACY),
            ("balanced accuracy after", a["test_prompts"], COND_BALANCED_ACCURACY),
            ("AUROC before", b["test_prompts"], COND_AUROC),
            ("AUROC after", a["test_prompts"], COND_AUROC),
        ]), "",
        "CXR FID and KID (evaluator features, against all real test images; lower is closer). The real validation",
        "images against the same test images show what two real samples of this size differ by.", "",
        "| | before | after | real validation images |", "|---|---|---|---|",
        *_distance_rows(b, a, reference, f"guidance {args.guidance}, the images above"),
        *(_distance_rows(b["fidelity"], a["fidelity"], reference, f"guidance {b['fidelity']['guidance']}")
          if "fidelity" in b and "fidelity" in a else []), "",
        "Guidance trades fidelity for conditioning: the stronger the guidance, the plainer the prompted findings",
        "and the further the images as a set from the real ones.", "",
        "![samples](samples.png)", "",
        "Rows: real test image, before fine-tuning, after fine-tuning (same prompt and seed).", "",
        "## Augmentation experiment (mean ± std over seeds)", "",
        Path(results["augmentation_table"]).read_text(), "![augmentation](augment/results.png)", "",
        "## Wall time (s)", "", *(f"- {k}: {v}" for k, v in results["times_s"].items()), "",
    ]  # fmt: skip
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
