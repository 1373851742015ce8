"""Parameters and FLOPs of a config's model at the input size the config uses.

FLOPs are multiply-accumulates (as the paper and the official code count them), counted by
:func:`mmdwnet.analysis.count_flops` (mmengine's analyzer with mmdwnet's op handles); detectors
and segmentors go through :mod:`mmdwnet.analysis.det_flops` / :mod:`~mmdwnet.analysis.seg_flops`.

Input size (``shape=None``):

* classification (default scope ``mmpretrain``): the size the config evaluates at -- the
  ``CenterCrop`` / ``Resize`` of the test (or val) pipeline, else the ``RandomResizedCrop`` of
  the train pipeline (pre-training configs without a test set), else the backbone's
  ``img_size``, else 224x224; e.g. 384x384 for the Table 14 fine-tuned models;
* detection: 1280x800, segmentation: 2048x512 (the paper's Table 3 conventions).
"""
import importlib
from typing import Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config

from .complexity import check_convention, count_flops, count_params

# (H, W) per default scope: detectors and segmentors at the paper's sizes, classifiers' fallback
DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmdet': (800, 1280), 'mmseg': (512, 2048)}
# scope -> module with ``model_flops(model, (H, W)) -> int`` for that toolbox's models
TASK_COUNTERS = {'mmdet': 'mmdwnet.analysis.det_flops', 'mmseg': 'mmdwnet.analysis.seg_flops'}


class _ClsTensor(torch.nn.Module):
    """``model(x, mode='tensor')`` as a plain module for tracing."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x, mode='tensor')


def _pair(size) -> Tuple[int, int]:
    """An mmpretrain size (int: square; (w, h) tuple/list as its transforms take) -> (H, W)."""
    if isinstance(size, int):
        return (size, size)
    w, h = size
    return (int(h), int(w))


def _pipeline_size(pipeline, kinds) -> Optional[Tuple[int, int]]:
    """(H, W) of the last transform of a type in ``kinds`` (type -> size key) in ``pipeline``."""
    size = None
    for transform in pipeline or []:
        key = kinds.get(transform.get('type') if isinstance(transform, dict) else None)
        if key is not None and transform.get(key) is not None:
            size = _pair(transform[key])
    return size


def _loader_pipeline(cfg, name):
    loader = cfg.get(name) or {}
    dataset = loader.get('dataset') or {}
    while 'pipeline' not in dataset and isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']  # wrappers such as RepeatDataset
    return dataset.get('pipeline')


def input_shape(config: Union[str, Config]) -> Tuple[int, int]:
    """(H, W) a config's model is counted at (see the module docstring)."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    scope = cfg.get('default_scope', None)
    if scope in ('mmdet', 'mmseg'):
        return DEFAULT_SHAPES[scope]
    test_kinds = {'CenterCrop': 'crop_size', 'Resize': 'scale'}
    for loader in ('test_dataloader', 'val_dataloader'):
        size = _pipeline_size(_loader_pipeline(cfg, loader), test_kinds)
        if size is not None:
            return size
    size = _pipeline_size(_loader_pipeline(cfg, 'train_dataloader'),
                          {'RandomResizedCrop': 'scale'})
    if size is not None:
        return size
    img_size = ((cfg.get('model') or {}).get('backbone') or {}).get('img_size')
    return _pair(img_size) if img_size is not None else DEFAULT_SHAPES['mmpretrain']


def model_complexity(config: Union[str, Config],
                     shape: Optional[Sequence[int]] = None,
                     convention: str = 'all') -> dict:
    """Count a config's model.

    Args:
        config (str | Config): the config (its default scope picks the counter).
        shape (Sequence[int] | None): (H, W) to count at; None: :func:`input_shape`.
        convention (str): ``'all'`` (every product, the default) or ``'modules'`` (what a
            module-hook counter sees), see :mod:`mmdwnet.analysis.complexity`.

    Returns:
        dict: ``params``, ``flops`` (multiply-accumulates), ``shape`` (H, W) and ``scope``.
    """
    from mmdwnet.apis import init_model
    check_convention(convention)
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    scope = cfg.get('default_scope', None)
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f'shape must be (H, W) with positive sizes, got {shape}')
    else:
        shape = input_shape(cfg)
    model = init_model(cfg)
    if scope in TASK_COUNTERS:
        flops = importlib.import_module(TASK_COUNTERS[scope]).model_flops(
            model, shape, convention=convention)
    elif scope == 'mmpretrain':
        flops = count_flops(_ClsTensor(model), (3, *shape), convention=convention)
    else:  # a bare backbone
        flops = count_flops(model, (3, *shape), convention=convention)
    return dict(params=count_params(model), flops=flops, shape=shape, scope=scope)
