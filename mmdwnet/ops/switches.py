"""The switch that picks the backend of the local-aggregation ops.

An environment variable, overridable per thread by a context manager, read at every call so that
changing it never has a process-wide side effect:

* ``MMDWNET_OPS_BACKEND`` / :func:`ops_backend` -- which backend runs the local-aggregation ops:
  ``auto`` (default: the best available for the tensors' device), ``reference`` (alias
  ``torch``: pure PyTorch), ``openmp`` (alias ``cpu``: compiled CPU kernels), ``triton``
  (Triton kernels) or a registered third-party backend; defined in
  :mod:`mmdwnet.ops.backends.base`, re-exported here.

The dense layers' ``MMDWNET_FAST_INFERENCE`` switch is :mod:`mmdwnet.models.layers.switches`
(``fast_inference`` is still importable from here).
"""
from typing import Any

from .backends.base import backend_names, ops_backend, use_ops_backend

__all__ = ['BACKENDS', 'backend_names', 'ops_backend', 'use_ops_backend']

#: the documented ``MMDWNET_OPS_BACKEND`` values of earlier versions (``torch`` and ``cpu`` are
#: aliases of ``reference`` and ``openmp``); :func:`backend_names` lists every value, third-party
#: backends included
BACKENDS = ('auto', 'torch', 'cpu', 'triton')


def __getattr__(name: str) -> Any:
    """``fast_inference`` / ``fast_inference_enabled`` moved to
    :mod:`mmdwnet.models.layers.switches` (the dense layers' switch); kept importable here."""
    if name in ('fast_inference', 'fast_inference_enabled'):
        from mmdwnet.models.layers import switches
        return getattr(switches, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
