"""mmdwnet: local attention and (dynamic) depth-wise convolution mixers for OpenMMLab.

``import mmdwnet`` registers every mixer and backbone into the ``mmdwnet`` scope and into
mmengine's root model registry, so plain ``type='DWNet'`` builds under the default scopes
``mmpretrain``, ``mmdet``, ``mmseg`` and without one.
"""
from .version import __version__
from . import models  # noqa: F401  (registers the modules)
from . import engine  # noqa: F401  (registers CompileModulesHook)
from .analysis.complexity import register_handles
from .utils import inductor_compat
register_handles()  # mmengine's FLOP counter counts the mmdwnet ops
inductor_compat.install()  # torch.compile(dynamic=True) trains on CPU (see that module)

try:  # the classification dataset needs mmpretrain; without it the rest still works
    from . import datasets  # noqa: F401
    from .hub import register_models
    register_models()  # mmpretrain.get_model('<config name>'), list_models('*dwnet*')
    from . import evaluation  # noqa: F401  (ReaLAccuracy)
except ModuleNotFoundError as e:
    if (e.name or '').split('.')[0] != 'mmpretrain':
        raise

__all__ = ['__version__']
