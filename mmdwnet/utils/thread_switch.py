"""A setting with a per-thread override: the shape of mmdwnet's switches (the ops' backend,
the dense layers' fast inference path, ONNX export keeping the operators)."""
import contextlib
import threading
from typing import Any, Iterator, Optional

__all__ = ['ThreadSwitch']


class ThreadSwitch:
    """A value that a context manager overrides in the current thread only.

    :attr:`value` is the innermost override active in this thread, or ``None`` outside every
    :meth:`override` (the caller then falls back to its own default, e.g. an environment
    variable read at every call, so that no switch has a process-wide side effect).
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def value(self) -> Optional[Any]:
        """The override active in this thread, else ``None``."""
        return getattr(self._local, 'value', None)

    @contextlib.contextmanager
    def override(self, value: Optional[Any]) -> Iterator[None]:
        """Within, in this thread, :attr:`value` is ``value`` (``None``: no override);
        re-entrant, the previous value is restored on exit."""
        previous = self.value
        self._local.value = value
        try:
            yield
        finally:
            self._local.value = previous
