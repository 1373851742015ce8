"""Fit a config's parameter schedulers into its training length before the runner builds them."""
import warnings
from typing import Any


def fit_schedulers_to_training(cfg: Any) -> None:
    """Clip schedulers that run past the end of training; drop those that would start after it.

    A run shortened from the recipe (``--cfg-options train_cfg.max_epochs=2`` with the
    20-epoch warm-up of the ImageNet schedules) would otherwise stop in mmengine's scheduler
    with ``end should be larger than begin`` for the phase after the warm-up. Each scheduler
    measured in the training's unit (epochs for ``by_epoch`` schedulers of an epoch-based
    run, iterations for iteration-based ones of an iteration-based run) whose ``end`` is past
    the end of training ends there instead, and one whose ``begin`` is at or past it is
    removed -- each with a warning that names it. ``cfg`` is changed in place.
    """
    schedulers = cfg.get('param_scheduler')
    train_cfg = cfg.get('train_cfg') or {}
    if not schedulers:
        return
    by_epoch = train_cfg.get('by_epoch', True) if 'type' not in train_cfg else \
        'max_epochs' in train_cfg
    length = train_cfg.get('max_epochs' if by_epoch else 'max_iters')
    if not isinstance(length, int):
        return
    unit = 'epoch' if by_epoch else 'iteration'
    single = isinstance(schedulers, dict)
    kept = []
    for sched in ([schedulers] if single else list(schedulers)):
        if sched.get('by_epoch', True) != by_epoch:
            kept.append(sched)  # another unit: its length is not known from the config
            continue
        name, begin = sched.get('type'), sched.get('begin', 0)
        if begin >= length:
            warnings.warn(f'param_scheduler {name} begins at {unit} {begin}, but training ends '
                          f'after {length} {unit}s: it is removed (shorten the earlier phases, '
                          f'e.g. the warm-up, or train longer)')
            continue
        if sched.get('end', length) > length:
            warnings.warn(f'param_scheduler {name} ends at {unit} {sched["end"]}, after the '
                          f'{length}-{unit} training: clipped to end at {unit} {length}')
            sched['end'] = length
        kept.append(sched)
    cfg['param_scheduler'] = (kept[0] if kept else []) if single else kept
