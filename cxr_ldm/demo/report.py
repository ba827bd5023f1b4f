"""The demo's `report.md` and its sample grid: real vs before vs after fine-tuning for a few test prompts."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image

from cxr_ldm.augmentation.synthetic import read_synthetic
from cxr_ldm.demo.tiny_components import IMAGE_SIZE


def _row(metrics: dict, findings: list[str], key: str) -> str:
    return " | ".join(f"{metrics.get(f'{key}/{f}', float('nan')):.3f}" for f in findings)


def write_report(out: Path, results: dict, test, pretrained: Path, checkpoint: Path, args) -> Path:
    """Write `out/report.md` and `out/samples.png` (rows: real test image, before, after)."""
    before = read_synthetic(out / "generated-before", 1, IMAGE_SIZE)
    after = read_synthetic(out / "generated-after", 1, IMAGE_SIZE)
    count = min(8, len(test))
    grid = torch.cat([test.images[:count], before.images[:count], after.images[:count]]).float() / 255
    save_image(grid, out / "samples.png", nrow=count, padding=2, pad_value=1.0)
    findings = [k.split("/", 1)[1] for k in results["after"] if k.startswith("cond_accuracy/")]
    b, a, real = results["before"], results["after"], results["evaluator_on_real_test"]
    lines = [
        "# cxr-ldm demo report (phantom data, CPU)", "",
        f"Pretrained pipeline: `{pretrained}`; fine-tuned checkpoint: `{checkpoint}` ({args.finetune_steps} steps).",
        f"Real images: {results['train_images']} train, {results['test_images']} test. "
        f"Sampling: DDIM, {args.sample_steps} steps, guidance 4, one image per test prompt.", "",
        "## Conditioned classification (evaluator trained on the real training split)", "",
        "| | " + " | ".join(findings) + " | macro |", "|" + "---|" * (len(findings) + 2),
        f"| accuracy before | {_row(b, findings, 'cond_accuracy')} | {b.get('cond_accuracy', float('nan')):.3f} |",
        f"| accuracy after | {_row(a, findings, 'cond_accuracy')} | {a.get('cond_accuracy', float('nan')):.3f} |",
        f"| AUROC before | {_row(b, findings, 'cond_auroc')} | {b.get('cond_auroc', float('nan')):.3f} |",
        f"| AUROC after | {_row(a, findings, 'cond_auroc')} | {a.get('cond_auroc', float('nan')):.3f} |",
        f"| evaluator on real test (AUROC) | {_row(real, findings, 'auroc')} | {real.get('auroc', float('nan')):.3f} |",
        f"| evaluator on real test (accuracy) | {_row(real, findings, 'accuracy')} | {real.get('accuracy', float('nan')):.3f} |",
        "", "## CXR FID (evaluator features; lower is closer to the real test images)", "",
        f"before: {b['fid_cxr']:.2f}, after: {a['fid_cxr']:.2f}", "",
        "## Augmentation experiment (macro and per-finding, mean ± std over seeds)", "",
        Path(results["augmentation_table"]).read_text(), "![augmentation](augment/results.png)", "",
        "## Samples", "", "Rows: real test image, before fine-tuning, after fine-tuning (same prompt and seed).", "",
        "![samples](samples.png)", "", "## Wall time (s)", "",
        *(f"- {k}: {v}" for k, v in results["times_s"].items()), "",
    ]  # fmt: skip
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
