"""Shared fixtures: phantom MIMIC-CXR trees built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

# Tests never download: a hub id must fail at once, as under CI (.ci/run), not after network retries. Set
# before anything imports huggingface_hub (lightning does), which reads it once, at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

# Tiny models gain nothing from intra-op threads, and on a loaded 2-core machine they oversubscribe the
# CPU badly (one tiny training step took 10 s with 2 threads and 0.1 s with 1). Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    """In every process that runs tests: one torch thread, and Lightning imported at collection.

    Lightning gives its logger a StreamHandler on sys.stderr when first imported. Imported here, at
    collection, that is the real stderr; imported first inside a test that captures output, it would keep
    writing to that test's closed capture stream ("Logging error" tracebacks in later tests' stderr).
    The pytest-xdist controller of `make test` runs no test: it skips both imports (about 9 s of CPU that
    would compete with the two workers' own start on a 2-core machine)."""
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None):
        return  # the xdist controller
    import lightning.pytorch  # noqa: F401
    import torch

    torch.set_num_threads(1)


PHANTOM_STUDIES = 120
PHANTOM_SIZE = 64
PHANTOM_SEED = 0


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean phantom tree (120 studies, 64 px wide, seed 0); read-only for tests."""
    from cxr_ldm.phantom import generate_phantom

    root = tmp_path_factory.mktemp("phantom")
    generate_phantom(root, PHANTOM_STUDIES, PHANTOM_SIZE, PHANTOM_SEED, progress=False, workers=1)
    return root


@pytest.fixture(scope="session")
def corrupt_phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same size as `phantom_root` but with 10% of studies damaged; faults are in phantom-manifest.json."""
    from cxr_ldm.phantom import generate_phantom

    root = tmp_path_factory.mktemp("phantom_corrupt")
    generate_phantom(
        root, PHANTOM_STUDIES, PHANTOM_SIZE, PHANTOM_SEED, corrupt=0.1, progress=False, workers=1
    )
    return root


@pytest.fixture(scope="session")
def tiny_fit(tmp_path_factory: pytest.TempPathFactory, phantom_root: Path, worker_id: str) -> Path:
    """One `fit` of configs/tiny.yaml on `phantom_root` (4 steps: checkpoints at steps 2 and 4, `last.ckpt`,
    TensorBoard logs with a sample grid), shared by the tests that need a trained tiny model; read-only for
    tests. Returns the run folder (its checkpoints are under `checkpoints/`).

    Under `make test` (pytest-xdist) the workers share one: the first to need it fits it in the session's
    common temporary folder, under a file lock, and the others wait for it and read it (about 20 s of CPU
    saved per further worker). The phantom it was fitted on is that worker's, identical to every other's."""
    from _tiny_run import run_fit

    if worker_id == "master":  # one process: no one to share with
        run = tmp_path_factory.mktemp("tiny-fit")
        run_fit(run, phantom_root)
        return run
    from filelock import FileLock

    run = tmp_path_factory.getbasetemp().parent / "tiny-fit"  # this session's folder, common to its workers
    with FileLock(f"{run}.lock"):
        if not (run / "fitted").is_file():
            run_fit(run, phantom_root)
            (run / "fitted").touch()
    return run


# `make test` runs the modules on two workers (pytest-xdist, `--dist loadfile`: a module's tests stay on one
# worker with its fixtures), handing out modules in collection order. The longest modules go first, longest
# to shortest by their measured time (`pytest --durations=0`, summed per module), so that the short ones fill
# in around them and both workers finish together instead of one waiting on the last long module (measured:
# 5 min 32 s in alphabetical order on 2 cores). Every other module keeps its place.
LONG_MODULES_FIRST = (
    "test_experiment.py",  # 101 s
    "test_variants_configs.py",  # 80 s
    "test_slurm.py",  # 60 s (CI: SLURM jobs; skipped without a cluster)
    "test_fit_tiny.py",  # 44 s
    "test_ddp.py",  # 40 s
    "test_eval_end_to_end.py",  # 38 s
    "test_speed_options.py",  # 37 s
    "test_faults.py",  # 27 s
    "test_export.py",  # 24 s
    "test_tiny_pretrained.py",  # 23 s
    "test_status.py",  # 20 s
    "test_paper_arms.py",  # 18 s
    "test_augment.py",  # 17 s
    "test_model_correctness.py",  # 13 s
    "test_frozen_checkpoints.py",  # 12 s
    "test_learning_curve.py",  # 12 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_MODULES_FIRST.index(name) if name in LONG_MODULES_FIRST else len(LONG_MODULES_FIRST)

    items.sort(key=rank)  # stable: tests keep their order within a module and among the other modules
