"""Data: MIMIC-CXR index, dataset and LightningDataModule, report sectioning, image decoding and caches."""

from cxr_ldm.data.bad_samples import BadSampleError, SkippedSample
from cxr_ldm.data.mimic_datamodule import MimicCxrDataModule
from cxr_ldm.data.mimic_dataset import MimicCxrDataset
from cxr_ldm.data.mimic_tables import MimicTableError
from cxr_ldm.data.report_sections import extract_section, parse_report

__all__ = [
    "BadSampleError",
    "MimicCxrDataModule",
    "MimicCxrDataset",
    "MimicTableError",
    "SkippedSample",
    "extract_section",
    "parse_report",
]
