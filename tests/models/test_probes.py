"""Issue 14: bad arguments and inputs fail at once with a message naming the argument, the value
and what is allowed; odd but valid inputs (an empty batch) give correct results; the largest
allowed drop path rate trains without NaN."""
import doctest
import math

import pytest
import torch
import torch.nn as nn

import mmdwnet  # noqa: F401
from mmdwnet.models import (DWConv, IDynamicDWConv, LocalMLP, MixerBlock, PatchMerging,
                            ShiftedWindowAttention, SlidingWindowAttention)
from mmdwnet.registry import MODELS

TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
PRESETS = ['DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet', 'LocalMLPNet']


def _arch(**changes):
    return dict(TINY, **changes)


# (backbone config, exception type, regex the message must match)
BAD_BACKBONES = [
    # drop path: 1 and above give NaN in training, negative / NaN rates used to be ignored
    (dict(type='DWNet', drop_path_rate=1.0), ValueError, r'drop_path_rate=1\.0 .*\[0, 1\).*NaN'),
    (dict(type='DWNet', drop_path_rate=1.5), ValueError, r'drop_path_rate=1\.5 .*\[0, 1\)'),
    (dict(type='DWNet', drop_path_rate=-0.1), ValueError, r'drop_path_rate=-0\.1 .*\[0, 1\)'),
    (dict(type='DWNet', drop_path_rate=float('nan')), ValueError, r'drop_path_rate=nan'),
    (dict(type='DWNet', drop_path_rate='0.1'), TypeError, r"drop_path_rate='0\.1'.*number"),
    (dict(type='SwinNet', drop_rate=1.0), ValueError, r'drop_rate=1\.0 .*\[0, 1\)'),
    # architecture
    (dict(type='DWNet', arch='huge'), ValueError, r"unknown arch 'huge'.*'base', 'small', 'tiny'"),
    (dict(type='DWNet', arch=_arch(depths=[1, 0, 1, 1])), ValueError,
     r"arch\['depths'\]\[1\]=0 .*int >= 1"),
    (dict(type='DWNet', arch=_arch(depths=[1, 1, -2, 1])), ValueError,
     r"arch\['depths'\]\[2\]=-2"),
    (dict(type='DWNet', arch=_arch(depths=[1, 1.5, 1, 1])), TypeError,
     r"arch\['depths'\]\[1\]=1\.5 .*got a float"),
    (dict(type='DWNet', arch=_arch(depths=[])), ValueError, r"arch\['depths'\]=\[\] .*non-empty"),
    (dict(type='DWNet', arch=_arch(embed_dims=0)), ValueError, r"arch\['embed_dims'\]=0"),
    (dict(type='SwinNet', arch=_arch(num_heads=[1, 2.0, 4, 8])), TypeError,
     r"arch\['num_heads'\]\[1\]=2\.0"),
    # out_indices: each stage once, in stage order
    (dict(type='DWNet', arch=TINY, out_indices=(0, 0)), ValueError,
     r'out_indices \(0, 0\) must name each stage once.*use \(0,\)'),
    (dict(type='DWNet', arch=TINY, out_indices=(3, 0)), ValueError,
     r'increasing order.*use \(0, 3\)'),
    (dict(type='DWNet', arch=TINY, out_indices=(-1, 3)), ValueError, r'each stage once'),
    (dict(type='DWNet', arch=TINY, out_indices=(4, )), ValueError, r'out of range for 4 stages'),
    (dict(type='DWNet', arch=TINY, out_indices=()), ValueError, r'out_indices is empty'),
    (dict(type='DWNet', arch=TINY, out_indices=(1.0, )), TypeError, r'out_indices entry=1\.0'),
    # block options
    (dict(type='DWNet', arch=TINY, se_ratio=-4), ValueError, r'se_ratio=-4 .*> 0 or None'),
    (dict(type='DWNet', arch=TINY, se_ratio=0), ValueError, r'se_ratio=0 '),
    (dict(type='DWNet', arch=TINY, ffn_dwconv_kernel=4), ValueError,
     r'ffn_dwconv_kernel=4 .*odd'),
    (dict(type='DWNet', arch=TINY, ffn_dwconv_kernel=0), ValueError, r'ffn_dwconv_kernel=0'),
    (dict(type='DWNet', arch=TINY, mlp_ratio=0), ValueError, r'mlp_ratio=0 .*> 0'),
    (dict(type='DWNet', arch=TINY, in_channels=0), ValueError, r'in_channels=0'),
    (dict(type='DWNet', arch=TINY, patch_size=2.5), TypeError, r'patch_size=2\.5'),
    (dict(type='DWNet', arch=TINY, img_size=(0, 224)), ValueError, r'img_size=\(0, 224\)'),
    (dict(type='DWNet', arch=TINY, frozen_stages=-2), ValueError, r'frozen_stages=-2 .*>= -1'),
    (dict(type='DWNet', arch=TINY, pad_to_window='yes'), TypeError,
     r"pad_to_window='yes' .*True or False"),
    (dict(type='DWNet', arch=TINY, norm2_cfg='BN'), TypeError,
     r"norm2_cfg='BN'.*dict\(type='BN'\)"),
    # mixers
    (dict(type='SwinNet', arch=TINY, mixer=dict(window_size=0)), ValueError,
     r'window_size=0 .*int >= 1'),
    (dict(type='SwinNet', arch=TINY, mixer=dict(window_size=-1)), ValueError, r'window_size=-1'),
    (dict(type='LocalMLPNet', arch=TINY, mixer=dict(window_size=7.0)), TypeError,
     r'window_size=7\.0 .*got a float'),
    (dict(type='SlidingWindowNet', arch=TINY, mixer=dict(kernel_size=-3)), ValueError,
     r'kernel_size=-3 .*odd'),
    (dict(type='SlidingWindowNet', arch=TINY, mixer=dict(kernel_size=7.0)), TypeError,
     r'kernel_size=7\.0'),
    (dict(type='SlidingWindowNet', arch=TINY, mixer=dict(kernel_size='seven')), TypeError,
     r"kernel_size='seven' .*got a str"),
    (dict(type='SlidingWindowNet', arch=TINY, mixer=dict(kernel_size=6)), ValueError,
     r'kernel_size=6 .*odd'),
    (dict(type='DWNet', arch=TINY, mixer=dict(kernel_size=-3)), ValueError, r'kernel_size=-3'),
    (dict(type='DynamicDWNet', arch=TINY, mixer=dict(kernel_size='seven')), TypeError,
     r"kernel_size='seven'"),
    (dict(type='DynamicDWNet', arch=TINY, mixer=dict(reduction=0)), ValueError,
     r'reduction in stage 0: 0 does not divide 16'),
    (dict(type='IDynamicDWNet', arch=TINY, mixer=dict(group_channels=5)), ValueError,
     r'group_channels in stage 0: 5 does not divide 16'),
    (dict(type='SwinNet', arch=_arch(num_heads=[3, 2, 4, 8])), ValueError,
     r'num_heads in stage 0: 3 does not divide 16'),
    (dict(type='DWNet', arch=TINY, mixer=dict(share_channels='no')), TypeError,
     r"share_channels='no'"),
    (dict(type='SwinNet', arch=TINY, mixer=dict(attn_drop=-0.5)), ValueError, r'attn_drop=-0\.5'),
    # a mixer given the wrong way
    (dict(type='LocalMixerNet', arch=TINY, mixer='DWConv'), TypeError,
     r"mixer='DWConv' .*Use dict\(type='DWConv'\)"),
    (dict(type='DWNet', arch=TINY, mixer='DWConv'), TypeError,
     r"mixer='DWConv' .*Use mixer=dict\(type='DWConv'\)"),
    (dict(type='DWNet', arch=TINY, mixer=[dict(kernel_size=7)] * 4), TypeError,
     r'one mixer config for every stage.*LocalMixerNet\(mixer=\[\.\.\.\]\)'),
    (dict(type='LocalMixerNet', arch=TINY, mixer=[dict(type='DWConv')] * 3), ValueError,
     r'3 mixer configs given for 4 stages'),
    (dict(type='LocalMixerNet', arch=TINY, mixer=[dict(type='DWConv')] * 3 + ['DWConv']),
     TypeError, r"mixer\[3\]='DWConv' .*Use dict\(type='DWConv'\)"),
    (dict(type='LocalMixerNet', arch=TINY, mixer=dict(type='DWConvv')), KeyError,
     r"'DWConvv' is not a registered mmdwnet module.*'DWConv'"),
]


@pytest.mark.parametrize('cfg, error, message', BAD_BACKBONES,
                         ids=[f'{i}-{c["type"]}' for i, (c, _, _) in enumerate(BAD_BACKBONES)])
def test_bad_backbone_arguments_fail_at_construction(cfg, error, message):
    with pytest.raises(error, match=message):
        MODELS.build(cfg)


BAD_PARTS = [
    (lambda: MixerBlock(16, nn.Identity(), se_ratio=-4), ValueError, r'MixerBlock: se_ratio=-4'),
    (lambda: MixerBlock(16, nn.Identity(), drop_path=1.0), ValueError,
     r'MixerBlock: drop_path=1\.0'),
    (lambda: MixerBlock(16, 'DWConv'), TypeError, r'mixer must be a built nn\.Module'),
    (lambda: MixerBlock(16, nn.Identity(), with_cp=1), TypeError, r'with_cp=1 .*True or False'),
    (lambda: MixerBlock(16, nn.Identity(), act_cfg='GELU'), TypeError,
     r"act_cfg='GELU'.*dict\(type='GELU'\)"),
    (lambda: PatchMerging(0), ValueError, r'PatchMerging: in_channels=0'),
    (lambda: PatchMerging(8, out_channels=-1), ValueError, r'out_channels=-1'),
    (lambda: DWConv(16, kernel_size=0), ValueError, r'DWConv: kernel_size=0'),
    (lambda: DWConv(16, kernel_size=True), TypeError, r'kernel_size=True .*got a bool'),
    (lambda: DWConv(16, share_positions=False, input_resolution=(8, -8)), ValueError,
     r'input_resolution=\(8, -8\)'),
    (lambda: IDynamicDWConv(16, group_channels=0), ValueError, r'0 does not divide 16'),
    (lambda: ShiftedWindowAttention(16, 2, window_size=0), ValueError,
     r'ShiftedWindowAttention: window_size=0'),
    (lambda: ShiftedWindowAttention(16, 2, shift=1), TypeError, r'shift=1 .*True or False'),
    (lambda: LocalMLP(16, 2, share_positions=False), ValueError, r'needs input_resolution'),
    (lambda: SlidingWindowAttention(16, 0), ValueError, r'num_heads: 0 does not divide 16'),
    (lambda: SlidingWindowAttention(0, 1), ValueError, r'embed_dims=0'),
]


@pytest.mark.parametrize('build, error, message', BAD_PARTS)
def test_bad_block_and_mixer_arguments_fail_at_construction(build, error, message):
    with pytest.raises(error, match=message):
        build()


def _backbone(name, **kwargs):
    extra = dict(pad_to_window=True) if name != 'LocalMLPNet' else dict(
        img_size=64, mixer=dict(share_positions=True), pad_to_window=True)
    torch.manual_seed(0)
    return MODELS.build(dict(type=name, arch=TINY, out_indices=(0, 1, 2, 3), **extra, **kwargs))


BAD_INPUTS = [
    (torch.randn(3, 64, 64), ValueError,
     r'\(B, C, H, W\) with C = in_channels = 3, got \(3, 64, 64\)'),
    (torch.randn(1, 1, 3, 64, 64), ValueError, r'\(B, C, H, W\).*got \(1, 1, 3, 64, 64\)'),
    (torch.randn(1, 4, 64, 64), ValueError, r'C = in_channels = 3, got \(1, 4, 64, 64\)'),
    (torch.zeros(1, 3, 64, 64, dtype=torch.long), TypeError, r'floating-point.*x\.float\(\)'),
    ([[0.0]], ValueError, r'\(B, C, H, W\).*got list'),
]


@pytest.mark.parametrize('x, error, message', BAD_INPUTS)
def test_bad_inputs_name_the_expected_shape(x, error, message):
    bb = _backbone('DWNet').eval()
    with pytest.raises(error, match=message):
        bb(x)


def test_sizes_that_need_pad_to_window_say_so():
    swin = MODELS.build(dict(type='SwinNet', arch=TINY))
    with pytest.raises(ValueError, match=r'smaller than the window.*pad_to_window=True'):
        swin(torch.randn(1, 3, 128, 128))
    mlp = MODELS.build(dict(type='LocalMLPNet', arch=TINY, img_size=224))
    with pytest.raises(ValueError, match=r'built for \(56, 56\) maps and cannot take \(64, 64\)'):
        mlp(torch.randn(1, 3, 256, 256))


@pytest.mark.parametrize('name', PRESETS)
def test_empty_batch_gives_empty_outputs_of_the_right_shape(name):
    bb = _backbone(name)
    x = torch.randn(0, 3, 64, 64)
    expected = [(0, 16, 16, 16), (0, 32, 8, 8), (0, 64, 4, 4), (0, 128, 2, 2)]
    bb.eval()
    with torch.no_grad():
        assert [tuple(o.shape) for o in bb(x)] == expected
    bb.train()  # training forward (autograd recording, batch statistics) as well
    outs = bb(x.requires_grad_())
    assert [tuple(o.shape) for o in outs] == expected
    sum(o.sum() for o in outs).backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize('name', ['DWNet', 'SwinNet'])
def test_largest_drop_path_rate_trains_without_nan(name):
    """The largest allowed rate (just below 1): every block drops almost every sample, and the
    survivors are scaled by 1 / keep_prob; training steps stay finite."""
    rate = math.nextafter(1.0, 0.0)
    bb = _backbone(name, drop_path_rate=rate).train()
    assert bb.stages[-1].blocks[-1].drop_path.drop_prob < 1  # not rounded up to 1 per block
    opt = torch.optim.AdamW(bb.parameters(), lr=1e-3)
    for _ in range(2):
        outs = bb(torch.randn(2, 3, 32, 32))
        loss = sum(o.pow(2).mean() for o in outs)
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in bb.parameters() if p.grad is not None)
        opt.step()
    assert all(torch.isfinite(p).all() for p in bb.parameters())
    # the check can fail: a rate of exactly 1 (now refused) gives NaN
    bb.stages[-1].blocks[-1].drop_path.drop_prob = 1.0
    assert not all(torch.isfinite(o).all() for o in bb(torch.randn(2, 3, 32, 32)))


def test_docstring_examples_run():
    from mmdwnet.models import checks
    from mmdwnet.models.backbones import local_mixer_net, presets
    for module in (checks, local_mixer_net, presets):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__
