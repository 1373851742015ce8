"""Building spatial mixers with the context the backbone knows (:class:`MixerContext`)."""
import copy
import inspect
from typing import Any, Optional

import torch.nn as nn

from mmdwnet.registry import close_matches, registered_names
from ..checks import divisible_or_raise  # noqa: F401  (re-exported for the mixers)
from .base import MIXERS, MixerContext

# Keyword arguments the backbone offers every mixer (the fields of MixerContext).  A mixer
# receives those its ``__init__`` names; everything in the user's mixer config is passed as
# given (so a typo raises).
CONTEXT_KEYS = MixerContext.keys()


def build_mixer(cfg: dict, context: Optional[MixerContext] = None, **kwargs: Any) -> nn.Module:
    """Build a mixer from ``cfg`` with the backbone's context it accepts.

    Args:
        cfg (dict): mixer config, e.g. ``dict(type='DWConv', kernel_size=7)``; ``type`` is a
            name registered in :data:`MIXERS` (or mmdwnet's ``MODELS``), or a class.
        context (MixerContext | None): where the mixer sits; its fields that the mixer's
            ``__init__`` names and the config does not set are passed.
        **kwargs: the context as keywords instead (any of :data:`CONTEXT_KEYS`).

    Returns:
        nn.Module: mixer mapping (B, H, W, C) to (B, H, W, C).

    Raises:
        TypeError: ``cfg`` is not a dict; KeyError: unknown type (with the close names).
    """
    if not isinstance(cfg, dict):
        hint = f" Use dict(type={cfg!r})." if isinstance(cfg, str) else ''
        raise TypeError(f'a mixer config must be a dict such as dict(type=\'DWConv\', '
                        f'kernel_size=7), got {cfg!r}.{hint}')
    unknown = set(kwargs) - set(CONTEXT_KEYS)
    if unknown:
        raise TypeError(f'build_mixer: unknown context keys {sorted(unknown)}; the context is '
                        f'{list(CONTEXT_KEYS)}')
    offered = context.as_dict() if context is not None else {}
    offered.update(kwargs)
    cfg = copy.deepcopy(cfg)
    mixer_type = cfg.get('type')
    mixer_cls = MIXERS.get(mixer_type) if isinstance(mixer_type, str) else mixer_type
    if not isinstance(mixer_cls, type):
        known = sorted(set(MIXERS.module_dict) | set(registered_names()))
        key = mixer_type.rpartition('.')[2] if isinstance(mixer_type, str) else repr(mixer_type)
        raise KeyError(f'{mixer_type!r} is not a registered mmdwnet module. Close names: '
                       f'{close_matches(key, known, cutoff=0.4) or "none"}; mixers: '
                       f'{sorted(MIXERS.module_dict)}. A mixer defined outside mmdwnet is '
                       'registered with @MIXERS.register_module() in a module named in the '
                       "config's custom_imports.")
    params = inspect.signature(mixer_cls.__init__).parameters
    for key, value in offered.items():
        if key in params and key not in cfg:
            cfg[key] = value
    cfg['type'] = mixer_cls  # resolved here: the default scope's registry may not know it
    return MIXERS.build(cfg)
