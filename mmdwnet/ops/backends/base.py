"""The backend base class, the registry and the per-call choice of a backend.

A backend is a :class:`Backend` subclass with a ``name`` (never a device name), the
``devices`` it runs on, a ``priority`` (higher wins under ``auto``) and methods named after
the ops of :mod:`mmdwnet.ops.spec`, taking the ops' own arguments in the ops' order
(``local_aggregate(x, weight)``, ``local_correlate(q, k_map, kernel_size, groups)``, ...).  It
implements what it has; every op it lacks runs on the pure-PyTorch ``reference`` backend.
Results may have any strides, and a backward op may return None for the gradient of an absent
bias: :mod:`mmdwnet.ops.library` brings every result to the op's layout.

:func:`register_backend` adds one (third-party backends too).  :func:`select` picks the
backend of one op call from the switch :func:`ops_backend` (``MMDWNET_OPS_BACKEND``, or
:func:`use_ops_backend` per thread):

* ``auto`` (default): the available backend of highest priority whose ``devices`` hold the
  tensors' device and that implements the op and supports the tensors; else ``reference``;
* a backend name (or an alias, :data:`ALIASES`: ``torch``, ``cpu``): that backend; an op it
  does not implement or tensors it does not support run on ``reference``; a backend that is not
  available raises a ``RuntimeError`` saying so.

Built-in backends: ``reference`` (pure PyTorch, any device), ``openmp`` (compiled C/OpenMP
kernels, CPU float32), ``triton`` (Triton kernels, CUDA; imported on first use).
"""
import importlib
import os
from typing import ContextManager, Dict, Optional, Sequence, Tuple

from torch import Tensor

from mmdwnet.utils.thread_switch import ThreadSwitch

__all__ = ['Backend', 'PrimitiveBackend', 'register_backend', 'unregister_backend', 'get',
           'select', 'ALIASES', 'backend_names', 'ops_backend', 'use_ops_backend']

#: ``MMDWNET_OPS_BACKEND`` values of earlier versions, kept as aliases of the backends' names
ALIASES: Dict[str, str] = {'torch': 'reference', 'cpu': 'openmp'}
#: built-in backends imported on first use (Triton's import is slow and may be absent)
_LAZY: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    'triton': ('mmdwnet.ops.backends.triton', ('cuda', )),
}
_registry: Dict[str, 'Backend'] = {}
_BACKEND = ThreadSwitch()


class Backend:
    """Base class of the ops backends (see the module docstring).

    Subclasses set :attr:`name`, :attr:`devices`, :attr:`priority` (and :attr:`dtypes` to
    restrict dtypes), override :meth:`available` / :meth:`supports` where needed, and define
    methods named after the ops they implement, with the ops' arguments.
    """

    #: unique name, not a device name (``MMDWNET_OPS_BACKEND=<name>``)
    name: str = ''
    #: device types the backend runs on (``'cpu'``, ``'cuda'``, ...); empty: any device
    devices: Tuple[str, ...] = ()
    #: choice order under ``auto`` among the backends of a device (higher first)
    priority: int = 0
    #: dtypes it takes (None: any)
    dtypes: Optional[Tuple] = None

    def available(self) -> bool:
        """Whether the backend can run at all here (built / importable / device present)."""
        return True

    def supports(self, *tensors: Optional[Tensor]) -> bool:
        """Whether it takes these tensors (``None`` ignored): device and dtype."""
        return all(t is None or ((not self.devices or t.device.type in self.devices) and
                                 (self.dtypes is None or t.dtype in self.dtypes))
                   for t in tensors)

    def implements(self, op: str) -> bool:
        """Whether the backend has its own implementation of op ``op``."""
        return callable(getattr(self, op, None))

    def require(self, *tensors: Optional[Tensor]) -> None:
        """Raise a ``RuntimeError`` saying why, if the backend was requested by name but
        cannot run here."""
        if not self.available():
            raise RuntimeError(f'MMDWNET_OPS_BACKEND={self.name} was requested but that backend '
                               'is not available here; use auto or reference')

    def __repr__(self) -> str:
        return f'<mmdwnet ops backend {self.name!r}>'


class PrimitiveBackend(Backend):
    """A backend built from a module of primitives (the built-in backends' kernel modules):
    ``aggregate(x, w, k)``, ``scatter(g, w, k)``, ``correlate(g, x, groups, k)``,
    ``aggregate_pointwise(x, feat, w2d, bias, groups, k)`` (+ ``_backward(grad, ...)``),
    ``dynamic_depthwise(x, kernels, bias)`` (+ ``_backward(grad, ...)``).  Each op method
    calls its primitive; an op whose primitive the module lacks is not implemented (it runs on
    the reference backend)."""

    #: the module of primitives
    primitives = None
    _PRIMITIVE = {'local_aggregate': 'aggregate', 'local_scatter': 'scatter',
                  'local_correlate': 'correlate',
                  'local_aggregate_pointwise': 'aggregate_pointwise',
                  'local_aggregate_pointwise_backward': 'aggregate_pointwise_backward',
                  'dynamic_depthwise_conv2d': 'dynamic_depthwise',
                  'dynamic_depthwise_conv2d_backward': 'dynamic_depthwise_backward'}

    def implements(self, op: str) -> bool:
        return op in self._PRIMITIVE and hasattr(self.primitives, self._PRIMITIVE[op])

    def local_aggregate(self, x: Tensor, weight: Tensor) -> Tensor:
        return self.primitives.aggregate(x, weight.contiguous(), weight.shape[2])

    def local_scatter(self, grad: Tensor, weight: Tensor) -> Tensor:
        return self.primitives.scatter(grad, weight.contiguous(), weight.shape[2])

    def local_correlate(self, q: Tensor, k_map: Tensor, kernel_size: int, groups: int) -> Tensor:
        return self.primitives.correlate(q, k_map, groups, kernel_size)

    def local_aggregate_pointwise(self, x: Tensor, feat: Tensor, weight: Tensor,
                                  bias: Optional[Tensor], groups: int,
                                  kernel_size: int) -> Tensor:
        return self.primitives.aggregate_pointwise(x, feat, weight.reshape(weight.shape[0], -1),
                                                   bias, groups, kernel_size)

    def local_aggregate_pointwise_backward(
            self, grad: Tensor, x: Tensor, feat: Tensor, weight: Tensor, bias: Optional[Tensor],
            groups: int, kernel_size: int
    ) -> Tuple[Optional[Tensor], ...]:
        gx, gf, gw, gb = self.primitives.aggregate_pointwise_backward(
            grad, x, feat, weight.reshape(weight.shape[0], -1), bias, groups, kernel_size)
        return gx, gf.view(feat.shape), gw.view(weight.shape), gb

    def dynamic_depthwise_conv2d(self, x: Tensor, kernels: Tensor,
                                 bias: Optional[Tensor]) -> Tensor:
        return self.primitives.dynamic_depthwise(x, kernels, bias)

    def dynamic_depthwise_conv2d_backward(
            self, grad: Tensor, x: Tensor, kernels: Tensor, bias: Optional[Tensor]
    ) -> Tuple[Optional[Tensor], ...]:
        return self.primitives.dynamic_depthwise_backward(grad, x, kernels, bias)


def register_backend(backend: Backend, replace: bool = False) -> Backend:
    """Add ``backend`` (an instance) to the registry; returns it.

    Raises:
        ValueError: the name is empty, a device name, an alias, or taken (unless ``replace``).
    """
    name = backend.name
    if not name or name in ('auto', 'cpu', 'cuda', 'mps', 'xpu', 'meta') or name in ALIASES:
        raise ValueError(f'an ops backend needs a name that is not auto, a device name or an '
                         f'alias ({", ".join(ALIASES)}); got {name!r}')
    if name in _registry and not replace and _registry[name] is not backend:
        raise ValueError(f'an ops backend named {name!r} is already registered '
                         '(register_backend(..., replace=True) replaces it)')
    _registry[name] = backend
    _by_device.clear()
    return backend


def unregister_backend(name: str) -> Optional[Backend]:
    """Remove the backend called ``name`` from the registry (not ``reference``); returns it."""
    if name == 'reference':
        raise ValueError('the reference backend cannot be removed: it runs every op the others '
                         'do not implement')
    _by_device.clear()
    return _registry.pop(name, None)


def _load(name: str) -> None:
    if name in _LAZY and name not in _registry:
        register_backend(importlib.import_module(_LAZY[name][0]).BACKEND)


def get(name: str) -> Optional[Backend]:
    """The backend called ``name`` (or an alias of it); None if it cannot be imported (Triton
    not installed) or no such backend exists."""
    name = ALIASES.get(name, name)
    try:
        _load(name)
    except ImportError:
        return None
    return _registry.get(name)


def backend_names() -> Tuple[str, ...]:
    """Every value ``MMDWNET_OPS_BACKEND`` takes: auto, the backends, their aliases."""
    return ('auto', *_registry, *(n for n in _LAZY if n not in _registry), *ALIASES)


def _check_name(name: str, source: str) -> str:
    if name in _registry or name in ALIASES or name == 'auto':
        return name
    if name not in backend_names():
        raise ValueError(f'{source}={name!r} is not a known ops backend; use one of '
                         f'{", ".join(backend_names())}')
    return name


def ops_backend() -> str:
    """The requested ops backend: a thread's override, else ``MMDWNET_OPS_BACKEND``, else auto.

    Raises:
        ValueError: the name is no known backend.
    """
    name = _BACKEND.value
    if name is not None:
        return name
    name = os.environ.get('MMDWNET_OPS_BACKEND', 'auto').strip().lower() or 'auto'
    return _check_name(name, 'MMDWNET_OPS_BACKEND')


def use_ops_backend(name: Optional[str]) -> ContextManager[None]:
    """Run the ops of this thread on backend ``name`` (``None``: back to the environment)."""
    if name is not None:
        _check_name(name, 'use_ops_backend: name')
    return _BACKEND.override(name)


_by_device: Dict[Tuple[str, str], Tuple[Backend, ...]] = {}


def _candidates(op: str, device: str) -> Sequence[Backend]:
    """The backends of ``device`` that implement ``op``, by priority (cached; the cache is
    dropped on registration)."""
    found = _by_device.get((op, device))
    if found is None:
        for name, (_, devices) in list(_LAZY.items()):
            if device in devices and name not in _registry:
                try:
                    _load(name)
                except ImportError:
                    _LAZY.pop(name)  # not installed: never try again
        found = tuple(sorted((b for b in _registry.values()
                              if (not b.devices or device in b.devices) and b.implements(op)),
                             key=lambda b: -b.priority))
        _by_device[(op, device)] = found
    return found


def select(op: str, *tensors: Optional[Tensor]) -> Backend:
    """The backend that runs op ``op`` on ``tensors`` (None entries are ignored)."""
    tensors = [t for t in tensors if t is not None]
    reference = _registry['reference']
    name = ops_backend()
    if name == 'auto':
        for backend in _candidates(op, tensors[0].device.type):
            if backend.supports(*tensors) and backend.available():
                return backend
        return reference
    backend = get(name)
    if backend is None:
        raise RuntimeError(f'MMDWNET_OPS_BACKEND={name} was requested but that backend cannot '
                           'be imported here (is its package installed?); use auto or reference')
    backend.require(*tensors)
    return backend if backend.implements(op) and backend.supports(*tensors) else reference
