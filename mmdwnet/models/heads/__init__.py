"""Task heads that need a toolbox (mmseg, mmdet) at import time.

Not imported by ``import mmdwnet`` (which imports no toolbox); a config that uses one imports
it: ``custom_imports=dict(imports=['mmdwnet', 'mmdwnet.models.heads'])``.
"""
from .seg_heads import ClassWeightAdjustedUPerHead

__all__ = ['ClassWeightAdjustedUPerHead']
