"""Even kernel sizes (the paper's 12x12 kernels, Table 14): same-size outputs with asymmetric
padding, (k - 1) // 2 before and k // 2 after, as PyTorch's ``padding='same'``."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import fuse_conv_bn

from mmdwnet.models.mixers.dwconv import (DWConv, DynamicDWConv, IDynamicDWConv,
                                          SameDepthwiseConv2d, SharedDepthwiseConv2d,
                                          same_padding)
from mmdwnet.registry import MODELS

TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])


def _reference(x, kernel_at, k):
    """out[n, c, h, w] = sum_ij kernel_at(i, j)[n, c, h, w] * x[n, c, h + i - p, w + j - p] with
    p = (k - 1) // 2 and zeros outside: the extra tap of an even kernel reaches down / right."""
    n, c, h, w = x.shape
    p = (k - 1) // 2
    out = torch.zeros(n, c, h, w, dtype=torch.float64)
    xd = x.double()
    for i in range(k):
        for j in range(k):
            shifted = torch.zeros_like(xd)
            hs, ws = i - p, j - p  # source offset
            src = xd[:, :, max(hs, 0):h + min(hs, 0), max(ws, 0):w + min(ws, 0)]
            shifted[:, :, max(-hs, 0):h - max(hs, 0), max(-ws, 0):w - max(ws, 0)] = src
            out += kernel_at(i, j).double() * shifted
    return out.float()


def test_same_padding_puts_the_extra_row_and_column_at_the_bottom_right():
    assert same_padding(7) == (3, 3, 3, 3)
    assert same_padding(12) == (5, 6, 5, 6)
    assert same_padding(2) == (0, 1, 0, 1)


@pytest.mark.parametrize('k', [2, 4, 12, 5])
def test_static_depthwise_conv_matches_the_definition_and_padding_same(k):
    torch.manual_seed(k)
    conv = SameDepthwiseConv2d(3, k)
    x = torch.randn(2, 3, 9, 13)
    with torch.no_grad():
        out = conv(x)
        expected = _reference(x, lambda i, j: conv.weight[:, 0, i, j].view(1, -1, 1, 1), k)
        expected = expected + conv.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        same = nn.Conv2d(3, 3, k, padding='same', groups=3)
        same.load_state_dict(conv.state_dict())
        torch.testing.assert_close(out, same(x), rtol=1e-6, atol=1e-6)


def test_dwconv_mixer_with_kernel_12_keeps_the_size_also_padded_to_the_window():
    torch.manual_seed(0)
    plain = DWConv(16, kernel_size=12).eval()
    padded = DWConv(16, kernel_size=12, pad_to_window=True).eval()
    assert isinstance(plain.aggregate, SameDepthwiseConv2d)
    x = torch.randn(2, 13, 30, 16)  # not multiples of 12
    with torch.no_grad():
        assert plain(x).shape == padded(x).shape == x.shape
    shared = DWConv(16, kernel_size=4, share_channels=True, num_heads=4).eval()
    assert isinstance(shared.aggregate, SharedDepthwiseConv2d)
    v = torch.randn(1, 16, 7, 6)
    weight = shared.aggregate.weight.repeat_interleave(4, dim=0)  # 4 channels per head
    with torch.no_grad():
        expected = _reference(v, lambda i, j: weight[:, 0, i, j].view(1, -1, 1, 1), 4)
        torch.testing.assert_close(shared.aggregate(v), expected, rtol=1e-5, atol=1e-5)


def test_fusion_and_checkpoint_layout_unchanged_for_even_kernels():
    backbone = MODELS.build(dict(type='DWNet', arch=TINY, mixer=dict(kernel_size=12)))
    for m in backbone.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.running_mean)
            nn.init.uniform_(m.running_var, 0.5, 2.)
    backbone.eval()
    key = 'stages.0.blocks.0.mixer.aggregate.weight'
    assert backbone.state_dict()[key].shape == (16, 1, 12, 12)
    x = torch.randn(1, 3, 72, 56)
    with torch.no_grad():
        expected = backbone(x)[0]
        fused = fuse_conv_bn(backbone)
        assert isinstance(fused.stages[0].blocks[0].mixer.norm_mid, nn.Identity)
        torch.testing.assert_close(fused(x)[0], expected, rtol=1e-4, atol=1e-4)


def _backends():
    """The ops backends this machine runs: the PyTorch reference and the compiled CPU kernels."""
    from mmdwnet.ops.backends import cpu
    return ['torch'] + (['cpu'] if cpu.available() else [])


@pytest.mark.parametrize('backend', _backends())
def test_dynamic_dwconv_even_kernels_match_the_definition(backend):
    from mmdwnet.ops.switches import use_ops_backend
    torch.manual_seed(0)
    agg = DynamicDWConv(16, kernel_size=4).aggregate.eval()
    x = torch.randn(2, 16, 7, 9)
    with torch.no_grad(), use_ops_backend(backend):
        kernels = agg.generate_weight(x).view(2, 16, 4, 4)
        expected = _reference(x, lambda i, j: kernels[:, :, i, j, None, None], 4)
        torch.testing.assert_close(agg(x), expected + agg.bias.view(1, -1, 1, 1),
                                   rtol=1e-4, atol=1e-5)
        frozen = agg.frozen(x[:1])  # the analysis hook pads the same way
        torch.testing.assert_close(frozen(x[:1]), agg(x[:1]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('backend', _backends())
def test_inhomogeneous_dwconv_even_kernels_match_the_definition(backend):
    from mmdwnet.ops.switches import use_ops_backend
    torch.manual_seed(0)
    agg = IDynamicDWConv(16, kernel_size=4, group_channels=4).aggregate.eval()
    x = torch.randn(2, 16, 7, 9)
    with torch.no_grad(), use_ops_backend(backend):
        weight = agg.generate_weight(x).repeat_interleave(4, dim=1)  # (N, C, k, k, H, W)
        expected = _reference(x, lambda i, j: weight[:, :, i, j], 4)
        torch.testing.assert_close(agg(x), expected, rtol=1e-4, atol=1e-5)


def test_locally_connected_even_kernels_match_the_definition():
    agg = DWConv(16, kernel_size=4, share_positions=False, input_resolution=(8, 8)).aggregate
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        expected = _reference(x, lambda i, j: agg.weight[:, :, i, j], 4)
        torch.testing.assert_close(agg(x), expected + agg.bias.view(1, -1, 1, 1),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('backbone', ['DynamicDWNet', 'IDynamicDWNet'])
def test_dynamic_backbones_take_kernel_12(backbone):
    model = MODELS.build(dict(type=backbone, arch=TINY, mixer=dict(kernel_size=12),
                              out_indices=(0, 1, 2, 3), pad_to_window=True)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 70, 90))
    assert [o.shape[-2:] for o in outs] == [(18, 23), (9, 12), (5, 6), (3, 3)]
