"""The mixers' resize hook (SpatialMixer.resize_state_dict) gives what the resize_kernels tool's
isinstance rules give, and refuses what cannot be resized."""
import importlib.util
from pathlib import Path

import pytest
import torch

import mmdwnet  # noqa: F401
from mmdwnet.models.layers.resize import ResizeError
from mmdwnet.models.mixers import SpatialMixer
from mmdwnet.registry import MODELS

ARCH = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4])
CASES = [  # (preset, source mixer options, target mixer options)
    ('DWNet', dict(kernel_size=3), dict(kernel_size=5)),
    ('DWNet', dict(kernel_size=3, share_channels=True), dict(kernel_size=6,
                                                              share_channels=True)),
    ('DynamicDWNet', dict(kernel_size=3), dict(kernel_size=5)),
    ('IDynamicDWNet', dict(kernel_size=3), dict(kernel_size=4)),
    ('SwinNet', dict(window_size=2), dict(window_size=4)),
    ('SlidingWindowNet', dict(kernel_size=3), dict(kernel_size=5)),
]


def _tool():
    path = Path(__file__).resolve().parents[1] / 'tools/analysis_tools/resize_kernels.py'
    spec = importlib.util.spec_from_file_location('resize_kernels_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(preset, mixer):
    torch.manual_seed(0)
    return MODELS.build(dict(type=preset, arch=ARCH, mixer=mixer, pad_to_window=True))


def _resize_with_hooks(model, state, **kwargs):
    state = dict(state)
    resized = []
    for name, module in model.named_modules():
        if isinstance(module, SpatialMixer):
            resized += module.resize_state_dict(state, f'{name}.', **kwargs)
    return state, resized


@pytest.mark.parametrize('preset,src,dst', CASES)
@pytest.mark.parametrize('scale', ['none', 'sum'])
def test_hooks_match_the_tool(preset, src, dst, scale):
    state = _model(preset, src).state_dict()
    target = _model(preset, dst)
    ref, ref_keys = _tool().resize_state_dict(state, target, 'bicubic', scale)
    out, keys = _resize_with_hooks(target, state, scale=scale)
    assert keys and sorted(keys) == sorted(ref_keys)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=0, msg=key)
    target.load_state_dict(out)


def test_what_cannot_be_resized_raises():
    state = _model('LocalMLPNet', dict(window_size=2, share_positions=True)).state_dict()
    target = _model('LocalMLPNet', dict(window_size=4, share_positions=True))
    # the shared position table resizes; a per-window local_weight of another window cannot
    out, keys = _resize_with_hooks(target, {k: v for k, v in state.items()
                                            if 'local_weight' not in k})
    assert keys and all(k.endswith('relative_position_bias_table') for k in keys)
    with pytest.raises(ResizeError, match='local_weight'):
        _resize_with_hooks(target, state)
    src = MODELS.build(dict(type='DWNet', arch=ARCH, img_size=64,
                            mixer=dict(kernel_size=3, share_positions=False))).state_dict()
    dst = MODELS.build(dict(type='DWNet', arch=ARCH, img_size=64,
                            mixer=dict(kernel_size=5, share_positions=False)))
    with pytest.raises(ResizeError, match=r'stages\.0\.blocks\.0\.mixer\.aggregate\.weight: '
                       r'position-specific'):
        _resize_with_hooks(dst, src)
