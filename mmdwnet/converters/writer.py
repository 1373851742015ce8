"""Write a converted checkpoint and the config that rebuilds its model.

Used by ``tools/model_converters/official2mmdwnet.py``; not imported by the library itself
(``mmdwnet.converters.convert_file`` loads it on first use), so it may import the models.
"""
import os
import os.path as osp
import pprint
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from mmdwnet.models.backbones.local_mixer_net import LocalMixerNet
from mmdwnet.registry import MODELS
from mmdwnet.utils.fileio import same_file as _same_file
from mmdwnet.utils.fileio import temp_beside
from .loading import CheckpointMismatch, check_backbone_state
from .official import (UnrecognisedCheckpoint, convert_official, load_official,
                       preset_file_names)
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


def _size_name(arch):
    """'tiny', 'small' or 'base' for an arch with those sizes' widths and depths, else None."""
    for name, zoo in LocalMixerNet.arch_zoo.items():
        if (zoo['embed_dims'], list(zoo['depths'])) == (arch['embed_dims'], list(arch['depths'])):
            return name
    return None


def matching_config(info, task):
    """Path of the repo config whose model matches a converted whole detector/segmentor."""
    bb = info['backbone']
    size = _size_name(bb['arch'])
    name = preset_file_names().get(bb['type'])
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


def validate_converted(state, info):
    """Check a converted checkpoint against the model its inferred config builds.

    Every stage and block must be present with consistent shapes (a missing block, stage or
    tensor, a stray key, or a kernel of another size is reported by name): a damaged official
    checkpoint raises :class:`UnrecognisedCheckpoint` instead of converting "successfully".
    """
    downstream = info['kind'] != 'classification'
    cfg = _backbone_dict(info, downstream=downstream)
    if not downstream:
        cfg['out_indices'] = (len(cfg['arch']['depths']) - 1, )
    try:
        backbone = MODELS.build(cfg)
    except (ValueError, TypeError, KeyError) as e:
        raise UnrecognisedCheckpoint(f'damaged checkpoint: its shapes give no valid model '
                                     f'({cfg}): {e}') from e
    prefix = '' if info['kind'] == 'backbone' else 'backbone.'
    try:
        check_backbone_state(backbone, state, prefix)
    except CheckpointMismatch as e:
        bb = info['backbone']
        raise UnrecognisedCheckpoint(
            f"damaged checkpoint: its shapes say {bb['type']} with arch {bb['arch']}, but {e}"
        ) from e
    if info['kind'] == 'classification':
        weight, bias = state['head.fc.weight'], state.get('head.fc.bias')
        channels = backbone.num_features[-1]
        if weight.dim() != 2 or weight.shape[1] != channels or bias is None \
                or tuple(bias.shape) != (weight.shape[0], ):
            raise UnrecognisedCheckpoint(
                f'damaged checkpoint: head.weight {tuple(weight.shape)} / head.bias '
                f'{None if bias is None else tuple(bias.shape)} do not fit {channels} features')


def _check_paths(src, dst, config_out, force):
    """Refuse every path combination that could destroy a file (see :func:`convert_file`)."""
    if not Path(src).is_file():
        raise FileNotFoundError(f'SRC {src} does not exist')
    named = [('DST', dst)] + ([('--config-out', config_out)] if config_out is not None else [])
    for label, path in named:
        if _same_file(src, path):
            raise FileExistsError(f'{label} {path} is the source checkpoint {src}: refusing to '
                                  'overwrite it; write the conversion to another file')
    if config_out is not None and _same_file(dst, config_out):
        raise FileExistsError(f'--config-out {config_out} and DST {dst} are the same file')
    for label, path in named:
        if Path(path).is_dir():
            raise IsADirectoryError(f'{label} {path} is a folder; give a file name')
        if Path(path).exists() and not force:
            raise FileExistsError(f'{label} {path} exists; pass --force to overwrite it')


class _AtomicWrites:
    """Write each output to a temporary file in its destination folder; :meth:`commit`
    renames them all into place, and leaving the ``with`` block otherwise removes every
    temporary file and every folder this created."""

    def __init__(self):
        self.temps, self.made_dirs = [], []

    def __enter__(self):
        return self

    def temp_for(self, path):
        folder = Path(path).absolute().parent
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        try:
            for d in reversed(missing):
                d.mkdir()
                self.made_dirs.append(d)
            tmp = temp_beside(str(path))
        except OSError as e:
            raise OSError(e.errno, f'cannot write {path}: {e.strerror}') from e
        self.temps.append((tmp, path))
        return tmp

    def commit(self):
        for tmp, path in self.temps:
            os.replace(tmp, path)
        self.temps, self.made_dirs = [], []

    def __exit__(self, *exc):
        for tmp, _ in self.temps:
            if os.path.exists(tmp):
                os.remove(tmp)
        for d in reversed(self.made_dirs):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        return False


def convert_file(src: Union[str, os.PathLike], dst: Union[str, os.PathLike],
                 config_out: Optional[Union[str, os.PathLike]] = None,
                 force: bool = False) -> Dict[str, Any]:
    """Convert ``src`` (official checkpoint) into ``dst``; write ``config_out`` if given.

    Nothing can be lost: ``dst`` or ``config_out`` equal to ``src`` (or to each other) is
    refused, an existing output is overwritten only with ``force``; the source is read,
    converted and validated (:func:`validate_converted`) and the config text made before
    anything is written; both outputs go to temporary files in their destination folders and
    are renamed into place only when both are complete -- on any failure nothing is left
    behind and existing files are untouched.

    Returns:
        dict: the conversion info (kind, backbone config, ...).
    """
    _check_paths(src, dst, config_out, force)
    state, info = convert_official(load_official(src))
    validate_converted(state, info)
    text = config_text(info, state) if config_out is not None else None
    with _AtomicWrites() as out:
        torch.save(dict(meta=dict(converted_from=osp.basename(str(src)),
                                  mmdwnet_kind=info['kind']), state_dict=state),
                   out.temp_for(dst))
        if text is not None:
            Path(out.temp_for(config_out)).write_text(text)
        out.commit()
    return info
