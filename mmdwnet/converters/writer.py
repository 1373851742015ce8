"""Write a converted checkpoint and the config that rebuilds its model."""
import os.path as osp
import pprint
from pathlib import Path

import torch

from .official import UnrecognisedCheckpoint, convert_official, load_official

_PRESET_NAMES = {'DWNet': 'dwnet', 'DynamicDWNet': 'dynamic-dwnet',
                 'IDynamicDWNet': 'i-dynamic-dwnet', 'SwinNet': 'swin'}
_SIZES = {(96, (2, 2, 6, 2)): 'tiny', (96, (2, 2, 18, 2)): 'small', (128, (2, 2, 18, 2)): 'base'}
REPO_CONFIGS = Path(__file__).resolve().parents[2] / 'configs'


def _config_dir():
    """configs/ of the source tree, or the copy shipped in the package (``.mim``)."""
    mim = Path(__file__).resolve().parents[1] / '.mim' / 'configs'
    return REPO_CONFIGS if REPO_CONFIGS.is_dir() else mim


def _backbone_dict(info, downstream):
    bb = dict(info['backbone'])
    out = dict(type=bb.pop('type'), arch=bb.pop('arch'))
    out.update(bb)
    out['drop_path_rate'] = 0.
    if downstream:
        out['out_indices'] = info['out_indices']
        out['out_norm_cfg'] = dict(type=info['out_norm'])
        out['pad_to_window'] = True
    return out


def _py(name, value):
    return f'{name} = {pprint.pformat(value, indent=1, width=96, sort_dicts=False)}\n'


def matching_config(info, task):
    """Path of the repo config whose model matches a converted whole detector/segmentor."""
    bb = info['backbone']
    size = _SIZES.get((bb['arch']['embed_dims'], tuple(bb['arch']['depths'])))
    name = _PRESET_NAMES.get(bb['type'])
    if size is None or name is None:
        raise UnrecognisedCheckpoint(f'no mmdwnet {task} config for a {bb["type"]} with arch '
                                     f'{bb["arch"]}; convert the backbone alone instead')
    if task == 'detection':
        fname = f'cascade-mask-rcnn_{name}-{size}_fpn_giou-4conv1f_ms-3x_coco.py'
    else:
        fname = f'upernet_{name}-{size}_8xb2-160k_ade20k-512x512.py'
    path = _config_dir() / task / fname
    if not path.is_file():
        raise UnrecognisedCheckpoint(f'the matching config {path} does not exist')
    return path


def config_text(info, state):
    """Source of a config file rebuilding the converted model."""
    head = "custom_imports = dict(imports=['mmdwnet'], allow_failed_imports=False)\n"
    if info['kind'] == 'classification':
        backbone = _backbone_dict(info, downstream=False)
        backbone['out_indices'] = (len(backbone['arch']['depths']) - 1, )
        in_channels = backbone['arch']['embed_dims'] * 2**(len(backbone['arch']['depths']) - 1)
        model = dict(type='ImageClassifier', backbone=backbone,
                     neck=dict(type='GlobalAveragePooling'),
                     head=dict(type='LinearClsHead', num_classes=info['num_classes'],
                               in_channels=in_channels,
                               loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
        return "default_scope = 'mmpretrain'\n" + head + _py('model', model)
    if info['kind'] == 'backbone':
        return head + _py('model', _backbone_dict(info, downstream=True))
    task = 'detection' if any(k.startswith('roi_head.') or k.startswith('rpn_head.')
                              for k in state) else 'segmentation'
    base = matching_config(info, task)
    return f'_base_ = {str(base)!r}\n'


def convert_file(src, dst, config_out=None):
    """Convert ``src`` (official checkpoint) into ``dst``; write ``config_out`` if given.

    Returns:
        dict: the conversion info (kind, backbone config, ...).
    """
    state, info = convert_official(load_official(src))
    if osp.dirname(osp.abspath(dst)):
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(meta=dict(converted_from=osp.basename(str(src)), mmdwnet_kind=info['kind']),
                    state_dict=state), dst)
    if config_out is not None:
        Path(config_out).parent.mkdir(parents=True, exist_ok=True)
        Path(config_out).write_text(config_text(info, state))
    return info
