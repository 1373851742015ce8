"""Resizing a checkpoint to another kernel/window size (Table 14) through the mixers' resize
hooks (:meth:`SpatialMixer.resize_state_dict`, driven by
:func:`mmdwnet.analysis.resize_kernels.resize_state_dict`) gives, for every preset, what plain
``F.interpolate`` of the original kernels / tables gives, and refuses what cannot be resized."""
import pytest
import torch
import torch.nn.functional as F

import mmdwnet  # noqa: F401
from mmdwnet.analysis.resize_kernels import resize_state_dict
from mmdwnet.models.backbones.presets import PRESETS
from mmdwnet.models.layers.resize import ResizeError
from mmdwnet.registry import MODELS

ARCH = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4])
CASES = [  # (preset, source mixer options, target mixer options, backbone options src / dst)
    ('DWNet', dict(kernel_size=3), dict(kernel_size=5), {}),
    ('DWNet', dict(kernel_size=3, share_channels=True), dict(kernel_size=6,
                                                              share_channels=True), {}),
    # the block's extra depth-wise conv before the FFN (Table 6) is not inside a mixer
    ('DWNet', dict(kernel_size=3), dict(kernel_size=3), dict(ffn_dwconv_kernel=(3, 5))),
    ('DynamicDWNet', dict(kernel_size=3), dict(kernel_size=5), {}),
    ('IDynamicDWNet', dict(kernel_size=3), dict(kernel_size=4), {}),
    ('SwinNet', dict(window_size=2), dict(window_size=4), {}),
    ('SlidingWindowNet', dict(kernel_size=3), dict(kernel_size=5), {}),
]
# LocalMLPNet: position-specific weights by default; see test_what_cannot_be_resized_raises
UNRESIZABLE = {'LocalMLPNet'}


def _model(preset, mixer, **backbone):
    torch.manual_seed(0)
    return MODELS.build(dict(type=preset, arch=ARCH, mixer=mixer, pad_to_window=True,
                             **backbone))


def _interpolate(grid, size, mode):
    """(..., k, k) -> (..., size, size), plain ``F.interpolate`` of every k x k grid."""
    lead, k = grid.shape[:-2], grid.shape[-1]
    out = F.interpolate(grid.reshape(1, -1, k, k), size=(size, size), mode=mode,
                        align_corners=False)
    return out.reshape(*lead, size, size)


def _expected(preset, target, key, src, shape, mode, scale):
    """The resized entry of ``target``, computed here from its layout alone."""
    if key.endswith('relative_position_bias_table'):  # logit biases: bicubic, never scaled
        if preset == 'SlidingWindowNet':  # (heads, k*k)
            heads, k = src.shape[0], round(src.shape[1]**0.5)
            return _interpolate(src.view(heads, k, k), round(shape[1]**0.5),
                                'bicubic').reshape(shape)
        side, heads = round(src.shape[0]**0.5), src.shape[1]  # ((2w-1)^2, heads)
        grid = _interpolate(src.t().reshape(heads, side, side), round(shape[0]**0.5), 'bicubic')
        return grid.reshape(heads, -1).t()
    gain = 1.0
    if key.endswith(('expand.weight', 'expand.bias')):  # generator rows (group, i, j)
        k_new = target.get_submodule(key.split('.aggregate.')[0]).kernel_size
        groups = shape[0] // k_new**2
        k = round((src.shape[0] // groups)**0.5)
        rows = src.reshape(groups, k * k, -1).transpose(1, 2).reshape(groups, -1, k, k)
        out = _interpolate(rows, k_new, mode)
        if scale == 'sum':
            out = out * (k / k_new)**2
        return out.reshape(groups, -1, k_new * k_new).transpose(1, 2).reshape(shape)
    k, k_new = src.shape[-1], shape[-1]  # kernels (C or G, 1, k, k)
    if scale == 'sum':
        gain = (k / k_new)**2
    return _interpolate(src, k_new, mode) * gain


def test_every_resizable_preset_has_a_case():
    assert {case[0] for case in CASES} | UNRESIZABLE == set(PRESETS)


@pytest.mark.parametrize('preset,src,dst,backbone', CASES)
@pytest.mark.parametrize('mode,scale', [('bicubic', 'none'), ('bilinear', 'sum')])
def test_resized_checkpoint_is_the_interpolated_one(preset, src, dst, backbone, mode, scale):
    src_opts = {k: v[0] for k, v in backbone.items()}
    dst_opts = {k: v[1] for k, v in backbone.items()}
    state = _model(preset, src, **src_opts).state_dict()
    before = dict(state)
    target = _model(preset, dst, **dst_opts)
    out, keys = resize_state_dict(state, target, mode, scale)
    shapes = target.state_dict()
    differing = [k for k in state if state[k].shape != shapes[k].shape]
    assert keys and keys == differing
    if backbone:
        assert all('ffn_dwconv.conv.weight' in k for k in keys)
    for key in state:
        if key in keys:
            expected = _expected(preset, target, key, state[key], shapes[key].shape, mode, scale)
            torch.testing.assert_close(out[key], expected, rtol=1e-6, atol=1e-6, msg=key)
        else:
            assert out[key] is state[key], key
    target.load_state_dict(out)  # strict
    assert state.keys() == before.keys() and all(state[k] is before[k] for k in state)


def test_what_cannot_be_resized_raises():
    state = _model('LocalMLPNet', dict(window_size=2, share_positions=True)).state_dict()
    target = _model('LocalMLPNet', dict(window_size=4, share_positions=True))
    # the shared position table resizes; a per-window local_weight of another window cannot
    kept = {k: v for k, v in state.items() if 'local_weight' not in k}
    kept.update({k: v for k, v in target.state_dict().items() if 'local_weight' in k})
    out, keys = resize_state_dict(kept, target)
    assert keys and all(k.endswith('relative_position_bias_table') for k in keys)
    with pytest.raises(ResizeError, match='local_weight.*cannot be resized'):
        resize_state_dict(state, target)
    src = MODELS.build(dict(type='DWNet', arch=ARCH, img_size=64,
                            mixer=dict(kernel_size=3, share_positions=False))).state_dict()
    dst = MODELS.build(dict(type='DWNet', arch=ARCH, img_size=64,
                            mixer=dict(kernel_size=5, share_positions=False)))
    with pytest.raises(ResizeError, match=r'stages\.0\.blocks\.0\.mixer\.aggregate\.weight: '
                       r'position-specific'):
        resize_state_dict(src, dst)
    # the hook of one mixer refuses it too
    mixer = dst.stages[0].blocks[0].mixer
    with pytest.raises(ResizeError, match='position-specific'):
        mixer.resize_state_dict(dict(src), 'stages.0.blocks.0.mixer.')
