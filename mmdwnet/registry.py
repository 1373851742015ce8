"""Registries of mmdwnet.

mmdwnet is a plugin for three toolboxes at once (mmpretrain, mmdet, mmseg). Each module is
registered **once**, into mmengine's root ``MODELS`` registry -- where mmcv registers its layers
(``BN``, ``GELU``, ``SyncBN``...) for the same reason: mmengine's ``Registry.get`` looks a plain
name up in the registry of the current default scope and then in its parents only, and the root
is the one registry on the path of every scope (``mmpretrain``, ``mmdet``, ``mmseg``, any other,
and none). So plain ``type='DWNet'`` builds under any default scope and without one; no other
place would (a toolbox's own registry is not searched from the others or without a scope).

:data:`MODELS` is the ``mmdwnet`` scope node, a child of the root holding no entries of its own:
scoped names such as ``type='mmdwnet.DWNet'`` resolve through it (``Registry.get`` switches to the
``mmdwnet`` child, which finds the name in its parent, the root), and so does
``MODELS.build(...)``. ``import mmdwnet`` therefore adds to the root exactly
:func:`registered_names` and the ``mmdwnet`` child; it replaces nothing
(``tests/test_import_side_effects.py`` pins this).
"""
import contextlib
import difflib
import re
from typing import Iterable, List

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmdwnet', locations=['mmdwnet.models'])
_REGISTERED = {}  # name -> class, everything register_model put into the root registry


def register_model(cls=None, *, name=None):
    """Register ``cls`` (under ``name``, default its class name) into mmengine's root model
    registry, once; it resolves as ``'Name'`` in any default scope and as ``'mmdwnet.Name'``."""

    def _register(module_cls):
        MMENGINE_MODELS.register_module(name=name, module=module_cls)
        _REGISTERED[name or module_cls.__name__] = module_cls
        return module_cls

    return _register(cls) if cls is not None else _register


def close_matches(word: str, choices: Iterable[str], n: int = 5,
                  cutoff: float = 0.5) -> List[str]:
    """The ``n`` entries of ``choices`` closest to ``word`` (for "did you mean" messages); the one
    close-name helper of the package."""
    return difflib.get_close_matches(word, sorted(choices), n=n, cutoff=cutoff)


def registered_names():
    """Names this package registers (sorted)."""
    return sorted(_REGISTERED)


def registered_modules():
    """``{name: class}`` of everything this package registers."""
    return dict(_REGISTERED)


def build_model_checked(cfg, registry=MODELS, **default_args):
    """Build ``cfg`` from ``registry``; an unknown ``type`` fails with the closest known names."""
    type_name = cfg.get('type') if isinstance(cfg, dict) else None
    if isinstance(type_name, str):
        scope, _, key = type_name.rpartition('.')
        if registry.get(type_name) is None:
            known = registered_names()
            close = close_matches(key, known, cutoff=0.4)
            raise KeyError(f'{type_name!r} is not a registered mmdwnet module. '
                           f'Close names: {close or "none"}; all mmdwnet names: {known}.')
    return registry.build(cfg, default_args=default_args or None)


def close_names(name, scope=None, n=5):
    """Registered model names close to ``name`` in the ``scope`` registry, its parents and mmdwnet."""
    from mmengine.registry import DefaultScope
    candidates = set(MMENGINE_MODELS.module_dict)
    scope = scope or (DefaultScope.get_current_instance().scope_name
                      if DefaultScope.get_current_instance() else None)
    if scope and scope in MMENGINE_MODELS.children:
        candidates |= set(MMENGINE_MODELS.children[scope].module_dict)
    key = name.rpartition('.')[2]
    return close_matches(key, candidates, n=n)


_UNKNOWN = re.compile(r"^'?(?P<name>[\w.]+) is not in the (?P<scope>[\w]+)::(?P<reg>\w+) registry")


class UnknownModuleError(KeyError):
    """A config names a module type that no registry in scope knows."""

    def __str__(self):
        return str(self.args[0])


@contextlib.contextmanager
def explain_unknown_types():
    """Re-raise mmengine's "X is not in the registry" KeyError with the closest known names."""
    try:
        yield
    except KeyError as e:
        m = _UNKNOWN.match(str(e.args[0]) if e.args else '')
        if m is None or m.group('reg') != 'model':
            raise
        close = close_names(m.group('name'), m.group('scope'))
        raise UnknownModuleError(
            f"unknown model type {m.group('name')!r} (default scope {m.group('scope')!r}). "
            f"Close names: {close or 'none'}. mmdwnet registers: {registered_names()}; configs "
            "need custom_imports=dict(imports=['mmdwnet'], allow_failed_imports=False).") from e
