"""One metric vocabulary: every producer of FID / KID / classification metrics uses cxr_ldm.evaluation.metrics.metric_names."""

from __future__ import annotations

import re

from _tiny_run import ROOT

from cxr_ldm.evaluation.metrics import metric_names
from cxr_ldm.evaluation.metrics.metric_names import current_names, on_real_images


def test_results_saved_under_former_names_read_back_under_current_ones() -> None:
    saved = {"fid_cxr": 1.5, "kid_cxr": 0.1, "ms_ssim": 0.9, "fidelity": {"guidance": 2.0, "fid_cxr": 3.0}}
    assert current_names(saved) == {
        "fid_xrv": 1.5,
        "kid_xrv": 0.1,
        "ms_ssim": 0.9,
        "fidelity": {"guidance": 2.0, "fid_xrv": 3.0},
    }


def test_real_image_names_drop_only_the_conditioning_prefix() -> None:
    found = {"cond_auroc": 0.7, "cond_auroc/Pneumothorax": 0.6, "cond_balanced_accuracy/No Finding": 0.5}
    assert on_real_images(found) == {
        "auroc": 0.7,
        "auroc/Pneumothorax": 0.6,
        "balanced_accuracy/No Finding": 0.5,
    }


def test_no_module_spells_a_former_metric_name() -> None:
    former = re.compile("|".join(metric_names.FORMER_NAMES))
    sources = [
        *(ROOT / "cxr_ldm").rglob("*.py"),
        *(ROOT / "bench").rglob("*.py"),
    ]
    spelled = [
        str(path.relative_to(ROOT))
        for path in sources
        if path.name != "metric_names.py" and former.search(path.read_text())
    ]
    assert spelled == [], "use cxr_ldm.evaluation.metrics.metric_names instead of the former names"
