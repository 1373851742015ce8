"""Registries of mmdwnet.

mmdwnet is a plugin for three toolboxes at once (mmpretrain, mmdet, mmseg).  Its modules are
registered twice:

* into the ``mmdwnet`` scope registry (a child of mmengine's root ``MODELS``), so that scoped
  names such as ``type='mmdwnet.DWNet'`` resolve from any default scope;
* into mmengine's root ``MODELS`` registry -- where mmcv registers its layers (``BN``, ``GELU``,
  ``SyncBN``...) for the same reason -- so that plain ``type='DWNet'`` resolves under the default
  scope ``mmpretrain``, ``mmdet``, ``mmseg`` and with no default scope, since every toolbox
  registry searches its parents.
"""
import contextlib
import difflib
import re
from typing import Iterable, List

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmdwnet', locations=['mmdwnet.models'])


def register_model(cls=None, *, name=None):
    """Register ``cls`` into the mmdwnet scope and into mmengine's root model registry."""

    def _register(module_cls):
        MODELS.register_module(name=name, module=module_cls)
        MMENGINE_MODELS.register_module(name=name, module=module_cls)
        return module_cls

    return _register(cls) if cls is not None else _register


def close_matches(word: str, choices: Iterable[str], n: int = 5,
                  cutoff: float = 0.5) -> List[str]:
    """The ``n`` entries of ``choices`` closest to ``word`` (for "did you mean" messages); the one
    close-name helper of the package."""
    return difflib.get_close_matches(word, sorted(choices), n=n, cutoff=cutoff)


def registered_names():
    """Names this package registers (sorted)."""
    return sorted(MODELS.module_dict)


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
    candidates = set(MODELS.module_dict) | set(MMENGINE_MODELS.module_dict)
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
