"""Convert official DemystifyLocalViT / Swin checkpoints into mmdwnet's layout.

Handles, inferring the architecture from tensor shapes:

* classification checkpoints ``{'model': state_dict}`` (DWNet, D-DWNet, I-D-DWNet, Swin);
* downstream checkpoints ``{'state_dict': ...}`` of mmdet 2.x / mmseg 0.x: a whole detector or
  segmentor (``backbone.`` + neck/head keys) or a backbone alone.
"""
import os
import re
from collections import OrderedDict
from typing import Any, Dict, Mapping, Tuple, Union

from typing import Dict

import torch
from torch import Tensor

from mmdwnet.models.layers import FFN

__all__ = ['convert_official', 'infer_backbone', 'UnrecognisedCheckpoint', 'PRESET_FILE_NAMES',
           'preset_file_names']


def preset_file_names() -> Dict[str, str]:
    """The presets an official checkpoint can be (its family, inferred from the keys) -> the
    name their config files use: the ``official`` rows of
    :data:`mmdwnet.models.backbones.presets.PRESETS` (loading checks a checkpoint's family
    against them, the writer picks config files by them)."""
    # imported here: the backbone imports the converters (loading) when it is defined
    from mmdwnet.models.backbones.presets import PRESETS
    return {name: p.config_stem for name, p in PRESETS.items() if p.official}


def __getattr__(name: str):
    """``PRESET_FILE_NAMES`` (:func:`preset_file_names`), kept as a module attribute."""
    if name == 'PRESET_FILE_NAMES':
        return preset_file_names()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


class UnrecognisedCheckpoint(ValueError):
    """The file is not an official DemystifyLocalViT / Swin checkpoint this converter knows."""


# (pattern, replacement) on the key inside a block, applied first match only; None drops it.
_BLOCK_RULES = [
    (r'^attn2conv\.conv0\.', 'mixer.proj_in.'),
    (r'^attn2conv\.bn0\.', 'mixer.norm_in.'),
    (r'^attn2conv\.conv\.conv1\.0\.', 'mixer.aggregate.reduce.'),  # I-D-DW generator
    (r'^attn2conv\.conv\.conv1\.1\.', 'mixer.aggregate.norm.'),
    (r'^attn2conv\.conv\.conv2\.0\.', 'mixer.aggregate.expand.'),
    (r'^attn2conv\.conv\.conv1\.', 'mixer.aggregate.reduce.'),  # D-DW generator
    (r'^attn2conv\.conv\.bn\.', 'mixer.aggregate.norm.'),
    (r'^attn2conv\.conv\.conv2\.', 'mixer.aggregate.expand.'),
    (r'^attn2conv\.conv\.(weight|bias)$', r'mixer.aggregate.\1'),
    (r'^attn2conv\.bn\.', 'mixer.norm_mid.'),
    (r'^attn2conv\.conv2\.', 'mixer.proj_out.'),
    (r'^attn2conv\.bn2\.', 'mixer.norm_out.'),
    (r'^bn\.', 'norm2.'),
    (r'^norm([12])\.', r'norm\1.'),
    (r'^attn\.(qkv|proj)\.', r'mixer.\1.'),
    (r'^attn\.relative_position_bias_table$', 'mixer.relative_position_bias_table'),
    (r'^attn\.relative_position_index$', None),
    (r'^attn_mask$', None),
    (r'^mlp\.fc1\.', f'ffn.{FFN.FC1_KEY}.'),
    (r'^mlp\.fc2\.', f'ffn.{FFN.FC2_KEY}.'),
]


def _convert_block_key(rest, full_key):
    for pattern, repl in _BLOCK_RULES:
        if re.match(pattern, rest):
            return None if repl is None else re.sub(pattern, repl, rest)
    raise UnrecognisedCheckpoint(f'unknown block key {full_key!r}: not a DemystifyLocalViT or '
                                 'Swin checkpoint this converter knows')


def convert_backbone_keys(state: Mapping[str, Tensor], num_stages: int,
                          classification: bool) -> Dict[str, Tensor]:
    """Official backbone keys (no prefix) -> mmdwnet ``LocalMixerNet`` keys.

    In a classification checkpoint the final ``norm`` becomes ``norm{last stage}``; ``head.*``
    keys are returned separately by :func:`convert_official`.
    """
    out = OrderedDict()
    for key, value in state.items():
        m = re.match(r'^layers\.(\d+)\.blocks\.(\d+)\.(.*)$', key)
        if m:
            new = _convert_block_key(m.group(3), key)
            if new is not None:
                out[f'stages.{m.group(1)}.blocks.{m.group(2)}.{new}'] = value
            continue
        m = re.match(r'^layers\.(\d+)\.downsample\.(reduction|norm)\.(.*)$', key)
        if m:
            out[f'stages.{m.group(1)}.downsample.{m.group(2)}.{m.group(3)}'] = value
        elif key.startswith('patch_embed.proj.'):
            out['patch_embed.projection.' + key[len('patch_embed.proj.'):]] = value
        elif key.startswith('patch_embed.norm.'):
            out[key] = value
        elif classification and key.startswith('norm.'):
            out[f'norm{num_stages - 1}.' + key[len('norm.'):]] = value
        elif re.match(r'^norm\d+\.', key) and not classification:
            out[key] = value
        elif key == 'absolute_pos_embed':
            raise UnrecognisedCheckpoint('checkpoints with absolute position embeddings (ape=True) '
                                         'are not supported by mmdwnet')
        else:
            raise UnrecognisedCheckpoint(f'unknown backbone key {key!r}')
    return out


def _idynamic_kernel(rows, channels):
    """Split ``k*k*G`` rows of the I-D-DW generator into (k, group_channels)."""
    fits = [k for k in (7, 3, 5, 9, 11, 13, 1) if rows % (k * k) == 0
            and channels % (rows // (k * k)) == 0 and rows // (k * k) <= channels]
    if not fits:
        raise UnrecognisedCheckpoint(f'cannot split {rows} I-D-DW kernel rows into k*k*groups for '
                                     f'{channels} channels')
    k = fits[0]
    return k, channels // (rows // (k * k))


def infer_backbone(state: Mapping[str, Tensor]) -> Dict[str, Any]:
    """Infer the mmdwnet backbone config from official backbone keys (no prefix).

    Returns:
        dict: ``type``, ``arch``, ``mixer`` and block options of the matching preset.
    """
    if 'patch_embed.proj.weight' not in state:
        raise UnrecognisedCheckpoint('no patch_embed.proj.weight: not a DemystifyLocalViT / Swin '
                                     'backbone state dict')
    proj = state['patch_embed.proj.weight']
    embed_dims, in_channels, patch_size = proj.shape[0], proj.shape[1], proj.shape[2]
    depths = []
    while any(k.startswith(f'layers.{len(depths)}.') for k in state):
        i = len(depths)
        blocks = {int(m.group(1)) for k in state
                  for m in [re.match(rf'^layers\.{i}\.blocks\.(\d+)\.', k)] if m}
        depths.append(max(blocks) + 1 if blocks else 0)
    if not depths or 0 in depths:
        raise UnrecognisedCheckpoint(f'could not read the stage depths (found {depths})')
    dims = [embed_dims * 2**i for i in range(len(depths))]
    first = 'layers.0.blocks.0.'
    mlp_ratio = state[first + 'mlp.fc1.weight'].shape[0] / embed_dims
    cfg = dict(in_channels=in_channels, patch_size=patch_size)
    if mlp_ratio != 4:
        cfg['mlp_ratio'] = mlp_ratio
    heads = [1] * len(depths)
    if first + 'attn.qkv.weight' in state:
        table = state[first + 'attn.relative_position_bias_table']
        window = (int(round(table.shape[0]**0.5)) + 1) // 2
        heads = [state[f'layers.{i}.blocks.0.attn.relative_position_bias_table'].shape[1]
                 for i in range(len(depths))]
        cfg.update(type='SwinNet', mixer=dict(window_size=window))
    elif first + 'attn2conv.conv.weight' in state:
        cfg.update(type='DWNet',
                   mixer=dict(kernel_size=state[first + 'attn2conv.conv.weight'].shape[-1]))
    elif first + 'attn2conv.conv.conv1.weight' in state:
        k2 = state[first + 'attn2conv.conv.conv2.weight'].shape[0] // embed_dims
        cfg.update(type='DynamicDWNet', mixer=dict(kernel_size=int(round(k2**0.5))))
    elif first + 'attn2conv.conv.conv1.0.weight' in state:
        group_channels = []
        for i, c in enumerate(dims):
            rows = state[f'layers.{i}.blocks.0.attn2conv.conv.conv2.0.weight'].shape[0]
            k, gc = _idynamic_kernel(rows, c)
            group_channels.append(gc)
        heads = group_channels  # the official convention: inhomo_heads = channels per group
        cfg.update(type='IDynamicDWNet', mixer=dict(kernel_size=k))
    else:
        raise UnrecognisedCheckpoint(f'unknown mixer in block keys '
                                     f'{sorted(k for k in state if k.startswith(first))[:8]}')
    cfg['arch'] = dict(embed_dims=embed_dims, depths=depths, num_heads=heads)
    return cfg


def _split_checkpoint(ckpt):
    """-> (kind, state) with kind in {'classification', 'backbone', 'whole'}."""
    if not isinstance(ckpt, dict):
        raise UnrecognisedCheckpoint(f'expected a dict checkpoint, got {type(ckpt).__name__}')
    if 'model' in ckpt and isinstance(ckpt['model'], dict):
        return 'classification', ckpt['model']
    if 'state_dict' in ckpt and isinstance(ckpt['state_dict'], dict):
        state = ckpt['state_dict']
        if any(k.startswith('stages.') or '.stages.' in k for k in state):
            raise UnrecognisedCheckpoint('this is already an mmdwnet checkpoint (stages.* keys)')
        if not any(k.startswith('backbone.') for k in state):
            raise UnrecognisedCheckpoint('downstream checkpoint without backbone.* keys')
        only_backbone = all(k.startswith('backbone.') for k in state)
        return ('backbone' if only_backbone else 'whole'), state
    if 'patch_embed.proj.weight' in ckpt:
        return 'classification', ckpt
    raise UnrecognisedCheckpoint(f'unrecognised checkpoint with top-level keys {sorted(ckpt)[:10]}: '
                                 "expected {'model': ...} (classification) or {'state_dict': ...} "
                                 '(mmdet/mmseg downstream)')


def convert_official(ckpt: Dict[str, Any]) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """Convert a loaded official checkpoint.

    Returns:
        tuple: ``(state_dict, info)`` where ``info`` has ``kind`` ('classification', 'backbone'
        or 'whole'), ``backbone`` (the inferred backbone config), and for classification
        ``num_classes``; for downstream checkpoints ``out_indices`` and ``out_norm`` ('BN' or
        'LN').
    """
    kind, state = _split_checkpoint(ckpt)
    info = dict(kind=kind)
    if kind == 'classification':
        backbone = {k: v for k, v in state.items() if not k.startswith('head.')}
        info['backbone'] = infer_backbone(backbone)
        num_stages = len(info['backbone']['arch']['depths'])
        out = OrderedDict(('backbone.' + k, v) for k, v in
                          convert_backbone_keys(backbone, num_stages, True).items())
        if 'head.weight' not in state:
            raise UnrecognisedCheckpoint('classification checkpoint without head.weight')
        out['head.fc.weight'] = state['head.weight']
        out['head.fc.bias'] = state['head.bias']
        info['num_classes'] = state['head.weight'].shape[0]
        return out, info

    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    info['backbone'] = infer_backbone(backbone)
    num_stages = len(info['backbone']['arch']['depths'])
    converted = convert_backbone_keys(backbone, num_stages, False)
    info['out_indices'] = tuple(i for i in range(num_stages) if f'norm{i}.weight' in backbone)
    bn = any(f'norm{i}.running_mean' in backbone for i in info['out_indices'])
    info['out_norm'] = 'BN' if bn else 'LN'
    if kind == 'backbone':
        return converted, info
    out = OrderedDict(('backbone.' + k, v) for k, v in converted.items())
    out.update((k, v) for k, v in state.items() if not k.startswith('backbone.'))
    return out, info


def load_official(path: Union[str, os.PathLike]) -> Any:
    """Read an official checkpoint through the loading gate (weights only, CRC-checked)."""
    from mmdwnet.utils.torch_load import safe_torch_load
    try:
        return safe_torch_load(path, map_location='cpu')
    except Exception as e:  # noqa: BLE001 - re-raised with the reason
        raise UnrecognisedCheckpoint(f'{path} could not be read with weights_only=True: {e}') from e
