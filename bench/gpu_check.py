"""One GPU check in one run, written as one JSON file (`bench/gpu_check.sh` installs what is missing, then runs this).

On a CUDA machine (SD v1.x shapes, 512 px, bf16-mixed, random weights built from config, no download):

- throughput: our fit path vs the diffusers-style plain loop (`bench/train_throughput.py`), U-Net only and
  U-Net + text encoder, from cached latents, with achieved TFLOP/s against the GPU's bf16 peak;
- peak memory of our fit alone at batch 8 (U-Net only), and the largest batch that fits in 24 GB and in
  80 GB, from a linear fit of our fit's peak memory at batches 2 and 8 (`max_batch.method` says so);
- sampling speed: seconds per image with PNDM at 75 steps and DPM-Solver++ at 20 steps (guidance 4).

On a CPU (or with `--tiny`) it runs the same sections with the tiny config's shapes and records the
GPU-only ones as skipped, so the script itself can be tested anywhere:

    python bench/gpu_check.py --out gpu_check.json            # CUDA: SD shapes
    python bench/gpu_check.py --tiny --out /tmp/check.json    # any machine: tiny shapes, quick
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt  # noqa: E402

GIB_24, GIB_80 = 24e9 / 2**30, 80e9 / 2**30


def environment() -> dict:
    import diffusers
    import lightning

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "diffusers": diffusers.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    if torch.cuda.is_available():
        info["device_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def max_batches(config: dict, data_root: Path, work: Path, peak_at_8: float) -> dict:
    """Largest batch within 24 GB and 80 GB, from our fit's peak memory at batch 2 and at batch 8."""
    small = copy.deepcopy(config)
    small["data"]["init_args"]["batch_size"] = 2
    result, _ = tt.time_ours(small, work / "ours-batch2", data_root, warmup=1, steps=2)
    peak_at_2 = result["peak_mem_gib"]
    per_image = (peak_at_8 - peak_at_2) / 6
    fixed = peak_at_2 - 2 * per_image
    fits = {
        label: int((budget - fixed) // per_image) if per_image > 0 else None
        for label, budget in (("24GB", GIB_24), ("80GB", GIB_80))
    }
    return {
        "method": "linear fit of our fit's peak allocated memory at batch 2 and 8 (U-Net only, bf16-mixed)",
        "peak_gib": {"2": round(peak_at_2, 2), "8": round(peak_at_8, 2)},
        "gib_per_image": round(per_image, 3),
        "fixed_gib": round(fixed, 2),
        **fits,
    }


def sampling_speed(config: dict, work: Path, images: int, steps: dict[str, int]) -> dict:
    """Seconds per image for each sampler, batch of `images`, guidance 4, in the trainer's precision."""
    from cxr_ldm.generation.sampling import sample

    cli = tt.build_cli(config, work / "sampling")
    model = cli.model.to(cli.trainer.strategy.root_device).eval()
    dtype = tt.LOW_DTYPE.get(str(config["trainer"].get("precision")))
    device = model.device
    prompts = ["small left pleural effusion"] * images
    seeds = list(range(images))
    out = {"images": images}
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        sample(model, prompts[:1], seeds[:1], num_inference_steps=2, scheduler="pndm")  # warm-up
        for name, count in steps.items():
            tt.synchronize(device)
            start = time.perf_counter()
            sample(model, prompts, seeds, num_inference_steps=count, scheduler=name)
            tt.synchronize(device)
            out[f"{name}_{count}_s_per_image"] = round((time.perf_counter() - start) / images, 4)
    return out


def run(args: argparse.Namespace) -> dict:
    gpu = torch.cuda.is_available() and not args.tiny
    started = time.perf_counter()
    report: dict = {"mode": "sd-shapes" if gpu else "tiny", "environment": environment(), "seconds": {}}
    base = tt.load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        size = 512 if gpu else 64
        mark = time.perf_counter()
        data_root = tt.phantom_data(work, args.phantom_studies, size)
        vae_dir = tt.save_vae(work / "sd-vae") if gpu else None
        report["seconds"]["setup"] = round(time.perf_counter() - mark, 1)
        variants = {}
        for name, text in (("unet", False), ("unet+text_encoder", True)):
            if gpu:
                config = tt.sd_shapes(base, text, args.batch_size, vae_dir)
            else:
                config = copy.deepcopy(base)
                if text:
                    config["model"]["init_args"]["trainable"]["text_encoder"] = {"lr": 1.0e-5}
            variants[name] = config
        report["throughput"] = {}
        for name, config in variants.items():
            mark = time.perf_counter()
            result = tt.compare(
                config,
                data_root,
                work / name,
                args.warmup,
                args.steps,
                args.repeats,
                args.chunk,
                count_flops=gpu,
            )
            report["throughput"][name] = result
            report["seconds"][f"throughput {name}"] = round(time.perf_counter() - mark, 1)
            tt.print_result(name, result)
        if gpu:
            # Our fit alone (the throughput runs hold the plain loop's models as well).
            mark = time.perf_counter()
            eight = copy.deepcopy(variants["unet"])
            eight["data"]["init_args"]["batch_size"] = 8
            result, _ = tt.time_ours(eight, work / "ours-batch8", data_root, warmup=1, steps=2)
            peak_at_8 = result["peak_mem_gib"]
            report["peak_memory_batch8_gib"] = round(peak_at_8, 2)
            report["max_batch"] = max_batches(variants["unet"], data_root, work, peak_at_8)
            report["seconds"]["memory"] = round(time.perf_counter() - mark, 1)
        else:
            skipped = {"skipped": "no CUDA device (or --tiny): GPU memory is not measured"}
            report["peak_memory_batch8_gib"] = skipped
            report["max_batch"] = skipped
        mark = time.perf_counter()
        report["sampling"] = sampling_speed(
            tt.timed_config(variants["unet"], work / "sampling-run", data_root, 1),
            work,
            args.sample_images,
            {"pndm": 75, "dpm++": 20} if not args.quick else {"pndm": 6, "dpm++": 4},
        )
        report["seconds"]["sampling"] = round(time.perf_counter() - mark, 1)
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument(
        "--config", default=str(tt.ROOT / "configs" / "tiny.yaml"), help="callbacks, logger, data"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny shapes even on a GPU")
    parser.add_argument("--quick", action="store_true", help="fewest steps (tests)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=5)
    parser.add_argument("--phantom-studies", type=int, default=200)
    parser.add_argument("--sample-images", type=int, default=4)
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.steps, args.repeats, args.chunk, args.sample_images = 1, 2, 2, 1, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
