"""Split a free-text radiology report into its sections and pick the one used as text.

Reports are hard-wrapped at about 78 columns under upper-case headers ending in a colon (`FINDINGS:`,
`IMPRESSION:` ...). Many lack a header, use a variant (`CONCLUSION:`, `FINDINGS AND IMPRESSION:`,
`WET READ:`) or have none at all. This module joins wrapped lines, finds headers (upper case, or a known
name in any case, with text allowed after the colon; inside an impression or findings an unknown name
that opens it or goes on a paragraph is text, a view caption or "ETT: 4 cm"; an unknown name before a
colon and a digit is a time) and falls back to the last paragraph when a report has neither impression
nor findings.

Normalisation: runs of whitespace become one space; runs of two or more underscores (de-identified spans)
become the single token `___`, which is kept rather than removed so sentences such as
"Compared to ___, no change" stay grammatical and the token stays one consistent marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

TextSection = Literal["impression", "findings", "impression_or_findings"]
TEXT_SECTIONS: tuple[str, ...] = ("impression", "findings", "impression_or_findings")

# Header names by role, in order of preference within the role.
IMPRESSION_HEADERS: tuple[str, ...] = (
    "IMPRESSION",
    "IMPRESSIONS",
    "CONCLUSION",
    "CONCLUSIONS",
    "FINDINGS AND IMPRESSION",
    "FINDINGS AND IMPRESSIONS",
    "FINDINGS/IMPRESSION",
    "IMPRESSION AND FINDINGS",
    "SUMMARY",
)
FINDINGS_HEADERS: tuple[str, ...] = (
    "FINDINGS",
    "FINDING",
    "FINDINGS AND IMPRESSION",
    "FINDINGS AND IMPRESSIONS",
    "FINDINGS/IMPRESSION",
    "IMPRESSION AND FINDINGS",
)
WET_READ_HEADERS: tuple[str, ...] = ("WET READ", "WET READ VERSION")
# Sections that describe the exam rather than the image: never used by the last-paragraph fallback.
METADATA_HEADERS: frozenset[str] = frozenset(
    {
        "EXAMINATION",
        "EXAM",
        "INDICATION",
        "INDICATIONS",
        "HISTORY",
        "CLINICAL HISTORY",
        "CLINICAL INFORMATION",
        "CLINICAL INDICATION",
        "REASON FOR STUDY",
        "REASON FOR THIS EXAMINATION",
        "MEDICAL CONDITION",
        "UNDERLYING MEDICAL CONDITION",
        "REASON FOR EXAM",
        "REASON FOR EXAMINATION",
        "TECHNIQUE",
        "COMPARISON",
        "COMPARISONS",
        "NOTIFICATION",
        "RECOMMENDATION",
        "RECOMMENDATIONS",
        "RECOMMENDATION(S)",
        "PROCEDURE",
        "TYPE OF EXAMINATION",
        "REFERENCE EXAM",
        "DATE",
        "ADDENDUM",
    }
)
# Sections that hold what was seen: inside one, an upper-case "NAME:" that is no known header is text when it
# opens the section (a view caption such as "PA AND LATERAL VIEWS OF THE CHEST:") or goes on a paragraph
# ("ETT: 4 cm above the carina"); after a blank line, below text of the section, it starts a section.
CONTENT_HEADERS: frozenset[str] = frozenset(IMPRESSION_HEADERS + FINDINGS_HEADERS + WET_READ_HEADERS)
KNOWN_HEADERS: frozenset[str] = frozenset(
    IMPRESSION_HEADERS + FINDINGS_HEADERS + WET_READ_HEADERS + tuple(METADATA_HEADERS)
)

_HEADER = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 ,/&()'\-]{0,40}?)\s*:(.*)$")
# "WET READ VERSION #___ ___ ___ 4:47 PM": a header without a colon, with a stamp after it.
_WET_READ_VERSION = re.compile(r"^\s*(WET READ VERSION)\b(.*)$", re.IGNORECASE)
_UNDERSCORES = re.compile(r"_{2,}")
_SPACES = re.compile(r"\s+")
_RULE = re.compile(r"^[_=\-*]{5,}$")
# "___ ___ 9:15 AM" at the start of a wet read: who read it and when.
_WET_READ_STAMP = re.compile(r"^#?\s*(?:___\s*)+(?:\d{1,2}:\d{2}\s*(?:[AP]\.?M\.?)?)?\s*", re.IGNORECASE)


def normalise_text(text: str) -> str:
    """Collapse whitespace to single spaces and de-identified spans to one `___` token."""
    return _SPACES.sub(" ", _UNDERSCORES.sub("___", text)).strip()


def _header_name(line: str) -> tuple[str, str] | None:
    """Return (canonical header, rest of the line) if the line starts a section."""
    version = _WET_READ_VERSION.match(line)
    if version is not None:
        return "WET READ VERSION", version.group(2).lstrip(" :")
    bare = line.strip().rstrip(":").strip()
    if bare.upper() in KNOWN_HEADERS and ":" not in bare:
        # A known header alone on its line, colon or not.
        return bare.upper(), ""
    match = _HEADER.match(line)
    if match is None:
        return None
    name = _SPACES.sub(" ", match.group(1).strip())
    letters = [c for c in name if c.isalpha()]
    if len(letters) < 2:
        return None
    upper = name.upper()
    if upper in KNOWN_HEADERS:
        return upper, match.group(2)
    # an unknown name before a colon and a digit is a time or a ratio ("AT 4:15 PM", "1:2"), not a header
    if name.isupper() and not match.group(2)[:1].isdigit():
        return upper, match.group(2)
    return None


@dataclass
class Section:
    """One headed (or, for the preamble, unheaded) part of a report, as a list of paragraphs."""

    name: str | None
    paragraphs: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return normalise_text(" ".join(self.paragraphs))


@dataclass
class ReportSections:
    """A parsed report; the properties pick a role's text, empty when absent."""

    sections: list[Section]

    def _by_names(self, names: tuple[str, ...]) -> str:
        for name in names:
            # The last section of a name wins: later parts (addenda) restate the final read.
            for section in reversed(self.sections):
                if section.name == name and section.text:
                    return section.text
        return ""

    @property
    def impression(self) -> str:
        return self._by_names(IMPRESSION_HEADERS)

    @property
    def findings(self) -> str:
        return self._by_names(FINDINGS_HEADERS)

    @property
    def wet_read(self) -> str:
        text = self._by_names(WET_READ_HEADERS)
        return normalise_text(_WET_READ_STAMP.sub("", text))

    @property
    def last_paragraph(self) -> str:
        """The last paragraph that is not the text of a metadata header (exam, indication, comparison ...)."""
        for section in reversed(self.sections):
            paragraphs = section.paragraphs
            if section.name in WET_READ_HEADERS:
                continue
            if section.name in METADATA_HEADERS:
                # A metadata header owns its first paragraph; text after a blank line is free text.
                paragraphs = paragraphs[1:]
            for paragraph in reversed(paragraphs):
                text = normalise_text(paragraph)
                if text:
                    return text
        return ""

    def get(self, which: TextSection) -> str:
        """The text for one `text_section` choice.

        - impression: IMPRESSION / CONCLUSION / combined headers, else the WET READ, else (only when the
          report has neither impression nor findings) its last paragraph.
        - findings: FINDINGS or a combined header, else empty.
        - impression_or_findings: the impression as above, else the findings, else the last paragraph.
        """
        if which not in TEXT_SECTIONS:
            raise ValueError(f"text_section must be one of {TEXT_SECTIONS}, got {which!r}")
        if which == "findings":
            return self.findings
        impression = self.impression or self.wet_read
        if impression:
            return impression
        findings = self.findings
        if which == "impression_or_findings" and findings:
            return findings
        if findings:
            return ""
        return self.last_paragraph


def parse_report(text: str) -> ReportSections:
    """Split report text into sections, joining hard-wrapped lines into paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    sections = [Section(None)]
    current: list[str] = []

    def flush() -> None:
        if current:
            sections[-1].paragraphs.append(" ".join(current))
            current.clear()

    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            flush()
            continue
        if _RULE.match(line) or line.upper() == "FINAL REPORT":
            # A rule or the FINAL REPORT banner closes whatever came before (e.g. a wet read above it).
            flush()
            sections.append(Section(None))
            continue
        header = _header_name(raw)
        if (
            header is not None
            and header[0] not in KNOWN_HEADERS
            and sections[-1].name in CONTENT_HEADERS
            and (current or not sections[-1].paragraphs)
        ):
            header = None  # a caption at the start of what was seen, or a line of its paragraph: its text
        if header is not None:
            flush()
            name, rest = header
            sections.append(Section(name))
            if rest.strip():
                current.append(rest.strip())
            continue
        current.append(line)
    flush()
    return ReportSections([s for s in sections if s.paragraphs or s.name is not None])


def extract_section(text: str, which: TextSection = "impression") -> str:
    """Shortcut: parse a report and return the normalised text of one section choice."""
    return parse_report(text).get(which)
