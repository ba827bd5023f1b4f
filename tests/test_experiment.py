"""`python -m cxr_ldm experiment` end to end at toy budgets: two arms x two seeds from the committed tiny
pretrained pipeline, the augmentation experiment, the claims and the report; a rerun after a crash computes
only what is missing."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from _tiny_run import ROOT

from cxr_ldm.commands.experiment import main, parse_experiment
from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.engine import run_experiment

UNET_TEXT = [str(ROOT / p) for p in ("configs/finetune/sd14-unet-text-pa.yaml", "configs/experiments/_phantom/finetune.yaml",
                                     "configs/experiments/_phantom/arms/unet-text.yaml")]  # fmt: skip
FINDINGS = ["Cardiomegaly", "Pleural Effusion", "Pneumothorax", "No Finding"]


def toy_args(tmp_path: Path) -> list[str]:
    """configs/experiments/demo.yaml at toy budgets, plus a second arm (U-Net only)."""
    arms = [
        {"name": "unet-text", "configs": UNET_TEXT},
        {"name": "unet", "configs": UNET_TEXT,
         "overrides": {"model.init_args.trainable": {"unet": {"lr": 1e-3}}}},
    ]  # fmt: skip
    return [
        "--config", str(ROOT / "configs/experiments/demo.yaml"),
        "--out", str(tmp_path / "out"), "--data.root", str(tmp_path / "phantom"), "--data.phantom.studies", "120",
        "--pretrained", str(ROOT / "artifacts/tiny-pretrained"), "--data.config",
        str(ROOT / "configs/experiments/_phantom/data.yaml"),
        "--arms", json.dumps(arms), "--seeds", "[0, 1]", "--steps", "2", "--evaluator.classifier.steps", "3",
        "--retriever.config", str(ROOT / "configs/retriever/tiny-phantom.yaml"), "--retriever.max_epochs", "1",
        "--protocol.probe_images", "2", "--protocol.test_prompts", "4", "--protocol.diversity_prompts", "2",
        "--protocol.diversity_samples", "2", "--protocol.sample_steps", "2", "--protocol.batch_size", "8",
        "--augmentation.sizes", "[50]", "--augmentation.seeds", "[0]", "--augmentation.classifier_steps", "2",
        "--augmentation.conditions", '["real", "real+synthetic_1x"]',  # what the demo's C4 compares
        "--convergence.every_n_steps", "1", "--convergence.images_per_finding", "2", "--convergence.min_delta", "0.2",
        "--convergence.sample_steps", "2", "--convergence.min_steps", "0",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def toy_experiment(tmp_path_factory) -> tuple[Path, dict]:
    """`experiment` run once at toy budgets (`toy_args`): its folder and its results.json. The end-to-end test
    reruns parts of it; the unit unet-text seed 0 stays as this run left it."""
    tmp_path = tmp_path_factory.mktemp("experiment")
    assert main(toy_args(tmp_path)) == 0
    return tmp_path, json.loads((tmp_path / "out" / "results.json").read_text())


def test_two_arms_two_seeds_end_to_end_then_a_crashed_unit_is_all_that_reruns(toy_experiment) -> None:
    tmp_path, results = toy_experiment
    args = toy_args(tmp_path)
    out = tmp_path / "out"
    assert sorted(results["arms"]) == ["unet", "unet-text"]
    for arm in ("unet", "unet-text"):
        assert sorted(results["arms"][arm]) == ["seed0", "seed1"]
        summary = results["summary"][arm]
        assert summary["probe/cond_balanced_accuracy"]["n"] == 2
        for metric in ("fid_xrv", "fidelity/fid_xrv", "ms_ssim", "retrieval/t2i_recall@5"):
            assert math.isfinite(summary[metric]["mean"]), metric
        assert {f"probe/cond_balanced_accuracy/{f}" for f in FINDINGS} <= set(summary)
    # The seeds differ: each run fine-tuned and sampled its own model.
    seed0, seed1 = (results["arms"]["unet-text"][k]["checkpoint"] for k in ("seed0", "seed1"))
    assert Path(seed0).read_bytes() != Path(seed1).read_bytes()
    # The U-Net-only arm left the text encoder as the pretrained pipeline has it.
    assert results["baseline"] is not None and "real_test" in results["references"]
    assert [c["id"] for c in results["claims"]] == ["learns", "C4", "C6"]
    assert all(c["verdict"] for c in results["claims"])
    # Every fit's learning curve: a probe at steps 1 and 2, kept in the unit's result; two probes are fewer
    # than the patience (3), so every arm is still rising at its cap of 2 steps and its claim is undecided.
    for arm in ("unet", "unet-text"):
        for seed in ("seed0", "seed1"):
            curve = results["arms"][arm][seed]["learning_curve"]
            assert [r["step"] for r in curve["records"]] == [1, 2] and curve["finished"], (arm, seed)
            assert results["convergence"][arm][seed[4:]]["status"] == "still rising at the cap"
    assert results["claims"][0]["verdict"] == "undecided"
    assert (out / "figures" / "learning_curves.png").stat().st_size > 0
    assert "## Convergence (learning curves)" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    for part in ("## Results (mean ± sd over seeds)", "**unet-text** | 2 |", "## Claims", "## Every run",
                 "| unet | 1 |", "Augmentation experiment", "figures/probes.png"):  # fmt: skip
        assert part in report, part
    for figure in ("probes.png", "fid.png", "probe-images.png", "samples.png"):
        assert (out / "figures" / figure).stat().st_size > 0
    # One TensorBoard folder: each fit's logs, and one HPARAMS session per (arm, seed).
    sessions = sorted(p.name for p in (out / "tensorboard" / "hparams").iterdir())
    assert sessions == ["unet-seed0", "unet-seed1", "unet-text-seed0", "unet-text-seed1"]
    assert any((out / "tensorboard" / "unet" / "seed1").glob("events.out.tfevents.*"))

    # A crash while unet seed 1 was being evaluated: its result is missing, its fit finished.
    unit = out / "arms" / "unet" / "seed1"
    (unit / "result.json").unlink()
    checkpoint = unit / "fit" / "checkpoints" / "last.ckpt"
    stamp = checkpoint.stat().st_mtime_ns
    kept = (out / "arms" / "unet-text" / "seed0" / "result.json").stat().st_mtime_ns
    outcome = run_experiment(*parse_experiment(args))
    assert outcome.computed == ["unet seed 1"]
    assert sorted(outcome.reused) == ["baseline", "unet seed 0", "unet-text seed 0", "unet-text seed 1"]
    assert checkpoint.stat().st_mtime_ns == stamp  # the fit was not run again
    assert (out / "arms" / "unet-text" / "seed0" / "result.json").stat().st_mtime_ns == kept
    again = json.loads((unit / "result.json").read_text())
    assert (
        again["metrics"] == results["arms"]["unet"]["seed1"]["metrics"]
    )  # same seeds, same images, same numbers
    # The fit's time is the one its first process trained for (kept in its `done`), not the rerun's 0 s.
    first = results["arms"]["unet"]["seed1"]["seconds"]["fit"]
    assert again["seconds"]["fit"] == first > 0
    assert json.loads((unit / "fit" / "done").read_text())["training_seconds"] > 0

    # Another training budget for one arm (seed 0 alone, to keep it short): that arm's unit is cleared and
    # made again, the other arm's is kept.
    arms = json.loads(args[args.index("--arms") + 1])
    arms[1]["overrides"]["model.init_args.ema.decay"] = None
    changed = [*args[: args.index("--arms") + 1], json.dumps(arms), *args[args.index("--arms") + 2 :]]
    outcome = run_experiment(*parse_experiment([*changed, "--augmentation", "null", "--seeds", "[0]"]))
    assert outcome.computed == ["unet seed 0"]
    assert sorted(outcome.reused) == ["baseline", "unet-text seed 0"]


def test_experiment_config_errors_name_the_key(tmp_path: Path) -> None:
    args = toy_args(tmp_path)
    with pytest.raises(ConfigError, match="augmentation.arm 'nope' is not an arm"):
        run_experiment(*parse_experiment([*args, "--augmentation.arm", "nope"]))
    with pytest.raises(ConfigError, match="claims C4: 'augment/50/real"):
        run_experiment(*parse_experiment([*args, "--augmentation.sizes", "[60]"]))
    with pytest.raises(ConfigError, match="names must be distinct"):
        run_experiment(
            *parse_experiment([*args, "--arms", json.dumps([{"name": "a", "configs": ["x"]}] * 2)])
        )
    not_a_phantom = tmp_path / "mine"
    not_a_phantom.mkdir()
    (not_a_phantom / "keep.txt").write_text("user data")
    with pytest.raises(ConfigError, match="holds no phantom-manifest.json"):
        run_experiment(*parse_experiment([*args, "--data.root", str(not_a_phantom)]))
    assert (not_a_phantom / "keep.txt").read_text() == "user data"
    # the committed pipeline was pretrained at 64 px (its pretrain.json): an experiment at 32 px is refused
    with pytest.raises(ConfigError, match="pretrained at 64 px .* data.image_size is 32"):
        run_experiment(*parse_experiment([*args, "--data.image_size", "32"]))
    # a misspelled metric ran the whole experiment and then called the claim "not measured"
    for metric, part in (
        ("probe/cond_balanced_accuracy/Cardiomegally", "Cardiomegally"),
        ("prob/fid_xrv", "prob"),
    ):
        claim = {"id": "x", "text": "t", "comparisons": [{"a": "unet", "b": "baseline", "metric": metric}]}
        with pytest.raises(ConfigError, match=f"claims x: metric '{metric}': \\['{part}'\\] is no section"):
            parse_experiment([*args, "--claims", json.dumps([claim])])[0].validate()
    claim["comparisons"][0]["metric"] = "retrieval/t2i_recall@5"  # every part known: a section, a metric
    parse_experiment([*args, "--claims", json.dumps([claim])])[0].validate()


EXPERIMENTS = ROOT / "configs" / "experiments"


@pytest.mark.parametrize(
    "name",
    sorted(str(p.relative_to(EXPERIMENTS)) for p in EXPERIMENTS.rglob("*.yaml") if "_phantom" not in p.parts),
)
def test_every_experiment_config_parses_and_validates(name: str) -> None:
    """The experiments and the studies (configs/experiments/studies/) alike."""
    config, followups = parse_experiment(["--config", str(EXPERIMENTS / name)])
    config.validate(followups)
    for arm in config.arms:
        for path in [*arm.configs, *(c for prep in arm.prepare for c in prep.configs)]:
            assert (ROOT / path).is_file(), f"{name}: arm {arm.name} names a missing config {path}"


def test_a_phantom_of_other_settings_is_made_anew_and_foreign_folders_are_refused(tmp_path: Path) -> None:
    from cxr_ldm.experiments.phantom_data import ensure_phantom

    data = tmp_path / "phantom"
    ensure_phantom(data, 60, 32)
    manifest = data / "phantom-manifest.json"
    stamp = manifest.stat().st_mtime_ns
    ensure_phantom(data, 60, 32)  # same settings: kept
    assert manifest.stat().st_mtime_ns == stamp
    ensure_phantom(data, 40, 32)  # an earlier run's size: made anew, never read stale
    assert json.loads(manifest.read_text())["params"]["studies"] == 40
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "phantom-manifest.json").write_text(json.dumps({"generator": "someone else"}))
    # a phantom is made in `.<name>.partial` and renamed into place: a run killed while making it leaves that
    # folder alone (tests/test_phantom.py kills one), which the next run deletes before making the phantom
    partial = tmp_path / ".remade.partial"
    (partial / "files").mkdir(parents=True)
    (partial / "files" / "cut-short.jpg").write_bytes(b"\xff\xd8")
    ensure_phantom(tmp_path / "remade", 40, 32)
    assert (tmp_path / "remade" / "phantom-manifest.json").is_file() and not partial.exists()
    with pytest.raises(ConfigError, match="not a phantom made by cxr_ldm"):
        ensure_phantom(foreign, 40, 32)


def test_an_arm_trained_elsewhere_is_judged_from_its_checkpoint(toy_experiment) -> None:
    tmp_path, results = toy_experiment
    args = toy_args(tmp_path)
    trained = results["arms"]["unet-text"]["seed0"]
    elsewhere = tmp_path / "elsewhere.ckpt"  # a checkpoint trained elsewhere: a copy of seed 0's
    shutil.copy(trained["checkpoint"], elsewhere)
    arms = [{"name": "unet-text", "configs": UNET_TEXT, "checkpoints": {0: str(elsewhere)}}]
    judge = [*args, "--seeds", "[0]", "--augmentation", "null", "--arms", json.dumps(arms),
             "--out", str(tmp_path / "judged")]  # fmt: skip
    judged = run_experiment(*parse_experiment(judge))
    run = judged.results["arms"]["unet-text"]["seed0"]
    assert not (tmp_path / "judged" / "arms" / "unet-text" / "seed0" / "fit").exists()  # nothing was fitted
    assert run["metrics"] == trained["metrics"]  # the same model, seeds and references give the same numbers
    assert run_experiment(*parse_experiment(judge)).computed == []  # the same file: its digest is stable
    # a second seed given to the arm, with its own checkpoint: seed 0's unit is kept as it was
    second = tmp_path / "second.ckpt"
    shutil.copy(results["arms"]["unet-text"]["seed1"]["checkpoint"], second)
    grown = [{**arms[0], "seeds": [0, 1], "checkpoints": {0: str(elsewhere), 1: str(second)}}]
    outcome = run_experiment(*parse_experiment([*judge, "--arms", json.dumps(grown)]))
    assert outcome.computed == ["unet-text seed 1"] and "unet-text seed 0" in outcome.reused
    # another model under the same path is judged again, not taken for the one judged before
    shutil.copy(results["arms"]["unet-text"]["seed1"]["checkpoint"], elsewhere)
    assert run_experiment(*parse_experiment(judge)).computed == ["unet-text seed 0"]
    missing = [{**arms[0], "checkpoints": {0: str(tmp_path / "none.ckpt")}}]
    with pytest.raises(ConfigError, match="checkpoints\\[0\\]"):
        run_experiment(
            *parse_experiment(
                [*args, "--seeds", "[0]", "--augmentation", "null", "--arms", json.dumps(missing)]
            )
        )


def test_a_seed_added_to_an_arm_leaves_the_keys_of_its_other_seeds_alone(tmp_path: Path) -> None:
    """An (arm, seed) unit reads its arm for its own seed alone: an arm's own `seeds:` grown by a seed, or
    given a checkpoint for another seed, keys seed 0's fit folder and its launcher record as before (keyed by
    the whole arm, the fit folder was cleared and fitted anew). A folder recorded with the whole arm, as earlier
    versions wrote it, is reused and its record brought up to date; one of another arm is still cleared."""
    from dataclasses import asdict

    from cxr_ldm.experiments.plan import arm_unit_name
    from cxr_ldm.experiments.unit_inputs import UnitInputs, arm_record_today
    from cxr_ldm.experiments.unit_records import unit_key
    from cxr_ldm.experiments.units import KEY_FILE, claim_folder

    other = tmp_path / "other.ckpt"
    other.write_bytes(b"weights of seed 1")
    one = [{"name": "a", "configs": UNET_TEXT, "seeds": [0]}]
    two = [{"name": "a", "configs": UNET_TEXT, "seeds": [0, 1], "checkpoints": {1: str(other)}}]
    before, after = (
        parse_experiment([*toy_args(tmp_path), "--arms", json.dumps(arms)])[0] for arms in (one, two)
    )
    name = arm_unit_name("a", 0)
    fits = [UnitInputs(c).arm_fit(c.arms[0], 0) for c in (before, after)]
    assert fits[0] == fits[1]
    assert UnitInputs(after).arm_fit(after.arms[0], 1) != fits[1]  # seed 1 is keyed by its own checkpoint
    keys = [unit_key(c, (), name, UnitInputs(c).unit_files(name)) for c in (before, after)]
    assert keys[0] == keys[1]

    folder = tmp_path / "arms" / "a" / "seed0"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text("{}")
    earlier = {**fits[1], "arm": asdict(after.arms[0])}  # the record of an earlier version: the whole arm
    (folder / KEY_FILE).write_text(json.dumps(earlier))
    assert claim_folder(folder, fits[1], upgrade=arm_record_today)
    assert (folder / "result.json").is_file()
    assert json.loads((folder / KEY_FILE).read_text()) == json.loads(json.dumps(fits[1]))
    (folder / KEY_FILE).write_text(json.dumps({**earlier, "arm": {**earlier["arm"], "overrides": {"x": 1}}}))
    assert not claim_folder(folder, fits[1], upgrade=arm_record_today)
    assert not (folder / "result.json").exists()


def test_an_edited_config_file_changes_the_inputs_its_units_are_keyed_by(tmp_path: Path) -> None:
    from cxr_ldm.experiments.spec import ArmSpec
    from cxr_ldm.experiments.unit_inputs import config_contents

    base = tmp_path / "base.yaml"
    base.write_text("model.init_args.objective.snr_gamma: 1.0\n")
    arm_file = tmp_path / "arm.yaml"
    arm_file.write_text("config: base.yaml\ntrainer.max_steps: 5\n")
    arm = ArmSpec(name="a", configs=[str(arm_file)])
    before = config_contents(arm)
    assert config_contents(arm) == before
    base.write_text("model.init_args.objective.snr_gamma: 5.0\n")  # the base, read through `config:`, changed
    assert config_contents(arm) != before


def test_an_arm_s_placeholders_reach_the_data_module_that_writes_its_probes(tmp_path) -> None:
    """`{pretrained}` in an arm's `data.init_args.*` overrides is filled in for the data module that writes
    the arm's probes, as for its fit (the probe set-up refused the literal '{pretrained}' as a VAE folder)."""
    from cxr_ldm.experiments.engine import arm_datamodule

    arm = {
        "name": "unet-text",
        "configs": UNET_TEXT,
        "overrides": {"data.init_args.latent_cache_vae": "{pretrained}"},
    }
    config, _ = parse_experiment([*toy_args(tmp_path), "--arms", json.dumps([arm])])
    config = config.resolved()
    datamodule = arm_datamodule(config, config.arms[0], tmp_path / "unit")
    assert datamodule.latent_cache_vae == config.pretrained


def test_arm_overrides_reach_every_arm_under_its_own_and_leave_other_units_keys_alone(tmp_path) -> None:
    """`arm_overrides` (a world setting for every arm): each arm's fit and data module get them, an arm's own
    override of the same key wins, and an experiment without them keys its units as before."""
    from cxr_ldm.experiments.engine import arm_datamodule
    from cxr_ldm.experiments.unit_inputs import UnitInputs

    arms = [{"name": "a", "configs": UNET_TEXT}, {"name": "b", "configs": UNET_TEXT,
             "overrides": {"data.init_args.image_size": 48}}]  # fmt: skip
    world = {"data.init_args.image_size": 32, "data.init_args.latent_cache_vae": "{pretrained}"}
    plain, _ = parse_experiment([*toy_args(tmp_path), "--arms", json.dumps(arms)])
    config, _ = parse_experiment(
        [*toy_args(tmp_path), "--arms", json.dumps(arms), "--arm_overrides", json.dumps(world)]
    )
    config = config.resolved()
    assert config.arms[0].overrides == world
    assert config.arms[1].overrides == {**world, "data.init_args.image_size": 48}
    a, b = (arm_datamodule(config, arm, tmp_path / arm.name) for arm in config.arms)
    assert (a.image_size, b.image_size, a.latent_cache_vae) == (32, 48, config.pretrained)
    # the world's values are part of the units' inputs (through each arm's overrides), and only there
    assert (
        plain.arms[0].overrides == {}
        and UnitInputs(plain).arm_fit(plain.arms[0], 0)["arm"]["overrides"] == {}
    )
    assert UnitInputs(config).arm_fit(config.arms[0], 0)["arm"]["overrides"] == world


def test_references_made_under_another_thread_count_are_made_anew(tmp_path) -> None:
    """The evaluator trained with 2 threads is another evaluator than with 1 (CPU summation order: on one
    machine the demo phantom's real test images scored 0.928 with 1 thread, 0.914 with 2), so the references'
    folder, and every evaluation judged with it, is keyed by the thread count: a rerun under another count
    rebuilds them instead of reusing what the other count made."""
    from dataclasses import replace

    from cxr_ldm.experiments.unit_inputs import UnitInputs

    config, _ = parse_experiment(toy_args(tmp_path))
    one, two = UnitInputs(replace(config, threads=1)), UnitInputs(replace(config, threads=2))
    assert one.references["threads"] == 1
    assert one.references != two.references
    assert one.retriever != two.retriever
    assert {k: v for k, v in one.references.items() if k != "threads"} == {
        k: v for k, v in two.references.items() if k != "threads"
    }


def test_a_fit_stopped_by_its_learning_curve_is_keyed_by_the_evaluator_that_judged_it(tmp_path) -> None:
    """The learning-curve probe is judged by the references' evaluator (and `ceiling_margin` stops at its
    level on the real images), so a converged fit is keyed by the references: a fit probed by another
    evaluator is fitted anew, not reused. A fit without a learning curve does not depend on the evaluator."""
    from dataclasses import replace

    from cxr_ldm.experiments.unit_inputs import UnitInputs

    config, _ = parse_experiment(toy_args(tmp_path))
    other = replace(
        config, evaluator=replace(config.evaluator, classifier=replace(config.evaluator.classifier, steps=4))
    )
    arm = config.arms[0]
    assert UnitInputs(config).references != UnitInputs(other).references
    assert UnitInputs(config).arm_fit(arm, 0) != UnitInputs(other).arm_fit(arm, 0)
    assert UnitInputs(config).arm_fit(arm, 0)["references"] == UnitInputs(config).references
    flat, flat_other = replace(config, convergence=None), replace(other, convergence=None)
    assert UnitInputs(flat).arm_fit(arm, 0) == UnitInputs(flat_other).arm_fit(arm, 0)
