"""Let ``torch.load(weights_only=True)`` (the default from torch 2.6) read mmengine checkpoints.

mmengine 0.10.7 saves, beside the tensors, a ``message_hub`` holding ``HistoryBuffer`` objects
whose logs are numpy arrays, and numpy scalars in ``meta``.  Rather than turning the safe
loader off, this allow-lists exactly those types: ``HistoryBuffer``, numpy arrays (the
``_reconstruct``/``ndarray`` pair), numpy scalars and numpy dtypes.

``HistoryBuffer.__getstate__`` also pickles its statistics methods as
``getattr(HistoryBuffer, 'mean')``.  The builtin ``getattr`` is *not* allow-listed: the pickled
name ``builtins.getattr`` is mapped to :func:`_history_buffer_method`, which resolves only
statistics methods of ``HistoryBuffer`` and raises for anything else.
"""
import pickle

import numpy as np
import torch


def _numpy_globals():
    try:  # numpy >= 1.25 keeps the private module under numpy._core from 2.0 on
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover
        from numpy.core import multiarray
    objs = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    try:
        from numpy.core import multiarray as legacy  # the name numpy < 2 pickles
        objs += [legacy._reconstruct, legacy.scalar]
    except ImportError:  # pragma: no cover
        pass
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        objs += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return objs


def _history_buffer_method(obj, name):
    """``getattr`` restricted to ``HistoryBuffer``'s registered statistics methods."""
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = set(HistoryBuffer._statistics_methods) | {'min', 'max', 'mean', 'current'}
    if obj is not HistoryBuffer or name not in allowed:
        raise pickle.UnpicklingError(
            f'refusing getattr({obj!r}, {name!r}) while loading a checkpoint: only statistics '
            'methods of mmengine HistoryBuffer may be resolved')
    return getattr(HistoryBuffer, name)


def mmengine_safe_globals():
    """The classes and functions mmengine checkpoints need beyond tensors and containers."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_method, 'builtins.getattr')] + _numpy_globals()


def allow_mmengine_checkpoints():
    """Register :func:`mmengine_safe_globals` with torch's weights-only unpickler (idempotent)."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_safe_globals())
