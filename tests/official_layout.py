"""Write state dicts in the official DemystifyLocalViT / Swin key layout (for tests).

The inverse of ``mmdwnet.converters.official``: real official checkpoints of tiny/base models
are hundreds of MB and not available offline, so tests build mmdwnet models, rename their keys
into the official layout (adding the buffers the official code saves) and check that the
converter maps them back.  The key names follow ``../shared/reference`` (official files).
"""
import re
from collections import OrderedDict

import torch

from mmdwnet.models.mixers.window import relative_position_index

_INVERSE_BLOCK = [
    (r'^mixer\.proj_in\.', 'attn2conv.conv0.'),
    (r'^mixer\.norm_in\.', 'attn2conv.bn0.'),
    (r'^mixer\.aggregate\.reduce\.', '{gen}conv1{seq}.'),
    (r'^mixer\.aggregate\.norm\.', '{gen}{norm}.'),
    (r'^mixer\.aggregate\.expand\.', '{gen}conv2{seq}.'),
    (r'^mixer\.aggregate\.(weight|bias)$', r'attn2conv.conv.\1'),
    (r'^mixer\.norm_mid\.', 'attn2conv.bn.'),
    (r'^mixer\.proj_out\.', 'attn2conv.conv2.'),
    (r'^mixer\.norm_out\.', 'attn2conv.bn2.'),
    (r'^mixer\.(qkv|proj)\.', r'attn.\1.'),
    (r'^mixer\.relative_position_bias_table$', 'attn.relative_position_bias_table'),
    (r'^ffn\.layers\.0\.0\.', 'mlp.fc1.'),
    (r'^ffn\.layers\.1\.', 'mlp.fc2.'),
]


def official_backbone_state(state, classification=False, num_stages=4):
    """mmdwnet ``LocalMixerNet`` keys (no prefix) -> official backbone keys.

    ``norm2`` is the block's BN (``bn``) for the DW-conv family and stays ``norm2`` for Swin.
    """
    swin = any('mixer.qkv.' in k for k in state)
    out = OrderedDict()
    for key, value in state.items():
        m = re.match(r'^stages\.(\d+)\.blocks\.(\d+)\.(.*)$', key)
        if m:
            i, j, rest = m.groups()
            prefix = f'layers.{i}.blocks.{j}.'
            dynamic_bias = f'stages.{i}.blocks.{j}.mixer.aggregate.bias' in state
            reduce_key = f'stages.{i}.blocks.{j}.mixer.aggregate.reduce.weight'
            is_idyn = reduce_key in state and not dynamic_bias
            fmt = dict(gen='attn2conv.conv.', seq='.0' if is_idyn else '',
                       norm='conv1.1' if is_idyn else 'bn')
            if rest.startswith('norm2.') and not swin:
                new = 'bn.' + rest[len('norm2.'):]
            elif rest.startswith('norm1.') or rest.startswith('norm2.'):
                new = rest
            else:
                for pattern, repl in _INVERSE_BLOCK:
                    if re.match(pattern, rest):
                        new = re.sub(pattern, repl.format(**fmt) if '{' in repl else repl, rest)
                        break
                else:
                    raise KeyError(f'no official name for {key}')
            out[prefix + new] = value
            if rest == 'mixer.relative_position_bias_table':
                w = (int(round(value.shape[0]**0.5)) + 1) // 2
                out[prefix + 'attn.relative_position_index'] = relative_position_index(w)
            continue
        m = re.match(r'^stages\.(\d+)\.downsample\.(.*)$', key)
        if m:
            out[f'layers.{m.group(1)}.downsample.{m.group(2)}'] = value
        elif key.startswith('patch_embed.projection.'):
            out['patch_embed.proj.' + key[len('patch_embed.projection.'):]] = value
        elif key.startswith('patch_embed.norm.'):
            out[key] = value
        elif classification and key.startswith(f'norm{num_stages - 1}.'):
            out['norm.' + key.split('.', 1)[1]] = value
        elif re.match(r'^norm\d+\.', key):
            out[key] = value
        else:
            raise KeyError(f'no official name for {key}')
    return out


def official_downstream_checkpoint(model_state):
    """A whole mmdwnet detector/segmentor state dict -> mmdet 2.x / mmseg 0.x checkpoint dict."""
    backbone = {k[len('backbone.'):]: v for k, v in model_state.items() if k.startswith('backbone.')}
    state = OrderedDict(('backbone.' + k, v) for k, v in official_backbone_state(backbone).items())
    state.update((k, v) for k, v in model_state.items() if not k.startswith('backbone.'))
    return dict(meta=dict(note='official layout written by tests/official_layout.py'),
                state_dict=state)


def save_official_downstream(model_state, path):
    torch.save(official_downstream_checkpoint(model_state), path)
