"""The loading gate: every checkpoint is read with ``torch.load(weights_only=True)``, CRC-checked.

Why: ``torch.load`` without ``weights_only=True`` unpickles arbitrary objects, i.e. runs code
from the file; ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns torch's safe default off wherever
``weights_only`` is not passed, and ``torch.hub.load_state_dict_from_url`` (mmengine's
``http(s)://``, ``torchvision://``, ``modelzoo://``, ``open-mmlab://``, ``mmcls://`` loaders)
passes ``weights_only=False`` itself. A zip-format checkpoint stores a CRC32 per record that
``torch.load`` never checks, so a damaged file loads silently.

* :func:`safe_torch_load` -- the one read: size and CRC check (a clear error naming the file),
  then ``torch.load(weights_only=True)`` with the narrow allow-list mmengine's own checkpoints
  need (:func:`mmengine_safe_globals`). mmdwnet's own reads call it directly.
* :func:`safe_loading` -- a context inside which *every* ``torch.load`` of the process is
  :func:`safe_torch_load`: whatever URL scheme mmengine's ``CheckpointLoader`` knows (or gains
  later), the torch hub cache, ``load_from``, ``--resume``, ``init_cfg=dict(type='Pretrained')``
  and the toolboxes' ``get_model`` / ``init_detector`` / ``init_model``. It is applied
  explicitly -- by ``tools/train.py``, ``tools/test.py``, :func:`mmdwnet.apis.init_model`, the
  backbone's own pretrained loading and :class:`mmdwnet.engine.SafeLoadingHook` (for runs
  started by the toolboxes' tools or ``mim``) -- never by ``import mmdwnet``. See
  ``docs/security.md``.

mmengine 0.10.7 saves, beside the tensors, a ``message_hub`` holding ``HistoryBuffer`` objects
whose logs are numpy arrays, and numpy scalars in ``meta``.  Rather than turning the safe
loader off, the allow-list holds exactly those types: ``HistoryBuffer``, numpy arrays (the
``_reconstruct``/``ndarray`` pair), numpy scalars and numpy dtypes.  ``HistoryBuffer.__getstate__``
also pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``.  The builtin
``getattr`` is *not* allow-listed: the pickled name ``builtins.getattr`` is mapped to
:func:`_history_buffer_method`, which resolves only statistics methods of ``HistoryBuffer``.
"""
import contextlib
import os
import pickle
import threading
import zipfile
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ['safe_torch_load', 'safe_loading', 'is_safe_loading', 'check_integrity',
           'mmengine_safe_globals', 'allow_mmengine_checkpoints', 'CheckpointReadError',
           'UnsafeCheckpointError']

#: What :func:`check_integrity` and :func:`safe_torch_load` read: a path or a binary file.
FileLike = Union[str, os.PathLike, IO[bytes]]
#: ``torch.load``'s ``map_location``.
MapLocation = Optional[Union[str, torch.device, Dict[str, str], Callable[..., Any]]]

TRUSTED_LOAD_HINT = ('If you trust this file and its origin, read it yourself with '
                     "torch.load(path, weights_only=False) and save its tensors (see "
                     'docs/security.md).')


class CheckpointReadError(RuntimeError):
    """A checkpoint file is empty, truncated or damaged (its CRC does not match)."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's pickle asks for objects beyond tensors, containers and the allow-list."""


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


def mmengine_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The classes and functions mmengine checkpoints need beyond tensors and containers."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_method, 'builtins.getattr')] + _numpy_globals()


def allow_mmengine_checkpoints() -> None:
    """Register :func:`mmengine_safe_globals` with torch's weights-only unpickler for the rest of
    the process, so that a plain ``torch.load(path)`` reads mmengine runner checkpoints
    (idempotent; explicit -- ``import mmdwnet`` does not call it)."""
    torch.serialization.add_safe_globals(mmengine_safe_globals())


def _name(f):
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    return str(getattr(f, 'name', None) or 'a checkpoint read into memory (object store, pavi)')


def check_integrity(f: FileLike) -> None:
    """Raise :class:`CheckpointReadError` (naming the file) when ``f`` is empty, or a zip-format
    checkpoint whose records fail their CRC32 check. ``f``: a path or a seekable binary file
    (its position is restored). Legacy (non-zip) files have no CRC and pass."""
    name = _name(f)
    if isinstance(f, (str, os.PathLike)):
        if not os.path.isfile(f):
            raise FileNotFoundError(f'checkpoint {name} does not exist')
        if os.path.getsize(f) == 0:
            raise CheckpointReadError(f'checkpoint {name} is empty (0 bytes): an interrupted '
                                      'download or copy; fetch or copy it again')
        opened = open(f, 'rb')
    elif hasattr(f, 'seek') and hasattr(f, 'read'):
        opened = None
    else:
        return
    stream = opened or f
    start = stream.tell()
    try:
        if not zipfile.is_zipfile(stream):
            return
        stream.seek(start)
        try:
            with zipfile.ZipFile(stream) as archive:
                bad = _bad_records(archive)
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise CheckpointReadError(f'checkpoint {name} is damaged (unreadable zip structure: '
                                      f'{e}); fetch or copy it again') from e
        if bad:
            raise CheckpointReadError(
                f'checkpoint {name} is damaged: the CRC32 of record(s) {bad[:3]} does not match '
                'its data (a flipped bit or truncated copy); fetch or copy it again')
    finally:
        if opened is not None:
            opened.close()
        else:
            f.seek(start)


def _bad_records(archive):
    """Names of records whose data does not match their CRC (records saved with
    ``torch.serialization.set_crc32_options(False)`` store CRC 0 and are not checked)."""
    bad = []
    for info in archive.infolist():
        if info.CRC == 0 and info.file_size:
            continue
        try:
            with archive.open(info) as record:
                while record.read(1 << 22):
                    pass
        except zipfile.BadZipFile:
            bad.append(info.filename)
    return bad


def safe_torch_load(f: FileLike, map_location: MapLocation = None, *,
                    _torch_load: Optional[Callable[..., Any]] = None, **kwargs: Any) -> Any:
    """``torch.load(f, weights_only=True)`` after :func:`check_integrity`, allow-listing
    :func:`mmengine_safe_globals` for this read only.

    ``weights_only`` is passed explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` cannot turn
    the safe unpickler off. Raises :class:`UnsafeCheckpointError` (a ``pickle.UnpicklingError``)
    before any object of a file asking for more runs, :class:`CheckpointReadError` for an
    empty, truncated or damaged file; both name the file.
    """
    load = _torch_load or _ORIGINAL_LOAD
    check_integrity(f)
    name = _name(f)
    try:
        with torch.serialization.safe_globals(mmengine_safe_globals()):
            return load(f, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(f'{name}: refused by the weights-only loader. {e}\n'
                                    f'{TRUSTED_LOAD_HINT}') from None
    except (EOFError, zipfile.BadZipFile) as e:
        raise CheckpointReadError(f'checkpoint {name} is truncated or damaged ({type(e).__name__}'
                                  f': {e}); fetch or copy it again') from e
    except RuntimeError as e:
        if 'PytorchStreamReader' in str(e) or 'zip archive' in str(e):
            raise CheckpointReadError(f'checkpoint {name} is truncated or damaged ({e}); fetch '
                                      'or copy it again') from e
        raise


_ORIGINAL_LOAD = torch.load
_LOCK = threading.RLock()
_DEPTH = [0]


def _gated_load(f, map_location=None, pickle_module=None, *, weights_only=None, **kwargs):
    """``torch.load`` inside :func:`safe_loading`: always :func:`safe_torch_load`; an official
    classification file comes back in the toolbox layout
    (:func:`mmdwnet.converters.loading.relocate_official_classifier`)."""
    if pickle_module is not None and pickle_module is not pickle:
        raise UnsafeCheckpointError(f'{_name(f)}: a custom pickle_module ({pickle_module!r}) is '
                                    f'refused inside mmdwnet.utils.safe_loading(). '
                                    f'{TRUSTED_LOAD_HINT}')
    from mmdwnet.converters.loading import relocate_official_classifier
    return relocate_official_classifier(safe_torch_load(f, map_location, **kwargs))


_gated_load.mmdwnet_gate = True


@contextlib.contextmanager
def safe_loading() -> Iterator[None]:
    """Inside, every ``torch.load`` of the process reads weights only, CRC-checked.

    Covers every path that ends in ``torch.load``: all of mmengine's ``CheckpointLoader`` schemes
    (local files, ``http(s)://``, ``torchvision://``, ``modelzoo://``, ``open-mmlab://``,
    ``mmcls://``, ``pavi://``, ``s3://`` and any registered later), the torch hub cache, resume
    files and the toolboxes' model builders. Re-entrant and thread-safe; ``torch.load`` is
    restored on exit. Usage::

        from mmdwnet.utils import safe_loading
        with safe_loading():
            model = mmpretrain.get_model(cfg, pretrained='torchvision://resnet50')
    """
    with _LOCK:
        if _DEPTH[0] == 0:
            global _ORIGINAL_LOAD
            if not getattr(torch.load, 'mmdwnet_gate', False):
                _ORIGINAL_LOAD = torch.load
            torch.load = _gated_load
        _DEPTH[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0 and torch.load is _gated_load:
                torch.load = _ORIGINAL_LOAD


def is_safe_loading() -> bool:
    """Whether :func:`safe_loading` is active."""
    return _DEPTH[0] > 0 and torch.load is _gated_load

