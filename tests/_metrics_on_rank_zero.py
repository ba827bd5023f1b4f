"""Run by tests/test_eval_metrics.py as the ranks of one gloo process group: rank 0 alone computes CXR FID and
KID of a tiny image set (as the `GenerationMetrics` callback does during a DDP fit), then every rank meets
at a barrier. Usage: python _metrics_on_rank_zero.py RANK WORLD_SIZE INIT_FILE OUT_JSON"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from cxr_ldm.evaluation.evaluators import CxrClassifier
from cxr_ldm.evaluation.metrics.fid import fid_classifier, kid_classifier


def tiny_metrics() -> dict[str, float]:
    """CXR FID and KID of six random images against six others, on a tiny untrained evaluator."""
    torch.manual_seed(0)
    classifier = CxrClassifier(image_size=32, growth_rate=4, block_config=(1, 1), num_init_features=8).eval()
    real, fake = torch.rand(6, 1, 32, 32), torch.rand(6, 1, 32, 32)
    return {"fid": fid_classifier(real, fake, classifier), "kid": kid_classifier(real, fake, classifier)}


if __name__ == "__main__":
    rank, world, init, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    dist.init_process_group(
        "gloo", init_method=f"file://{init}", rank=rank, world_size=world, timeout=timedelta(seconds=30)
    )
    if rank == 0:
        out.write_text(json.dumps(tiny_metrics()))
    dist.barrier()
    dist.destroy_process_group()
