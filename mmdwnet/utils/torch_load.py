"""Checkpoints are read with ``torch.load(weights_only=True)``, explicitly, everywhere.

:func:`install_safe_checkpoint_loaders` (called by ``import mmdwnet``) replaces mmengine's
loaders for local files and http(s) URLs by ones that pass ``weights_only=True``, so
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` cannot turn the safe unpickler off for ``load_from``,
``--resume``, ``init_cfg`` or the toolboxes' model builders.  The rest of this module lets
that loader read mmengine checkpoints.

mmengine 0.10.7 saves, beside the tensors, a ``message_hub`` holding ``HistoryBuffer`` objects
whose logs are numpy arrays, and numpy scalars in ``meta``.  Rather than turning the safe
loader off, this allow-lists exactly those types: ``HistoryBuffer``, numpy arrays (the
``_reconstruct``/``ndarray`` pair), numpy scalars and numpy dtypes.

``HistoryBuffer.__getstate__`` also pickles its statistics methods as
``getattr(HistoryBuffer, 'mean')``.  The builtin ``getattr`` is *not* allow-listed: the pickled
name ``builtins.getattr`` is mapped to :func:`_history_buffer_method`, which resolves only
statistics methods of ``HistoryBuffer`` and raises for anything else.
"""
import os
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


def safe_torch_load(f, map_location=None):
    """``torch.load(f, weights_only=True)`` with the mmengine allow-list registered.

    ``weights_only`` is passed explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in the
    environment cannot turn the safe unpickler off: a file whose pickle asks for anything beyond
    tensors, containers and :func:`mmengine_safe_globals` raises ``pickle.UnpicklingError``
    before any of it runs.
    """
    allow_mmengine_checkpoints()
    return torch.load(f, map_location=map_location, weights_only=True)


def load_from_local(filename, map_location=None):
    """mmengine's local-file checkpoint loader, with :func:`safe_torch_load`."""
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location)


def load_from_http(filename, map_location=None, model_dir=None,
                   progress=os.environ.get('LOCAL_RANK', '0') == '0'):
    """mmengine's http(s) loader (rank 0 downloads first), with ``weights_only=True``."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()

    def fetch():
        return torch.hub.load_state_dict_from_url(
            filename, model_dir=model_dir, map_location=map_location, progress=progress,
            weights_only=True)

    checkpoint = fetch() if rank == 0 else None
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = fetch()
    return checkpoint


def install_safe_checkpoint_loaders():
    """Make mmengine's ``CheckpointLoader`` read local files and URLs with ``weights_only=True``.

    Every mmengine load of a path or URL goes through these loaders: ``load_from``,
    ``--resume``, ``init_cfg=dict(type='Pretrained')``, ``mmengine.runner.load_checkpoint`` and
    so the toolboxes' ``get_model`` / ``init_detector`` / ``init_model``.  The checkpoint
    content is returned unchanged (conversion of official layouts happens in the model, see
    :mod:`mmdwnet.converters.loading`).  Idempotent.
    """
    allow_mmengine_checkpoints()
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=load_from_http,
                                     force=True)
