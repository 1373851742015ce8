"""Building spatial mixers with the context the backbone knows (channels, heads, resolution)."""
import copy
import inspect

import torch.nn as nn

from mmdwnet.registry import MODELS, build_model_checked
from ..checks import divisible_or_raise  # noqa: F401  (re-exported for the mixers)

# Keyword arguments the backbone offers every mixer.  A mixer receives those its ``__init__``
# names; everything in the user's mixer config is passed as given (so a typo raises).
CONTEXT_KEYS = ('embed_dims', 'num_heads', 'input_resolution', 'shift', 'pad_to_window', 'stage')


def build_mixer(cfg: dict, **context) -> nn.Module:
    """Build a mixer from ``cfg`` with the backbone's ``context`` it accepts.

    Args:
        cfg (dict): mixer config, e.g. ``dict(type='DWConv', kernel_size=7)``.
        **context: any of :data:`CONTEXT_KEYS`.

    Returns:
        nn.Module: mixer mapping (B, H, W, C) to (B, H, W, C).
    """
    if not isinstance(cfg, dict):
        hint = f" Use dict(type={cfg!r})." if isinstance(cfg, str) else ''
        raise TypeError(f'a mixer config must be a dict such as dict(type=\'DWConv\', '
                        f'kernel_size=7), got {cfg!r}.{hint}')
    cfg = copy.deepcopy(cfg)
    mixer_cls = MODELS.get(cfg.get('type')) if isinstance(cfg.get('type'), str) else cfg.get('type')
    if mixer_cls is None:
        return build_model_checked(cfg)  # raises with close names
    params = inspect.signature(mixer_cls.__init__).parameters
    for key, value in context.items():
        if key in params and key not in cfg:
            cfg[key] = value
    return build_model_checked(cfg)
