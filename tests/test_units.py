"""Unit keys: what a config file says (its `config:` bases laid under it) is digested in the form earlier
runs recorded, so their result folders are reused; an edited file makes its units anew."""

from __future__ import annotations

import pytest

from cxr_ldm.errors import ConfigError
from cxr_ldm.experiments.units import claim_folder, digest
from cxr_ldm.training.config_files import file_contents


def test_file_contents_lay_the_base_under_dotted_keys(tmp_path):
    base = tmp_path / "_base" / "b.yaml"
    base.parent.mkdir()
    base.write_text(
        "trainer:\n  max_steps: 5\n  callbacks: [a, b]\ndata:\n  init_args: {views: [PA], size: 8}\n"
    )
    variant = tmp_path / "v.yaml"
    variant.write_text("config: _base/b.yaml\ntrainer.callbacks: [c]\ndata.init_args.views: [AP]\n")
    assert file_contents(variant) == {
        "trainer": {"max_steps": 5, "callbacks": ["c"]},
        "data": {"init_args": {"views": ["AP"], "size": 8}},
    }
    (tmp_path / "loop.yaml").write_text("config: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        file_contents(tmp_path / "loop.yaml")


def test_an_edited_config_file_makes_its_unit_anew(tmp_path):
    config = tmp_path / "arm.yaml"
    config.write_text("model.init_args.trainable: {unet: {lr: 1.0e-3}}\n")
    unit = tmp_path / "unit"
    assert not claim_folder(unit, {"config_files": digest([file_contents(config)])})
    (unit / "result.json").write_text("{}")
    assert claim_folder(unit, {"config_files": digest([file_contents(config)])})
    config.write_text("model.init_args.trainable: {unet: {lr: 3.0e-3}}\n")
    assert not claim_folder(unit, {"config_files": digest([file_contents(config)])})
    assert not (unit / "result.json").exists()


def test_a_record_made_before_a_checkpoint_was_keyed_by_its_bytes_holds_and_is_brought_up_to_date(tmp_path):
    """Folders written before external checkpoints were keyed by their bytes stay valid (their version assumed
    the file unchanged); their record then gains the key, so a later change of the file is seen."""
    import json

    from cxr_ldm.experiments.units import KEY_FILE, claim_folder, folder_holds

    folder = tmp_path / "unit"
    folder.mkdir()
    (folder / "result.json").write_text("{}")
    (folder / KEY_FILE).write_text(json.dumps({"arm": "a", "references": {"data": 1}}))
    now = {"arm": "a", "references": {"data": 1, "evaluator_file": "0123"}, "checkpoint_file": "abcd"}
    assert folder_holds(folder, now) and claim_folder(folder, now)
    assert (folder / "result.json").is_file() and json.loads((folder / KEY_FILE).read_text()) == now
    assert not folder_holds(folder, {**now, "checkpoint_file": "ef01"})  # the file replaced since
    assert not folder_holds(folder, {"arm": "b", "references": {"data": 1}})  # other inputs still differ


def test_a_checkpoint_copied_over_with_its_size_and_time_kept_is_another_checkpoint(tmp_path):
    """A launcher asks for a checkpoint's digest at every poll and keeps it in memory; a file put in its place
    by `cp -p` (same size, same modification time, other bytes) is read again, not taken for the old one."""
    import os
    import shutil

    from cxr_ldm.experiments.unit_inputs import checkpoint_file

    path, other = tmp_path / "model.ckpt", tmp_path / "other.ckpt"
    path.write_bytes(b"A" * 64)
    other.write_bytes(b"B" * 64)
    first = checkpoint_file(str(path))
    os.utime(other, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns))
    shutil.copy2(other, path)  # cp -p: the bytes of `other`, the size and the time of `path`
    assert os.stat(path).st_size == 64 and os.stat(path).st_mtime_ns == os.stat(other).st_mtime_ns
    assert checkpoint_file(str(path)) != first
    assert checkpoint_file(str(path)) == checkpoint_file(str(other))
