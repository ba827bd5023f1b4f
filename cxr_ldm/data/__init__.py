"""Data: MIMIC-CXR index, dataset and LightningDataModule, report sectioning, image decoding and caches, and
the report-sentence corpus a text encoder learns language from."""

from cxr_ldm.data.bad_samples import BadSampleError, SkippedSample
from cxr_ldm.data.mimic_datamodule import MimicCxrDataModule
from cxr_ldm.data.mimic_dataset import MimicCxrDataset
from cxr_ldm.data.mimic_tables import MimicTableError
from cxr_ldm.data.report_corpus_datamodule import ReportCorpusDataModule
from cxr_ldm.data.report_sections import extract_section, parse_report

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
