"""Free-text reports in the style of MIMIC-CXR: same headers, wrapping, placeholders and section quirks.

Sentences are built from the study's findings, so a report states exactly what the image shows and the
labels say: positive findings with side and size, hedged wording for uncertain ones, negations for the
labels marked 0.0.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np

from cxr_ldm.phantom.findings import Finding, StudyFindings

WRAP = 78
# (style, probability): the section layouts a report may take
STYLES = (
    ("standard", 0.55),
    ("no_impression", 0.09),
    ("no_findings", 0.12),
    ("findings_and_impression", 0.06),
    ("conclusion", 0.05),
    ("wet_read", 0.06),
    ("no_header", 0.07),
)
SIZE_ADVERB = {"mild": "mildly", "moderate": "moderately", "severe": "severely", "borderline": "borderline"}


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _side_word(f: Finding) -> str:
    return "bilateral" if f.side == "bilateral" else f.side


def _positive(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    """(findings sentence, impression phrase) for a present finding."""
    side, size, loc = _side_word(f), f.size, f.location
    if f.name == "Pleural Effusion":
        if f.side == "bilateral":
            long = _pick(
                rng,
                [
                    f"There are {size} bilateral pleural effusions.",
                    f"{_cap(size)} bilateral pleural effusions are present.",
                    f"Bilateral pleural effusions, {size}, with blunting of both costophrenic angles.",
                ],
            )
            return long, _pick(
                rng, [f"{_cap(size)} bilateral pleural effusions.", f"{_cap(size)} bilateral effusions."]
            )
        long = _pick(
            rng,
            [
                f"There is a {size} {side} pleural effusion.",
                f"{_cap(size)} {side} pleural effusion with a meniscus along the lateral chest wall.",
                f"A {size} {side} pleural effusion blunts the {side} costophrenic angle.",
            ],
        )
        return long, _pick(
            rng,
            [
                f"{_cap(size)} {side} pleural effusion.",
                f"{_cap(size)} {side} effusion.",
                f"{_cap(side)} pleural effusion, {size}.",
            ],
        )
    if f.name == "Pneumothorax":
        long = _pick(
            rng,
            [
                f"There is a {size} {side} pneumothorax.",
                f"A {size} {side} apical pneumothorax is seen, with a visible pleural line and no lung markings beyond it.",
                f"{_cap(size)} {side}-sided pneumothorax.",
            ],
        )
        return long, _pick(
            rng,
            [
                f"{_cap(size)} {side} pneumothorax.",
                f"{_cap(side)} pneumothorax, {size}.",
                f"{_cap(size)} {side} pneumothorax. Findings were discussed with the referring team at ___.",
            ],
        )
    if f.name == "Cardiomegaly":
        adv = SIZE_ADVERB.get(size, "mildly")
        long = _pick(
            rng,
            [
                f"The heart is {adv} enlarged.",
                f"{_cap(size)} cardiomegaly.",
                f"There is {size} enlargement of the cardiac silhouette.",
            ],
        )
        return long, _pick(
            rng,
            [
                f"{_cap(size)} cardiomegaly.",
                f"{_cap(size)} cardiomegaly, unchanged.",
                f"The heart is {adv} enlarged.",
            ],
        )
    if f.name == "Edema":
        long = _pick(
            rng,
            [
                f"There is {size} pulmonary edema with perihilar haziness.",
                f"{_cap(size)} interstitial pulmonary edema.",
                f"Perihilar opacities and vascular indistinctness are compatible with {size} pulmonary edema.",
            ],
        )
        return long, _pick(
            rng,
            [
                f"{_cap(size)} pulmonary edema.",
                f"{_cap(size)} edema.",
                f"{_cap(size)} pulmonary edema, worse than on the prior study.",
            ],
        )
    if f.name == "Consolidation":
        long = _pick(
            rng,
            [
                f"There is consolidation in the {loc}.",
                f"Focal consolidation is present in the {loc}.",
                f"Dense consolidation in the {loc} with air bronchograms.",
            ],
        )
        return long, _pick(rng, [f"{_cap(loc)} consolidation.", f"Consolidation in the {loc}."])
    if f.name == "Lung Opacity":
        long = _pick(
            rng,
            [
                f"There is a patchy opacity in the {loc}.",
                f"An ill-defined opacity projects over the {loc}.",
                f"Hazy opacity in the {loc}.",
            ],
        )
        return long, _pick(rng, [f"{_cap(loc)} opacity.", f"Opacity in the {loc}."])
    if f.name == "Pneumonia":
        s = _pick(
            rng, ["Findings are consistent with pneumonia.", f"Compatible with pneumonia in the {loc}."]
        )
        return s, s
    if f.name == "Atelectasis":
        where = "bibasilar" if f.side == "bilateral" else f"{f.side} basilar"
        long = _pick(
            rng,
            [
                f"{_cap(size)} {where} atelectasis.",
                f"There is {size} plate-like atelectasis at the {loc}.",
                f"Linear opacities at the {loc} reflect {size} atelectasis.",
            ],
        )
        return long, _pick(rng, [f"{_cap(size)} {where} atelectasis.", f"{_cap(where)} atelectasis."])
    if f.name == "Lung Lesion":
        long = f"There is a {size} {f.detail} in the {loc}."
        return long, _pick(
            rng, [f"{_cap(size)} {f.detail} in the {loc}. Recommend chest CT.", f"{_cap(loc)} {f.detail}."]
        )
    if f.name == "Enlarged Cardiomediastinum":
        s = _pick(rng, ["The mediastinum is widened.", "The cardiomediastinal silhouette is enlarged."])
        return s, s
    if f.name == "Fracture":
        return f"There is a fracture of a {side} posterior rib.", f"{_cap(side)} rib fracture."
    if f.name == "Pleural Other":
        return f"There is {side} pleural thickening.", f"{_cap(side)} pleural thickening."
    if f.name == "Support Devices":
        return _devices(f, rng), _devices(f, rng, short=True)
    return "", ""


def _uncertain(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    side, size, loc = _side_word(f), f.size, f.location
    options = {
        "Pleural Effusion": [
            f"Blunting of the {side} costophrenic angle may reflect a small pleural effusion.",
            f"Possible small {side} pleural effusion.",
            f"A trace {side} pleural effusion cannot be excluded.",
        ],
        "Pneumothorax": [
            f"Possible small {side} apical pneumothorax.",
            f"A subtle lucency at the {side} apex may represent a small pneumothorax.",
        ],
        "Cardiomegaly": [
            "The heart size is borderline enlarged.",
            "Heart size is at the upper limits of normal, possibly mildly enlarged.",
        ],
        "Edema": [
            "Mild vascular congestion, possibly early pulmonary edema.",
            "Perihilar haziness may reflect mild edema.",
        ],
        "Consolidation": [
            f"Possible consolidation in the {loc}.",
            f"Consolidation in the {loc} is not excluded.",
        ],
        "Lung Opacity": [
            f"Possible opacity in the {loc}.",
            f"Questionable opacity projecting over the {loc}.",
        ],
        "Pneumonia": [
            "This may represent pneumonia in the appropriate clinical setting.",
            "Concerning for pneumonia.",
        ],
        "Atelectasis": [
            f"Opacities at the {loc} likely reflect atelectasis.",
            f"Possible {loc} atelectasis.",
        ],
        "Lung Lesion": [
            f"A possible {size} nodule projects over the {loc}; recommend CT for further evaluation."
        ],
        "Enlarged Cardiomediastinum": ["The mediastinum may be slightly widened."],
        "Fracture": [f"Possible {side} rib fracture."],
        "Pleural Other": [f"Possible {side} pleural thickening."],
    }.get(f.name, [""])
    s = _pick(rng, options)
    return s, s


def _devices(f: Finding, rng: np.random.Generator, short: bool = False) -> str:
    side = f.side or "right"
    parts = {
        "et_tube": [
            f"Endotracheal tube terminates {int(rng.integers(3, 7))} cm above the carina.",
            "ET tube in standard position.",
        ],
        "ng_tube": [
            "An enteric tube courses below the diaphragm with its tip in the stomach.",
            "NG tube tip in the stomach.",
        ],
        "central_line": [
            f"{_cap(side)} internal jugular central venous catheter terminates in the mid SVC.",
            f"{_cap(side)} IJ line ends in the SVC.",
        ],
        "picc": [
            f"{_cap(side)}-sided PICC line terminates in the lower SVC.",
            f"{_cap(side)} PICC tip in the low SVC.",
        ],
        "pacemaker": [
            "Left chest wall pacemaker with leads in the right atrium and right ventricle.",
            "Pacemaker leads unchanged.",
        ],
        "sternal_wires": ["Median sternotomy wires are intact.", "Sternotomy wires."],
        "chest_tube": [f"A {side} chest tube is in place.", f"{_cap(side)} chest tube in place."],
    }
    return " ".join(parts[k][1 if short else 0] for k in f.detail.split(",") if k in parts)


_NEGATABLE_LIST = {
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural effusion",
    "Consolidation": "focal consolidation",
    "Edema": "pulmonary edema",
    "Pneumonia": "pneumonia",
    "Lung Opacity": "focal opacity",
}
_NEGATED_SENTENCE = {
    "Cardiomegaly": ["Heart size is normal.", "The heart is not enlarged.", "Normal heart size."],
    "Enlarged Cardiomediastinum": [
        "The mediastinal contours are normal.",
        "Cardiomediastinal silhouette is within normal limits.",
    ],
    "Fracture": ["No displaced rib fracture is seen."],
}


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _negations(study: StudyFindings, rng: np.random.Generator) -> list[str]:
    out = []
    listed = [_NEGATABLE_LIST[n] for n in study.negated if n in _NEGATABLE_LIST]
    if listed:
        lead = _pick(rng, ["There is no {}.", "No {}.", "No evidence of {}.", "There is no evidence of {}."])
        out.append(lead.format(_join(listed)))
    for name in study.negated:
        if name in _NEGATED_SENTENCE:
            out.append(_pick(rng, _NEGATED_SENTENCE[name]))
    return out


def _sentences(study: StudyFindings, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    findings_text, impression = [], []
    for f in study.findings:
        if f.name == "No Finding":
            continue
        long, short = _positive(f, rng) if f.label > 0 else _uncertain(f, rng)
        if long:
            findings_text.append(long)
            impression.append(short)
    negs = _negations(study, rng)
    if rng.random() < 0.5:
        findings_text = negs + findings_text
    else:
        findings_text = findings_text + negs
    if not any(f.name not in ("No Finding", "Support Devices") for f in study.findings):
        findings_text.insert(
            0,
            _pick(
                rng,
                [
                    "The lungs are clear.",
                    "Lungs are well expanded and clear.",
                    "The lungs are clear without focal opacity.",
                ],
            ),
        )
    return findings_text, impression


def _impression(study: StudyFindings, phrases: list[str], negs: list[str], rng: np.random.Generator) -> str:
    """Impression text whose length spreads below, inside and above the 7-77 character window."""
    abnormal = [p for p in phrases if p]
    normal = not any(f.name not in ("No Finding", "Support Devices") for f in study.findings)
    if normal:
        r = rng.random()
        if r < 0.08:
            return _pick(rng, ["Clear.", "Normal.", "Neg.", "___."])
        base = _pick(
            rng,
            [
                "No acute cardiopulmonary process.",
                "No acute intrathoracic process.",
                "Normal chest radiograph.",
                "No acute cardiopulmonary abnormality.",
                "Unremarkable chest radiograph.",
            ],
        )
        extra = abnormal + (negs if r > 0.75 else [])
        return " ".join([base, *extra])
    if len(abnormal) >= 3 and rng.random() < 0.4:
        return "\n".join(f"{i + 1}. {p}" for i, p in enumerate(abnormal))
    if len(abnormal) == 1 and rng.random() < 0.1:
        return abnormal[0].split(". ")[0].rstrip(".") + "."
    text = " ".join(abnormal)
    if rng.random() < 0.2:
        text = (
            _pick(
                rng,
                [
                    "Compared to the prior study, ",
                    "As compared to ___, ",
                    "In comparison with the study of ___, ",
                ],
            )
            + text[0].lower()
            + text[1:]
        )
    return text


def _wrap(text: str) -> list[str]:
    out = []
    for para in text.split("\n"):
        out += textwrap.wrap(para, width=WRAP - 1, initial_indent=" ", subsequent_indent=" ") or [" "]
    return out


def _section(header: str, text: str, inline: bool) -> list[str]:
    if inline:
        lines = _wrap(f"{header}:  {text}")
        return [*lines, " "]
    return [f" {header}: ", " ", *_wrap(text), " "]


def write_report(
    study: StudyFindings,
    procedure: str,
    views: list[str],
    female: bool,
    has_prior: bool,
    rng: np.random.Generator,
) -> tuple[str, str]:
    """(report text, style name). The text ends with a newline, like the files in mimic-cxr-reports."""
    style = STYLES[
        int(rng.choice(len(STYLES), p=np.array([p for _, p in STYLES]) / sum(p for _, p in STYLES)))
    ][0]
    findings_text, phrases = _sentences(study, rng)
    negs = _negations(study, rng)
    impression = _impression(study, phrases, negs, rng)
    who = "woman" if female else "man"
    reason = _pick(
        rng,
        [
            "shortness of breath",
            "cough and fever",
            "chest pain",
            "hypoxia",
            "s/p line placement",
            "intubated",
            "CHF exacerbation",
            "pre-operative evaluation",
            "fall",
        ],
    )
    question = _pick(
        rng,
        [
            "eval for pneumonia",
            "eval for effusion",
            "r/o pneumothorax",
            "eval tube placement",
            "eval for acute process",
            "?edema",
        ],
    )
    indication = f"___ year old {who} with {reason}  // {question}"
    portable = any(v.startswith("AP") for v in views)
    technique = (
        _pick(rng, ["Portable AP chest radiograph.", "Single frontal view of the chest."])
        if portable
        else _pick(rng, ["PA and lateral views of the chest.", "Chest PA and lateral"])
    )
    comparison = (
        _pick(rng, ["___", "Chest radiograph from ___.", "___ and ___."])
        if has_prior
        else _pick(rng, ["None.", "None available."])
    )
    findings_para = " ".join(findings_text)
    lines = ["", "                                 FINAL REPORT"]
    head = [
        *_section("EXAMINATION", procedure, True),
        *_section("INDICATION", indication, True),
        *_section("TECHNIQUE", technique, True),
        *_section("COMPARISON", comparison, True),
    ]
    if style == "no_header":
        hist = (
            f"HISTORY:  {indication}"
            if rng.random() < 0.5
            else f"{procedure}: {indication.split('//')[0].strip()}."
        )
        body = [*_wrap(hist), " ", *_wrap(findings_para), " ", *_wrap(impression)]
        return "\n".join([*lines, *body]) + "\n", style
    if style == "wet_read":
        lines = [
            "",
            f" WET READ: ___ ___ {int(rng.integers(1, 12))}:{int(rng.integers(0, 60)):02d} PM",
            *_wrap(impression),
            " ",
            *lines[1:],
        ]
    body = list(head)
    if style in ("standard", "wet_read"):
        body += _section("FINDINGS", findings_para, False) + _section("IMPRESSION", impression, False)
    elif style == "no_impression":
        body += _section("FINDINGS", findings_para, False)
    elif style == "no_findings":
        body += _section("IMPRESSION", impression, False)
    elif style == "findings_and_impression":
        body += _section("FINDINGS AND IMPRESSION", f"{findings_para} {impression}".strip(), False)
    elif style == "conclusion":
        body += _section("FINDINGS", findings_para, False) + _section("CONCLUSION", impression, False)
    while body and body[-1] == " ":
        body.pop()
    return "\n".join([*lines, *body]) + "\n", style


_HEADER = re.compile(r"^\s*([A-Z][A-Z /&]+):", re.MULTILINE)


def extract_impression(text: str) -> str:
    """IMPRESSION (or CONCLUSION, FINDINGS AND IMPRESSION), else the last paragraph; whitespace collapsed."""
    sections: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        sections[m.group(1).strip()] = text[m.end() : end]
    for key in ("IMPRESSION", "CONCLUSION", "FINDINGS AND IMPRESSION"):
        if sections.get(key, "").strip():
            return " ".join(sections[key].split())
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    return " ".join(paragraphs[-1].split()) if paragraphs else ""
