"""The report sectioner on hand-written reports in the real formats (wrapping, header variants, no headers)."""

from __future__ import annotations

import pytest

from cxr_ldm.data.report_sections import extract_section, normalise_text, parse_report

STANDARD = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old man with fever and cough  // ? pneumonia

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  ___

 FINDINGS:

 There is new patchy opacity in the right lower lobe concerning for pneumonia.
 No pleural effusion or pneumothorax.  Heart size is normal.  Mediastinal
 contours are unremarkable.

 IMPRESSION:

 Right lower lobe pneumonia.  Recommend followup radiographs in ___ weeks
 after treatment to document resolution.
"""

CONCLUSION = """                                 FINAL REPORT
 HISTORY:  Chest pain.

 CHEST, TWO VIEWS:  The heart is mildly enlarged.  There is no focal
 consolidation.

 CONCLUSION:  Mild cardiomegaly without acute process.
"""

COMBINED = """                                 FINAL REPORT
 INDICATION:  Intubated patient, assess tube position.

 FINDINGS AND IMPRESSION:  Endotracheal tube terminates 4 cm above the carina.
 Nasogastric tube courses below the diaphragm.  Bibasilar atelectasis.
"""

WET_READ = """WET READ: ___ ___ 9:42 PM
  Large left pleural effusion, new since ___.
 ______________________________________________________________________________
                                 FINAL REPORT
 INDICATION:  Dyspnea.

 COMPARISON:  ___.

 FINDINGS:  Large left pleural effusion with compressive atelectasis of the
 left lower lobe.  Right lung is clear.
"""

NO_HEADERS = """                                 FINAL REPORT
 CHEST RADIOGRAPH PERFORMED ON ___

 Comparison is made with prior study from ___.

 Heart size is normal.  The lungs are clear.  There is no pleural
 effusion.

 No acute cardiopulmonary process.
"""

INLINE_AND_NUMBERED = """FINAL REPORT\r\nIMPRESSION: 1.  Moderate pulmonary edema, worse.\r\n 2.  Small bilateral\r\n pleural effusions.\r\n\r\nNOTIFICATION:  Findings discussed with Dr. ___ at 10:15 am.\r\n"""

LOWER_CASE_HEADER = """Impression:   Stable   appearance of the chest.\n\n"""

ADDENDUM = """ FINDINGS:  Lines and tubes unchanged.

 IMPRESSION:  No change.

 ADDENDUM:  Correction of laterality.

 IMPRESSION:  Left-sided PICC unchanged.
"""


def test_standard_report_joins_wrapped_lines() -> None:
    parsed = parse_report(STANDARD)
    assert parsed.impression == (
        "Right lower lobe pneumonia. Recommend followup radiographs in ___ weeks after treatment to document "
        "resolution."
    )
    assert parsed.findings.startswith(
        "There is new patchy opacity in the right lower lobe concerning for pneumonia. No"
    )
    assert "\n" not in parsed.findings and "  " not in parsed.findings
    assert extract_section(STANDARD, "findings") == parsed.findings


def test_conclusion_is_an_impression() -> None:
    assert extract_section(CONCLUSION, "impression") == "Mild cardiomegaly without acute process."
    # The unknown upper-case header starts its own section; there is no FINDINGS header.
    assert extract_section(CONCLUSION, "findings") == ""


def test_findings_and_impression_serves_both() -> None:
    text = "Endotracheal tube terminates 4 cm above the carina. Nasogastric tube courses below the diaphragm. Bibasilar atelectasis."
    assert extract_section(COMBINED, "impression") == text
    assert extract_section(COMBINED, "findings") == text


def test_wet_read_is_the_fallback_impression_without_its_stamp() -> None:
    assert extract_section(WET_READ, "impression") == "Large left pleural effusion, new since ___."
    assert extract_section(WET_READ, "findings").startswith("Large left pleural effusion with compressive")
    # The long underscore rule becomes one token and does not leak into the wet read text.
    assert "____" not in extract_section(WET_READ, "impression")


def test_no_headers_falls_back_to_last_paragraph() -> None:
    assert extract_section(NO_HEADERS, "impression") == "No acute cardiopulmonary process."
    assert extract_section(NO_HEADERS, "impression_or_findings") == "No acute cardiopulmonary process."
    assert extract_section(NO_HEADERS, "findings") == ""


def test_free_text_after_a_metadata_header() -> None:
    report = (
        " HISTORY:  ___ year old man with dyspnea  // eval\n \n No pneumothorax.  Large right pleural\n"
        " effusion.\n \n Right pleural effusion, large.\n"
    )
    assert extract_section(report, "impression") == "Right pleural effusion, large."
    assert extract_section(" HISTORY:  Cough.\n", "impression") == ""


def test_findings_without_impression() -> None:
    report = " FINDINGS:  Heart size is normal.\n Lungs are clear.\n"
    assert extract_section(report, "impression") == ""  # no last-paragraph fallback when findings exist
    assert extract_section(report, "impression_or_findings") == "Heart size is normal. Lungs are clear."


def test_inline_header_crlf_and_numbered_list() -> None:
    assert extract_section(INLINE_AND_NUMBERED, "impression") == (
        "1. Moderate pulmonary edema, worse. 2. Small bilateral pleural effusions."
    )


def test_lower_case_known_header_and_whitespace() -> None:
    assert extract_section(LOWER_CASE_HEADER, "impression") == "Stable appearance of the chest."


def test_last_impression_wins() -> None:
    assert extract_section(ADDENDUM, "impression") == "Left-sided PICC unchanged."


def test_times_and_ratios_are_not_headers() -> None:
    report = " IMPRESSION:  Tube seen at 10:15 with ratio 1:2 unchanged.\n Heart: normal size.\n"
    assert (
        extract_section(report, "impression")
        == "Tube seen at 10:15 with ratio 1:2 unchanged. Heart: normal size."
    )


def test_upper_case_times_captions_and_labels_inside_an_impression_are_its_text() -> None:
    """All-caps reports wrap times onto their own lines; impressions open with a view caption or hold a
    "ETT: 4 cm" line: none of them starts a section (an impression cut short or lost before)."""
    caps = " FINAL REPORT\n IMPRESSION:  RIGHT LOWER LOBE PNEUMONIA.  DISCUSSED WITH DR. ___\n AT 4:15 PM ON ___.\n"
    assert extract_section(caps, "impression") == (
        "RIGHT LOWER LOBE PNEUMONIA. DISCUSSED WITH DR. ___ AT 4:15 PM ON ___."
    )
    caption = (
        " FINDINGS:  Moderate pulmonary edema.\n\n IMPRESSION:\n\n AP UPRIGHT PORTABLE CHEST RADIOGRAPH:\n"
        " Moderate pulmonary edema, slightly improved.\n"
    )
    assert extract_section(caption, "impression") == (
        "AP UPRIGHT PORTABLE CHEST RADIOGRAPH: Moderate pulmonary edema, slightly improved."
    )
    tubes = " IMPRESSION:\n 1. Lines and tubes as described.\n ETT: 4 cm above the carina.\n\n NOTIFICATION:  Called.\n"
    assert (
        extract_section(tubes, "impression") == "1. Lines and tubes as described. ETT: 4 cm above the carina."
    )
    # outside what was seen, an upper-case name still heads a section of its own
    assert extract_section(CONCLUSION, "impression") == "Mild cardiomegaly without acute process."


def test_a_known_header_before_a_digit_and_an_unknown_one_after_a_blank_line() -> None:
    """The time rule is for unknown names: "IMPRESSION:1." still opens the impression. Below the text of an
    impression, after a blank line, an upper-case name starts a section of its own."""
    assert extract_section(" FINDINGS: Clear.\n\n IMPRESSION:1. No acute process.\n", "impression") == (
        "1. No acute process."
    )
    assert extract_section(" FINDINGS:2 views of the chest. No effusion.\n", "findings") == (
        "2 views of the chest. No effusion."
    )
    report = " IMPRESSION: No pneumonia.\n\n PATIENT ALERT FLAG:  Called to the floor.\n"
    assert extract_section(report, "impression") == "No pneumonia."


def test_a_wet_read_version_line_is_a_header_and_its_stamp_is_no_text() -> None:
    report = (
        " WET READ: ___ ___ ___ 4:47 PM\n  Small right apical pneumothorax.\n"
        " WET READ VERSION #___ ___ ___ ___ 4:47 PM\n  Small right apical pneumothorax.\n"
        " ______________________________________________________________________________\n"
        "                                 FINAL REPORT\n HISTORY:  Chest tube.\n\n"
        " FINDINGS:  Small right apical pneumothorax.  Chest tube in place.\n"
    )
    assert extract_section(report, "impression") == "Small right apical pneumothorax."
    assert parse_report(report).sections[1].name == "WET READ VERSION"
    alone = " WET READ VERSION #___ ___ ___ ___ 4:47 PM\n  Small right apical pneumothorax.\n"
    assert extract_section(alone, "impression") == "Small right apical pneumothorax."


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("a  ___   b", "a ___ b"), ("a ______ b", "a ___ b"), ("\n\t x \n", "x"), ("__", "___"), ("_", "_")],
)
def test_normalise_text(raw: str, clean: str) -> None:
    assert normalise_text(raw) == clean


def test_empty_and_bad_choice() -> None:
    assert extract_section("", "impression") == ""
    with pytest.raises(ValueError, match="text_section"):
        extract_section(STANDARD, "history")  # type: ignore[arg-type]
