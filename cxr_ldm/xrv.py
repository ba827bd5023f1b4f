"""The one import of torchxrayvision: `from cxr_ldm.xrv import xrv`.

torchxrayvision calls `warnings.filterwarnings("ignore")` when it is imported, which would silence every
warning of the whole process (a missing checkpoint, a cut prompt, a skipped file). Importing it here, inside
`warnings.catch_warnings()`, restores the process's warning filters as they were before the import.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    import torchxrayvision as xrv

__all__ = ["xrv"]
