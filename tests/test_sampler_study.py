"""The sampler study's rule (bench/sampler_equivalence.py): the cheapest sampler within the reference's spread."""

from __future__ import annotations

import importlib.util

from _tiny_run import ROOT


def _study():
    spec = importlib.util.spec_from_file_location(
        "sampler_equivalence", ROOT / "bench" / "sampler_equivalence.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runs(name, steps, passes, probe, fid, seeds=3):
    return [
        {"sampler": name, "steps": steps, "seed": s, "probe_balanced_accuracy": probe[s], "fid_xrv": fid[s],
         "kid_xrv": 0.05, "ms_ssim": 0.9, "unet_passes": passes, "seconds_per_image": passes / 100}
        for s in range(seeds)
    ]  # fmt: skip


def test_cheapest_sampler_within_two_sd_of_the_reference_wins():
    study = _study()
    results = {
        "pndm:75": _runs("pndm", 75, 76, [0.70, 0.72, 0.74], [0.80, 0.76, 0.78]),  # sd 0.02 on both
        "ddim:20": _runs("ddim", 20, 20, [0.71, 0.73, 0.72], [0.79, 0.80, 0.81]),  # within
        "dpm++:15": _runs("dpm++", 15, 15, [0.60, 0.62, 0.61], [0.78, 0.78, 0.78]),  # probes 0.11 lower: out
        "unipc:20": _runs("unipc", 20, 20, [0.72, 0.72, 0.72], [0.90, 0.91, 0.92]),  # FID 0.13 higher: out
    }
    summary = study.summarise(results, list(results))
    rows = summary["rows"]
    assert rows["ddim:20"]["equivalent"] and rows["pndm:75"]["equivalent"]
    assert not rows["dpm++:15"]["within"]["probe_balanced_accuracy"] and rows["dpm++:15"]["within"]["fid_xrv"]
    assert not rows["unipc:20"]["equivalent"]
    assert summary["recommended"] == "ddim:20"
    # With no sampler within the spread, the reference stays.
    del results["ddim:20"]
    assert study.summarise(results, list(results))["recommended"] == "pndm:75"
