"""SageMaker Debugger (smdebug) trials: read them, judge them, convert them.

The reader needs protobuf and crc32c (extra ``sagemaker``); smdebug itself is
never imported. See docs/sagemaker.md for the layout and the name mapping.
"""

from __future__ import annotations

from .trial import SmdebugStepReader, SmdebugTrial, poorinit_collections

__all__ = ["SmdebugStepReader", "SmdebugTrial", "poorinit_collections"]
