"""One training step of a pipeline's U-Net on the CPU (forward, backward, AdamW), eager against the options
that could make it cheaper: channels-last convolutions, `torch.compile`, the math attention kernel instead
of the CPU flash kernel; and other shapes of the tiny U-Net (random weights, speed only). Each option runs
in a fresh process (one thread unless --threads says more), the options alternate round by round, and the
ratio is against the first option of the same run:

    python bench/unet_cpu_options.py --pipeline artifacts/tiny-pretrained --rounds 2
    python bench/unet_cpu_options.py --options eager compile --rounds 1   # compiling takes minutes on 2 cores
    python bench/unet_cpu_options.py --options eager --threads 1 2        # torch threads, on a quiet machine
    python bench/unet_cpu_options.py --options eager attention_8x8 one_head attention_8x8_one_head

The batch is the phantom recipe's (16 latents of the pipeline's sample size, a 16-token context); the
inputs are seeded, so every option computes the same step up to float rounding.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

OPTIONS = (
    "eager",
    "channels_last",
    "math_attention",
    "compile",
    "attention_8x8",
    "one_head",
    "attention_8x8_one_head",
)
# Another tiny U-Net, not an option of this one: built from the pipeline's U-Net config with one change and
# random weights (speed only): cross-attention at the 8x8 level alone, one attention head, or both
SHAPES = {
    "attention_8x8": {"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                      "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"]},
    "one_head": {"attention_head_dim": 1},
    "attention_8x8_one_head": {"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                               "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "attention_head_dim": 1},
}  # fmt: skip


def time_option(pipeline: str, option: str, steps: int, batch: int, tokens: int, threads: int = 1) -> dict:
    import torch
    from diffusers import UNet2DConditionModel
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.set_num_threads(threads)
    if option in SHAPES:
        config = {**UNet2DConditionModel.load_config(f"{pipeline}/unet"), **SHAPES[option]}
        unet = UNet2DConditionModel.from_config(config).train()
    else:
        unet = UNet2DConditionModel.from_pretrained(f"{pipeline}/unet").train()
    size, channels = unet.config.sample_size, unet.config.in_channels
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, channels, size, size, generator=generator)
    context = torch.randn(batch, tokens, unet.config.cross_attention_dim, generator=generator)
    timesteps = torch.randint(0, 1000, (batch,), generator=generator)
    if option == "channels_last":
        unet.to(memory_format=torch.channels_last)
        latents = latents.to(memory_format=torch.channels_last)
    if option == "compile":
        unet.compile()
    math = option == "math_attention"  # a fresh context each step: one cannot be entered twice
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, foreach=True)

    def step() -> None:
        with sdpa_kernel(SDPBackend.MATH) if math else nullcontext():
            loss = unet(latents, timesteps, encoder_hidden_states=context).sample.pow(2).mean()
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    step()
    step()
    warmup = time.perf_counter() - started
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return {
        "option": option,
        "threads": threads,
        "warmup_s": round(warmup, 1),
        "ms_wall": round(1000 * (time.perf_counter() - wall) / steps, 1),
        "ms_cpu": round(1000 * (time.process_time() - cpu) / steps, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipeline", default="artifacts/tiny-pretrained")
    parser.add_argument("--options", nargs="+", choices=OPTIONS, default=list(OPTIONS[:3]))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads; several: each")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one option, one JSON line
    args = parser.parse_args()
    if args.one:
        result = time_option(
            args.pipeline, args.one, args.steps, args.batch_size, args.tokens, args.threads[0]
        )
        print(json.dumps(result))
        return
    # CPU time for one thread, wall time for several (their CPU time adds up over the threads)
    measure = "ms_cpu" if args.threads == [1] else "ms_wall"
    variants = [(option, threads) for option in args.options for threads in args.threads]
    runs: dict[tuple[str, int], list[float]] = {variant: [] for variant in variants}
    for round_ in range(args.rounds):
        for option, threads in variants:
            command = [sys.executable, __file__, "--one", option, "--pipeline", args.pipeline,
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                       "--tokens", str(args.tokens), "--threads", str(threads)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs[option, threads].append(result[measure])
            print(f"round {round_}: {json.dumps(result)}", flush=True)
    first = statistics.median(runs[variants[0]])
    unit = "CPU" if measure == "ms_cpu" else "wall"
    for (option, threads), values in runs.items():
        median = statistics.median(values)
        print(f"{option:>15} x{threads}: median {median:.0f} ms {unit} a step over {len(values)} runs, "
              f"{first / median:.2f}x the speed of {variants[0][0]} x{variants[0][1]}")  # fmt: skip


if __name__ == "__main__":
    main()
