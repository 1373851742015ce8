"""Constructor argument checks of the backbone, presets, blocks and mixers.

Every check raises at construction with the argument's name, the value given and what is
allowed: ``TypeError`` for a value of the wrong kind (``kernel_size='seven'``, ``7.0``),
``ValueError`` for a value of the right kind out of range (``drop_path_rate=1.5``).  Each returns
the value, so ``self.k = check_int('kernel_size', k, owner='DWConv')`` reads as one step.

Example:
    >>> from mmdwnet.models.checks import check_int, check_rate
    >>> check_int('window_size', 7, owner='SwinNet')
    7
    >>> check_rate('drop_path_rate', 1.5, owner='DWNet')
    Traceback (most recent call last):
    ...
    ValueError: DWNet: drop_path_rate=1.5 is not allowed; it must be a number in [0, 1)
"""
import math
import numbers
from typing import Any, Optional, Sequence

__all__ = ['check_int', 'check_rate', 'check_positive', 'check_bool', 'check_cfg',
           'check_pair', 'divisible_or_raise']


def _prefix(owner: Optional[str], stage: Optional[int] = None) -> str:
    where = f' (stage {stage})' if stage is not None else ''
    return f'{owner}{where}: ' if owner else (f'stage {stage}: ' if stage is not None else '')


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, minimum: int = 1, odd: bool = False,
              owner: Optional[str] = None, stage: Optional[int] = None) -> int:
    """``value`` as an int ``>= minimum`` (and odd if ``odd``); raise otherwise."""
    allowed = f'an int >= {minimum}' + (' and odd' if odd else '')
    if not _is_int(value):
        raise TypeError(f'{_prefix(owner, stage)}{name}={value!r} is not allowed; it must be '
                        f'{allowed}, got a {type(value).__name__}')
    if value < minimum or (odd and value % 2 == 0):
        raise ValueError(f'{_prefix(owner, stage)}{name}={value!r} is not allowed; it must be '
                         f'{allowed}')
    return int(value)


def check_rate(name: str, value: Any, *, owner: Optional[str] = None, why: str = '') -> float:
    """A probability-like rate in [0, 1): dropout, drop path."""
    if not _is_number(value):
        raise TypeError(f'{_prefix(owner)}{name}={value!r} is not allowed; it must be a number '
                        f'in [0, 1), got a {type(value).__name__}')
    if not 0 <= value < 1:  # also rejects NaN
        raise ValueError(f'{_prefix(owner)}{name}={value!r} is not allowed; it must be a number '
                         f'in [0, 1){why}')
    return float(value)


def check_positive(name: str, value: Any, *, owner: Optional[str] = None,
                   allow_none: bool = False) -> Any:
    """A finite number > 0 (or None when ``allow_none``)."""
    if value is None and allow_none:
        return None
    allowed = 'a number > 0' + (' or None' if allow_none else '')
    if not _is_number(value):
        raise TypeError(f'{_prefix(owner)}{name}={value!r} is not allowed; it must be {allowed}, '
                        f'got a {type(value).__name__}')
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f'{_prefix(owner)}{name}={value!r} is not allowed; it must be {allowed}')
    return value


def check_bool(name: str, value: Any, *, owner: Optional[str] = None) -> bool:
    """True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f'{_prefix(owner)}{name}={value!r} is not allowed; it must be True or '
                        f'False, got a {type(value).__name__}')
    return value


def check_cfg(name: str, value: Any, *, owner: Optional[str] = None,
              allow_none: bool = False) -> Optional[dict]:
    """A config dict with a ``type`` (or None when ``allow_none``); the ``type`` of a norm
    config (``name`` contains 'norm') must be a registered norm layer."""
    if value is None and allow_none:
        return None
    if not isinstance(value, dict) or 'type' not in value:
        example = ' or None' if allow_none else ''
        hint = f"; use dict(type={value!r})" if isinstance(value, str) else ''
        raise TypeError(f"{_prefix(owner)}{name}={value!r} is not allowed; it must be a config "
                        f"dict with a 'type', e.g. dict(type='LN'){example}{hint}")
    if 'norm' in name:
        from .norms import check_norm_type  # norms import the registry, which imports models
        check_norm_type(value['type'], f'{_prefix(owner)}{name}')
    return value


def check_pair(name: str, value: Any, *, owner: Optional[str] = None) -> tuple:
    """An int or a pair of ints, each >= 1, returned as a pair."""
    pair = (value, value) if _is_int(value) else value
    if (not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2
            or not all(_is_int(v) and v >= 1 for v in pair)):
        raise ValueError(f'{_prefix(owner)}{name}={value!r} is not allowed; it must be an int '
                         '>= 1 or a pair (H, W) of them')
    return tuple(int(v) for v in pair)


def divisible_or_raise(what: str, total: int, part: Any, stage: Optional[int] = None,
                       hint: str = '') -> None:
    """Raise naming the stage and numbers unless ``part`` is a positive int dividing ``total``."""
    where = f' in stage {stage}' if stage is not None else ''
    if not _is_int(part):
        raise TypeError(f'{what}{where}: {part!r} is not allowed; it must be a positive int '
                        f'dividing {total}, got a {type(part).__name__}')
    if part <= 0 or total % part != 0:
        raise ValueError(f'{what}{where}: {part} does not divide {total}. {hint}'.strip())


def check_batch_statistics(norm: Any, x: Any, owner: str) -> None:
    """Raise a ValueError when a training BatchNorm ``norm`` gets one value per channel in ``x``
    (N, C, *) -- e.g. a batch of one image after global pooling -- with what to do about it.
    (PyTorch's own message, "Expected more than 1 value per channel", does not say where or
    why.) Does nothing for other norms or in eval mode."""
    from torch.nn.modules.batchnorm import _BatchNorm
    bn = getattr(norm, 'bn', norm)  # CCBN holds its BN as a child
    if not (isinstance(bn, _BatchNorm) and bn.training):
        return
    if x.numel() // max(x.shape[1], 1) <= 1:
        raise ValueError(
            f'{owner}: its BatchNorm normalises over the batch, and this training batch holds '
            f'one value per channel (input {tuple(x.shape)}: a batch of one image). Train with '
            'batches of at least 2 images -- set drop_last=True in train_dataloader when the '
            'data set size leaves a last batch of 1 (the configs of this repository do) -- '
            "or use a norm that works per sample, e.g. norm_cfg=dict(type='GN', num_groups=1)")
