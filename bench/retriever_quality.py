"""Retrievers trained on the phantom's training split, judged on its test split: t2i recall, i2i precision.

    python bench/retriever_quality.py --data data/demo-phantom --out runs/retriever-study \
        --configs configs/retriever/tiny-phantom.yaml configs/retriever/minilm-phantom.yaml --seeds 0 1

Each (config, seed) trains with `python -m cxr_ldm fit --config CONFIG --seed_everything SEED` and writes
`OUT/<config>-seed<S>/quality.json` (a rerun skips finished ones); `OUT/summary.md` has mean ± sd over seeds.
The phantom is made with `python -m cxr_ldm phantom` when `--data` does not exist.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cxr_ldm.__main__ import main as cli  # noqa: E402
from cxr_ldm.checkpoints import load_checkpoint  # noqa: E402
from cxr_ldm.data.atomic import write_text_atomic  # noqa: E402
from cxr_ldm.data.real_split import read_split  # noqa: E402
from cxr_ldm.evaluation.evaluators import ImageTextRetriever  # noqa: E402
from cxr_ldm.evaluation.metrics.retriever_quality import retriever_quality  # noqa: E402
from cxr_ldm.training.datamodule import load_datamodule  # noqa: E402

KEYS = ["t2i_recall@1", "t2i_recall@5", "t2i_recall@10", "t2i_recall_chance@1", "i2i_precision@5",
        "i2i_precision_chance"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/demo-phantom")
    parser.add_argument("--studies", type=int, default=1600, help="phantom studies, when --data is made here")
    parser.add_argument("--size", type=int, default=64, help="phantom image side, when --data is made here")
    parser.add_argument("--out", default="runs/retriever-study")
    parser.add_argument("--configs", nargs="+", default=[
        "configs/retriever/tiny-phantom.yaml", "configs/retriever/minilm-phantom.yaml"])  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-epochs", type=int, default=None, help="override trainer.max_epochs")
    args = parser.parse_args(argv)
    out, data = Path(args.out), Path(args.data)
    if not data.exists():
        assert (
            cli(["phantom", "--out", str(data), "--studies", str(args.studies), "--size", str(args.size)])
            == 0
        )
    results: dict[str, list[dict]] = {}
    for config in args.configs:
        for seed in args.seeds:
            run = out / f"{Path(config).stem}-seed{seed}"
            path = run / "quality.json"
            if not path.is_file():
                common = [
                    "--data.init_args.root",
                    str(data),
                    "--data.init_args.cache_dir",
                    str(out / "cache"),
                ]
                fit = ["fit", "--config", config, "--seed_everything", str(seed), *common,
                       "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir", str(run),
                       "--trainer.enable_progress_bar", "false"]  # fmt: skip
                if args.max_epochs:
                    fit += ["--trainer.max_epochs", str(args.max_epochs)]
                if not (run / "checkpoints" / "last.ckpt").is_file():
                    assert cli(fit) == 0
                retriever = load_checkpoint(
                    run / "checkpoints" / "last.ckpt", ImageTextRetriever, "--retriever"
                )
                module = load_datamodule(config, root=str(data), cache_dir=str(out / "cache"), num_workers=0)
                found = retriever_quality(retriever, read_split(module, "test"), read_split(module, "train"))
                write_text_atomic(
                    path, json.dumps({"config": config, "seed": seed, **found}, indent=2) + "\n"
                )
            results.setdefault(config, []).append(json.loads(path.read_text()))
    lines = ["| retriever | seeds | " + " | ".join(KEYS) + " |", "|" + "---|" * (len(KEYS) + 2)]
    for config, runs in results.items():
        cells = []
        for key in KEYS:
            values = [r[key] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.3f} ± {sd:.3f}")
        lines.append(f"| {config} | {len(runs)} | " + " | ".join(cells) + " |")
    write_text_atomic(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
