"""Data: MIMIC-CXR index, dataset and LightningDataModule, report sectioning, image decoding and caches, and
the report-sentence corpus a text encoder learns language from."""

from typing import TYPE_CHECKING

from cxr_ldm.data.bad_samples import BadSampleError, SkippedSample
from cxr_ldm.data.mimic_tables import MimicTableError
from cxr_ldm.data.report_sections import extract_section, parse_report

if TYPE_CHECKING:
    from cxr_ldm.data.mimic_datamodule import MimicCxrDataModule
    from cxr_ldm.data.mimic_dataset import MimicCxrDataset
    from cxr_ldm.data.report_corpus_datamodule import ReportCorpusDataModule


def __getattr__(name: str):
    """The data modules and the dataset are imported when first asked for (a config's
    `class_path: cxr_ldm.data.MimicCxrDataModule` asks): they bring torch and Lightning, which the small
    modules of this package (atomic writes, tables, report sections) do not need."""
    if name == "MimicCxrDataModule":
        from cxr_ldm.data.mimic_datamodule import MimicCxrDataModule

        return MimicCxrDataModule
    if name == "MimicCxrDataset":
        from cxr_ldm.data.mimic_dataset import MimicCxrDataset

        return MimicCxrDataset
    if name == "ReportCorpusDataModule":
        from cxr_ldm.data.report_corpus_datamodule import ReportCorpusDataModule

        return ReportCorpusDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BadSampleError",
    "MimicCxrDataModule",
    "MimicCxrDataset",
    "MimicTableError",
    "ReportCorpusDataModule",
    "SkippedSample",
    "extract_section",
    "parse_report",
]
