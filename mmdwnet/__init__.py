"""mmdwnet: local attention and (dynamic) depth-wise convolution mixers for OpenMMLab.

``import mmdwnet`` registers every mixer and backbone, once, into mmengine's root model registry,
so plain ``type='DWNet'`` builds under any default scope and without one, and ``'mmdwnet.DWNet'``
through the ``mmdwnet`` scope (see :mod:`mmdwnet.registry`); its hooks, dataset and metric
into the registries they belong to. Nothing else in the process changes: the workarounds are
applied explicitly where they are needed --

* the loading gate, :func:`mmdwnet.utils.safe_loading` (``tools/``, ``init_model``,
  ``SafeLoadingHook``; ``docs/security.md``);
* the inductor fix, :func:`mmdwnet.utils.inductor_compat.install` (``CompileModulesHook``);
* CPU distributed runs, :func:`mmdwnet.utils.cpu_ddp.cpu_ddp` (``tools/``);
* FLOP rules for mmengine's default table, :func:`mmdwnet.analysis.complexity.register_handles`.
"""
from .version import __version__
from . import models  # noqa: F401  (registers the modules)
from . import engine  # noqa: F401  (registers CompileModulesHook)

try:  # the classification dataset needs mmpretrain; without it the rest still works
    from . import datasets  # noqa: F401
    from .hub import register_models
    register_models()  # mmpretrain.get_model('<config name>'), list_models('*dwnet*')
    from . import evaluation  # noqa: F401  (ReaLAccuracy)
except ModuleNotFoundError as e:
    if (e.name or '').split('.')[0] != 'mmpretrain':
        raise

__all__ = ['__version__']
