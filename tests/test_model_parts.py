"""LatentDiffusion's typed parts: configs set them as mappings or dotted keys, old flat keys are refused with
their new place, and checkpoints written with flat hyperparameters still load into the right parts."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _tiny_run import ROOT, TINY, fit_args, tiny_batches, tiny_init_args, tiny_trainer

from cxr_ldm.__main__ import main
from cxr_ldm.cli import command_line, refuse_flat_model_keys
from cxr_ldm.errors import ConfigError
from cxr_ldm.models import LatentDiffusion
from cxr_ldm.models.diffusion_parts import FLAT_ARGUMENTS, PARTS, Ema, Objective, new_key
from cxr_ldm.training.fit import build_run
from cxr_ldm.training.lightning_cli import run_lightning_cli


def _exit_code(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as stop:
        return stop.code


def test_every_flat_argument_has_one_place():
    fields = [(part, name) for part, cls in PARTS.items() for name in cls.__dataclass_fields__]
    assert sorted(FLAT_ARGUMENTS.values()) == sorted(fields)  # each field reachable, none twice
    assert new_key("ema_decay") == "model.init_args.ema.decay"
    assert new_key("snr_gamma") == "model.init_args.objective.snr_gamma"


def test_a_dotted_field_keeps_the_parts_other_fields(tmp_path):
    """A later config sets one field of a part; the earlier config's other fields of that part stay."""
    later = tmp_path / "later.yaml"
    later.write_text("model.init_args.objective.noise_offset: 0.25\nmodel.init_args.ema.decay: 0.5\n")
    base = tmp_path / "base.yaml"
    base.write_text(f"config: {TINY}\nmodel.init_args.objective.snr_gamma: 3.0\n")
    cli = run_lightning_cli(
        ["--config", str(base), "--config", str(later), "--data.init_args.root", str(tmp_path)], run=False
    )
    model = cli.model
    assert model.objective == Objective(snr_gamma=3.0, noise_offset=0.25, condition_dropout=0.1)
    assert model.ema_spec == Ema(decay=0.5) and model.ema is not None
    assert model.components_spec.tokenizer_name_or_path == "clip"  # tiny.yaml's components kept


@pytest.mark.parametrize("where", ["command line", "config file"])
def test_old_flat_keys_are_refused_with_their_new_place(tmp_path, phantom_root, capsys, where):
    if where == "command line":
        args = fit_args(tmp_path, phantom_root, "--model.init_args.snr_gamma", "5.0")
    else:
        old = tmp_path / "old.yaml"
        old.write_text("model:\n  init_args:\n    ema_decay: 0.9\n    condition_dropout: 0.2\n")
        args = fit_args(tmp_path, phantom_root, "--config", str(old))
    assert _exit_code(args) == 2
    err = capsys.readouterr().err
    if where == "command line":
        assert "model.init_args.snr_gamma -> model.init_args.objective.snr_gamma" in err, err
    else:
        assert f"{old}: model.init_args.ema_decay -> model.init_args.ema.decay" in err, err
        assert "model.init_args.condition_dropout -> model.init_args.objective.condition_dropout" in err
    assert not (tmp_path / "checkpoints").exists()


def test_flat_keys_of_other_models_are_not_refused(tmp_path):
    """The Autoencoder's own `pretrained_model_name_or_path` / `lr_scheduler` are its flat arguments."""
    vae = ROOT / "configs" / "finetune" / "vae-decoder.yaml"
    refuse_flat_model_keys(["fit", "--config", str(vae), "--model.init_args.lr_scheduler", "cosine"])
    # the same keys after a LatentDiffusion config are refused
    with pytest.raises(ConfigError, match="lr_scheduler -> model.init_args.optimization.lr_scheduler"):
        refuse_flat_model_keys(["fit", "--config", str(TINY), "--model.init_args.lr_scheduler", "cosine"])
    with pytest.raises(ConfigError, match="noise_offset -> model.init_args.objective.noise_offset"):
        refuse_flat_model_keys(
            ["fit", "--model", "cxr_ldm.models.LatentDiffusion", "--model.init_args.noise_offset=0.1"]
        )


def test_a_checkpoint_with_flat_hyperparameters_loads_into_its_parts(tmp_path):
    model = LatentDiffusion(**tiny_init_args(snr_gamma=2.0, noise_offset=0.1, lr_warmup_steps=3))
    tiny_trainer(tmp_path).fit(model, train_dataloaders=tiny_batches())
    path = tmp_path / "new.ckpt"
    model.trainer.save_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # The same checkpoint as written before the parts existed: every part's fields flat.
    hparams = checkpoint["hyper_parameters"]
    # as `fit` wrote it: LightningCLI's class path and instantiator beside the arguments
    flat = {
        "_class_path": "cxr_ldm.models.LatentDiffusion",
        "_instantiator": "lightning.pytorch.cli.instantiate_module",
    }
    flat.update(trainable=hparams["trainable"], lora=hparams["lora"])
    for part in PARTS:
        for name, value in hparams[part].items():
            flat["ema_decay" if (part, name) == ("ema", "decay") else name] = value
    checkpoint["hyper_parameters"] = flat
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)

    with pytest.warns(FutureWarning, match=r"snr_gamma -> model.init_args.objective.snr_gamma"):
        reloaded = LatentDiffusion.load_from_checkpoint(old, map_location="cpu", weights_only=True)
    for part in PARTS:
        attribute = {"components": "components_spec", "ema": "ema_spec"}.get(part, part)
        assert dataclasses.asdict(getattr(reloaded, attribute)) == hparams[part], part
    assert reloaded.objective.snr_gamma == 2.0 and reloaded.optimization.lr_warmup_steps == 3
    assert reloaded.ema_spec.decay == 0.999 and reloaded.ema is not None  # tiny.yaml's EMA
    state = model.state_dict()
    assert all(torch.equal(value, reloaded.state_dict()[key]) for key, value in state.items())
    assert reloaded.trainable == model.trainable
    # saved again in the new form
    assert {part: reloaded.hparams[part] for part in PARTS} == {part: hparams[part] for part in PARTS}


def test_misspelt_keyword_and_bad_part_are_errors():
    with pytest.raises(TypeError, match="snr_gama"):
        LatentDiffusion(**tiny_init_args(), snr_gama=1.0)
    with pytest.raises(ConfigError, match=r"model.init_args.objective has unknown field\(s\) \['snr_gama'\]"):
        LatentDiffusion(**{**tiny_init_args(), "objective": {"snr_gama": 1.0}})
    with pytest.raises(ConfigError, match="model.init_args.ema.decay must be in"):
        Ema(decay=1.0)
    assert LatentDiffusion(**tiny_init_args(ema_decay=0.0)).ema is None  # 0 keeps no EMA, as null does


def test_a_null_for_one_field_on_the_command_line(tmp_path):
    """`--model.init_args.components.revision null` is None, not the string "None", and keeps the other
    fields of the part (jsonargparse alone reads such a null wrongly)."""
    cli = run_lightning_cli(
        command_line(["--config", str(TINY), "--data.init_args.root", str(tmp_path),
                      "--model.init_args.components.revision", "null", "--model.init_args.objective.snr_gamma=null",
                      "--model.init_args.ema.decay", "null"]),
        run=False,
    )  # fmt: skip
    model = cli.model
    assert model.components_spec.revision is None and model.components_spec.tokenizer_name_or_path == "clip"
    assert model.objective.snr_gamma is None and model.objective.condition_dropout == 0.1
    assert model.ema is None
    # from Python, a None is a None: no command line in between
    nulls = {"model.init_args.components.revision": None, "model.init_args.objective.snr_gamma": None,
             "model.init_args.ema.decay": None, "data.init_args.root": str(tmp_path)}  # fmt: skip
    model = build_run([TINY], nulls).model
    assert model.components_spec.revision is None and model.components_spec.tokenizer_name_or_path == "clip"
    assert model.objective.snr_gamma is None and model.objective.condition_dropout == 0.1
    assert model.ema is None


def test_load_errors_name_the_models_own_keys(tmp_path):
    """A missing tokenizer folder names the LatentDiffusion part's key; a missing VAE of the Autoencoder names
    the Autoencoder's own (flat) key."""
    from cxr_ldm.models.autoencoder import Autoencoder

    with pytest.raises(ConfigError, match=r"model\.init_args\.components\.tokenizer_name_or_path"):
        LatentDiffusion(**tiny_init_args(tokenizer_name_or_path=str(tmp_path / "no-tokenizer")))
    with pytest.raises(ConfigError) as caught:
        Autoencoder._load_vae(str(tmp_path / "no-vae"), None, None)
    assert "model.init_args.pretrained_model_name_or_path" in str(caught.value), caught.value
