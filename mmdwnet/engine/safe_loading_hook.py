"""The loading gate for runs that mmdwnet's tools do not start (the toolboxes' tools, ``mim``)."""
import functools
from typing import TYPE_CHECKING

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mmdwnet.converters.loading import attach_checkpoint_hooks
from mmdwnet.utils.torch_load import safe_loading

if TYPE_CHECKING:  # mmengine.runner is heavy; only the annotations need it
    from mmengine.runner import Runner


def _gated(method):
    """``method`` run inside :func:`mmdwnet.utils.safe_loading` (marked, so never twice)."""
    if getattr(method, 'mmdwnet_gated', False):
        return method

    @functools.wraps(method)
    def gated(*args, **kwargs):
        with safe_loading():
            return method(*args, **kwargs)

    gated.mmdwnet_gated = True
    return gated


@HOOKS.register_module()
class SafeLoadingHook(Hook):
    """Read every checkpoint of the run through :func:`mmdwnet.utils.safe_loading`.

    In ``before_run`` -- before the runner initialises the weights (``init_cfg`` Pretrained),
    loads ``load_from`` or resumes -- the runner's ``load_checkpoint`` and ``resume`` and the
    model's ``init_weights`` are replaced, on these instances only, by versions that run inside
    the gate: every checkpoint they read -- any URL scheme, the torch hub cache, resume files --
    is read weights-only and CRC-checked. Nothing process-wide changes and nothing outlives the
    call, even when it raises. ``tools/train.py`` and ``tools/test.py`` apply the gate
    themselves; this hook protects a run started by ``mim train mmpretrain CONFIG`` or a
    toolbox's own ``tools/train.py``. mmdwnet's classification runtime
    (``_base_/default_runtime.py``) lists it; other configs add::

        custom_hooks = [dict(type='SafeLoadingHook')]
    """

    priority = 'HIGHEST'

    def before_run(self, runner: 'Runner') -> None:
        runner.load_checkpoint = _gated(runner.load_checkpoint)
        runner.resume = _gated(runner.resume)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        attach_checkpoint_hooks(model)  # this instance only: head mapping, strict check
        if hasattr(model, 'init_weights'):
            model.init_weights = _gated(model.init_weights)
