"""What the benchmarks measure: the model list, targets and roofline settings as data.

Everything here is read from ``docs/benchmark_targets.yml`` (:func:`load_suite`): a model is an
entry with a config file (or an inline model dict), so adding a model, or a mixer defined outside
mmdwnet, is a new YAML entry -- or a dict passed to these functions -- never a code edit.
"""
import copy
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TARGETS_FILE = osp.join(REPO, 'docs', 'benchmark_targets.yml')
NOTES_FILE = osp.join(REPO, 'docs', 'benchmark_notes.md')

__all__ = ['load_suite', 'custom_suite', 'model_labels', 'model_cfg', 'build_model',
           'build_backbone',
           'REPO', 'TARGETS_FILE', 'NOTES_FILE']


def load_suite(path: str = TARGETS_FILE) -> dict:
    """The benchmark suite (models, targets, roofline settings) of ``path``."""
    import yaml
    with open(path) as f:
        suite = yaml.safe_load(f)
    if not isinstance(suite, dict) or 'models' not in suite:
        raise ValueError(f'{path}: not a benchmark suite (a YAML mapping with a `models` key)')
    return suite


def custom_suite(models: dict, base: Optional[dict] = None) -> dict:
    """A suite whose roofline measures ``models`` (name -> entry: ``label`` and ``config`` path
    or inline mmpretrain ``model`` dict, optional ``seg_config`` / ``det_config`` /
    ``ops_backend``), with the settings of ``base`` (default: the repository's suite); the
    entries are added to ``base``'s models, and targets keep applying by name.

    >>> suite = custom_suite({'mine': dict(label='My-T', config='my_config.py')})
    >>> run_roofline(suite)  # mmdwnet.benchmark.run_roofline
    """
    suite = copy.deepcopy(base or load_suite())
    for name, entry in models.items():
        if not isinstance(entry, dict) or not ({'config', 'model'} & set(entry)):
            raise ValueError(f'model {name!r}: an entry needs `config` (a config path) or '
                             f'`model` (an mmpretrain model dict), got {entry!r}')
        suite['models'][name] = dict(entry, label=entry.get('label', name))
    suite['roofline']['models'] = list(models)
    return suite


def model_labels(suite: Optional[dict] = None) -> dict:
    """name -> label of every model of ``suite`` (default: the repository's)."""
    suite = suite or load_suite()
    return {name: entry['label'] for name, entry in suite['models'].items()}


def _config(path: str):
    from mmengine.config import Config
    full = path if osp.isabs(path) else osp.join(REPO, path)
    if not osp.isfile(full):
        raise FileNotFoundError(f'benchmark config {path} not found (looked at {full}); fix '
                                'the path in the suite (docs/benchmark_targets.yml)')
    return Config.fromfile(full)


def _plain(cfg) -> dict:
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    return copy.deepcopy(cfg)


def model_cfg(entry: dict, img_size: Union[int, Sequence[int]] = 224,
              arch: Optional[dict] = None) -> dict:
    """The mmpretrain classifier dict of a suite entry (``config`` or inline ``model``) at
    ``img_size``; ``arch`` (an arch dict) shrinks the backbone for quick runs."""
    if 'model' in entry:
        cfg = _plain(entry['model'])
    elif 'config' in entry:
        cfg = _plain(_config(entry['config']).model)
        cfg.pop('train_cfg', None)  # Mixup/CutMix live in the data preprocessor; not timed
    else:
        raise ValueError(f'benchmark model entry {entry!r} has neither `config` nor `model`')
    cfg['backbone']['img_size'] = img_size if isinstance(img_size, int) else tuple(img_size)
    if arch is not None:
        cfg['backbone']['arch'] = dict(arch)
        cfg['head']['in_channels'] = arch['embed_dims'] * 2**(len(arch['depths']) - 1)
    return cfg


def _build(cfg: dict) -> nn.Module:
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmdwnet  # noqa: F401  (registers the models)
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(cfg)


def build_model(entry: dict, img_size: Union[int, Sequence[int]] = 224,
                arch: Optional[dict] = None, fused: bool = True) -> nn.Module:
    """The classifier of a suite entry in eval mode; ``fused``: after ``fuse_conv_bn``."""
    from mmcv.cnn import fuse_conv_bn
    model = _build(model_cfg(entry, img_size, arch))
    model.eval()
    if fused:
        fuse_conv_bn(model)
    return model


def build_backbone(entry: dict, part: str, img_size: Tuple[int, int],
                   arch: Optional[dict] = None, fused: bool = True) -> nn.Module:
    """The backbone of the entry's ``seg_config`` / ``det_config`` (``part`` 'seg' / 'det';
    pretrained ``init_cfg`` dropped), else its classifier's backbone with every stage out."""
    key = f'{part}_config'
    if key in entry:
        cfg = _plain(_config(entry[key]).model['backbone'])
        cfg.pop('init_cfg', None)
        cfg['img_size'] = tuple(img_size)
        if arch is not None:
            cfg['arch'] = dict(arch)
    else:
        cfg = model_cfg(entry, img_size, arch)['backbone']
        cfg['out_indices'] = (0, 1, 2, 3)
    from mmcv.cnn import fuse_conv_bn
    model = _build(cfg)
    model.eval()  # (mmpretrain's SwinTransformer.train returns None: no chaining)
    return fuse_conv_bn(model) if fused else model
