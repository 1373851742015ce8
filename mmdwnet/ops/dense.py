"""Moved to :mod:`mmdwnet.models.layers.dense` (the dense layers are model code, not ops).

Kept as an alias so that existing imports (``from mmdwnet.ops.dense import FFN``) keep working;
import from :mod:`mmdwnet.models.layers` in new code.
"""
from mmdwnet.models.layers.dense import *  # noqa: F401,F403
from mmdwnet.models.layers.dense import __all__  # noqa: F401
