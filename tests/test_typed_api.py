"""Issue 29: every public function and method of mmdwnet (the names in its modules' ``__all__``)
has annotated parameters and return type."""
import contextlib
import importlib
import inspect
import pkgutil
from typing import Iterator

import mmdwnet


def _public_functions():
    """(qualified name, function) of every function and method reachable from an ``__all__``."""
    seen = {}
    for info in pkgutil.walk_packages(mmdwnet.__path__, 'mmdwnet.'):
        if any(part.startswith('_') for part in info.name.split('.')[1:]):
            continue
        try:
            module = importlib.import_module(info.name)
        except ModuleNotFoundError as e:  # optional toolboxes (mmdet/mmseg/triton extras)
            if (e.name or '').split('.')[0] == 'mmdwnet':
                raise
            continue
        for attr in getattr(module, '__all__', []):
            obj = getattr(module, attr)
            if not str(getattr(obj, '__module__', '')).startswith('mmdwnet'):
                continue
            if inspect.isfunction(obj):
                seen[f'{obj.__module__}.{obj.__qualname__}'] = obj
            elif inspect.isclass(obj):
                for key, value in vars(obj).items():
                    if key.startswith('_') and key != '__init__':
                        continue
                    if isinstance(value, (staticmethod, classmethod)):
                        value = value.__func__
                    if isinstance(value, property):
                        value = value.fget
                    if inspect.isfunction(value) and value.__module__.startswith('mmdwnet'):
                        seen[f'{obj.__module__}.{value.__qualname__}'] = value
    return seen


def _missing(fn):
    sig = inspect.signature(fn)
    missing = [name for name, p in sig.parameters.items()
               if name not in ('self', 'cls') and p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append('return')
    return missing


def test_public_api_is_annotated():
    functions = _public_functions()
    assert len(functions) > 100  # the walk reached the package
    assert 'mmdwnet.models.mixers.builder.build_mixer' in functions
    untyped = {name: _missing(fn) for name, fn in functions.items() if _missing(fn)}
    assert not untyped, f'public functions without annotations: {untyped}'


def test_missing_finds_unannotated_parameters_and_return():
    """The check itself: what it must flag, also through ``contextlib.contextmanager``."""
    def bare(x, *args, y=1, **kwargs):
        return x

    def typed(x: int, *args: int, y: int = 1, **kwargs: int) -> int:
        return x

    @contextlib.contextmanager
    def bare_context():
        yield

    @contextlib.contextmanager
    def typed_context() -> Iterator[None]:
        yield

    assert _missing(bare) == ['x', 'args', 'y', 'kwargs', 'return']
    assert _missing(typed) == []
    assert _missing(bare_context) == ['return']
    assert _missing(typed_context) == []
