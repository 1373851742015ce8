"""Issue 3: one backbone for all tasks: options, parameter counts, errors."""
import pytest
import torch
from mmcv.cnn import fuse_conv_bn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdwnet.registry import MODELS

TINY = dict(embed_dims=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 4, 8])
PRESETS = ['DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet', 'LocalMLPNet']


def _count(cfg, num_classes=1000):
    bb = MODELS.build(cfg)
    return (sum(p.numel() for p in bb.parameters()) + bb.num_features[-1] * num_classes +
            num_classes) / 1e6


@pytest.mark.parametrize('key, name', [('dwnet', 'DWNet'), ('dynamic_dwnet', 'DynamicDWNet'),
                                       ('i_dynamic_dwnet', 'IDynamicDWNet'), ('swin', 'SwinNet')])
@pytest.mark.parametrize('size', ['tiny', 'base'])
def test_params_equal_the_official_code(key, name, size, paper_tables):
    official = paper_tables['official_counts'][f'{key}_{size}']['params_exact']
    assert abs(_count(dict(type=name, arch=size)) - official) < 0.005


def test_local_mlp_and_table4_match_the_paper(paper_tables):
    t4 = paper_tables['weight_sharing_table4']
    cfgs = {
        'local_mlp_sp_only': dict(type='LocalMLPNet', mixer=dict(share_positions=True,
                                                                 share_channels=False)),
        'local_mlp_sc_only': dict(type='LocalMLPNet'),
        'local_mlp_sc_sp': dict(type='LocalMLPNet', mixer=dict(share_positions=True)),
        'dwconv_sp_only': dict(type='DWNet'),
        'dwconv_sc_only': dict(type='DWNet', mixer=dict(share_channels=True,
                                                        share_positions=False)),
        'dwconv_sc_sp': dict(type='DWNet', mixer=dict(share_channels=True)),
    }
    for key, cfg in cfgs.items():
        # the paper prints one decimal; our exact counts are within 0.07M of it
        assert abs(_count(cfg) - t4[key]['params']) < 0.07, key
    table2 = paper_tables['imagenet_table2']
    assert round(_count(dict(type='LocalMLPNet'))) == table2['local_mlp_tiny']['params']
    assert round(_count(dict(type='LocalMLPNet', arch='base'))) == table2['local_mlp_base']['params']
    se = paper_tables['se_table15']
    assert round(_count(dict(type='DWNet', se_ratio=16))) == se['dwnet_se']['params']
    assert round(_count(dict(type='SwinNet', se_ratio=16))) == se['swin_se']['params']


@pytest.mark.parametrize('name', PRESETS)
def test_any_input_size_in_detection_mode(name):
    kwargs = dict(img_size=(97, 131)) if name == 'LocalMLPNet' else {}
    if name == 'LocalMLPNet':
        kwargs['mixer'] = dict(share_positions=True)
    bb = MODELS.build(dict(type=name, arch=TINY, out_indices=(0, 1, 2, 3), pad_to_window=True,
                           out_norm_cfg=dict(type='BN'), **kwargs)).eval()
    outs = bb(torch.randn(2, 3, 97, 131))
    assert [o.shape for o in outs] == [(2, 16, 25, 33), (2, 32, 13, 17), (2, 64, 7, 9),
                                       (2, 128, 4, 5)]
    assert all(isinstance(getattr(bb, f'norm{i}'), _BatchNorm) for i in range(4))


def test_classification_mode_rejects_maps_smaller_than_a_window():
    bb = MODELS.build(dict(type='SwinNet', arch=TINY))
    with pytest.raises(ValueError, match=r'feature map 4x4 in stage 3 is smaller than the window'):
        bb(torch.randn(1, 3, 128, 128))


def test_out_indices_frozen_stages_norm_eval_and_train_returns_self():
    bb = MODELS.build(dict(type='DWNet', arch=TINY, out_indices=(1, 3), frozen_stages=2,
                           norm_eval=True))
    assert bb.train() is bb
    assert not any(p.requires_grad for p in bb.patch_embed.parameters())
    assert not any(p.requires_grad for p in bb.stages[1].parameters())
    assert all(p.requires_grad for p in bb.stages[2].parameters())
    assert not bb.norm1.weight.requires_grad and bb.norm3.weight.requires_grad
    assert not bb.stages[0].training and bb.stages[2].training
    assert all(not m.training for m in bb.modules() if isinstance(m, _BatchNorm))
    assert bb.eval() is bb
    outs = bb(torch.randn(1, 3, 224, 224))
    assert [o.shape[1] for o in outs] == [32, 128]
    with pytest.raises(ValueError, match='out_indices'):
        MODELS.build(dict(type='DWNet', arch=TINY, out_indices=(4, )))


def test_with_cp_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    a = MODELS.build(dict(type='IDynamicDWNet', arch=TINY, drop_path_rate=0.))
    b = MODELS.build(dict(type='IDynamicDWNet', arch=TINY, drop_path_rate=0., with_cp=True))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64)
    ya, yb = a(x)[0], b(x)[0]
    assert torch.allclose(ya, yb)
    ya.sum().backward()
    yb.sum().backward()
    ga = a.stages[0].blocks[0].mixer.proj_in.weight.grad
    gb = b.stages[0].blocks[0].mixer.proj_in.weight.grad
    assert torch.allclose(ga, gb, atol=1e-5)


def test_init_cfg_pretrained_loads_a_checkpoint(tmp_path):
    src = MODELS.build(dict(type='DWNet', arch=TINY))
    torch.save(dict(state_dict={'backbone.' + k: v for k, v in src.state_dict().items()}),
               tmp_path / 'cls.pth')
    dst = MODELS.build(dict(type='DWNet', arch=TINY, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'cls.pth'), prefix='backbone.')))
    dst.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


@pytest.mark.parametrize('name', ['DWNet', 'DynamicDWNet', 'IDynamicDWNet'])
def test_fuse_conv_bn_folds_the_block_and_keeps_outputs(name):
    torch.manual_seed(0)
    bb = MODELS.build(dict(type=name, arch=TINY)).eval()
    for m in bb.modules():  # non-trivial BN statistics
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = bb(x)[0]
        fused = fuse_conv_bn(bb)
        out = fused(x)[0]
    assert torch.allclose(ref, out, atol=1e-4)
    mixer = fused.stages[0].blocks[0].mixer
    assert isinstance(mixer.norm_in, torch.nn.Identity)
    assert isinstance(mixer.norm_out, torch.nn.Identity)
    if name == 'DWNet':
        assert isinstance(mixer.norm_mid, torch.nn.Identity)
    else:
        assert isinstance(mixer.aggregate.norm, torch.nn.Identity)


@pytest.mark.parametrize('cfg, message', [
    (dict(type='DWNet', arch='tinyy'), r"unknown arch 'tinyy'.*close: \['tiny'\]"),
    (dict(type='DWNet', arch=dict(embed_dims=16, depths=[1, 1])), r"missing \['num_heads'\]"),
    (dict(type='DWNet', arch=dict(embed_dims=16, depths=[1, 1], num_heads=[1, 2, 3])),
     r'2 stages .* 3 num_heads'),
    (dict(type='DynamicDWNet', arch=TINY, mixer=dict(kernel_size=0)),
     r'DynamicDWConv \(stage 0\): kernel_size=0 is not allowed; it must be an int >= 1'),
    (dict(type='IDynamicDWNet', arch=TINY, mixer=dict(group_channels=3)),
     r'IDynamicDWConv: group_channels in stage 0: 3 does not divide 16'),
    (dict(type='SwinNet', arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[3, 2, 4, 8])),
     r'ShiftedWindowAttention: num_heads in stage 0: 3 does not divide 16'),
    (dict(type='DWNet', arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 7]),
          mixer=dict(share_channels=True)), r'num_heads in stage 3: 7 does not divide 128'),
    (dict(type='DynamicDWNet', arch=dict(embed_dims=6, depths=[1], num_heads=1), out_indices=0),
     r'reduction in stage 0: 4 does not divide 6'),
    (dict(type='DWNet', arch=TINY, mixer=dict(type='SwinNet')), r'DWNet uses the DWConv mixer'),
])
def test_bad_configs_raise_clear_errors(cfg, message):
    with pytest.raises(ValueError, match=message):
        MODELS.build(cfg)


def test_position_specific_weights_reject_other_sizes():
    bb = MODELS.build(dict(type='LocalMLPNet', arch=TINY, img_size=224))
    bb(torch.randn(1, 3, 224, 224))
    with pytest.raises(ValueError, match=r'built for \(56, 56\) maps and cannot take \(64, 64\)'):
        bb(torch.randn(1, 3, 256, 256))


def test_classifier_layer_norm_does_not_load_into_batch_norm_outputs(tmp_path):
    """ImageNet weights into a detection backbone: blocks load, the BN output norms do not
    take the classifier's final LN (official downstream behaviour)."""
    cls = MODELS.build(dict(type='DWNet', arch=TINY))
    with torch.no_grad():
        cls.norm3.weight.fill_(3.)
    torch.save(dict(state_dict={'backbone.' + k: v for k, v in cls.state_dict().items()}),
               tmp_path / 'cls.pth')
    det = MODELS.build(dict(type='DWNet', arch=TINY, out_indices=(0, 1, 2, 3),
                            out_norm_cfg=dict(type='BN'), init_cfg=dict(
                                type='Pretrained', checkpoint=str(tmp_path / 'cls.pth'),
                                prefix='backbone.')))
    det.init_weights()
    assert torch.equal(det.norm3.weight, torch.ones(128))
    assert torch.equal(det.stages[0].blocks[0].mixer.proj_in.weight,
                       cls.stages[0].blocks[0].mixer.proj_in.weight)
    # a detection checkpoint (BN output norms) still loads strictly
    det2 = MODELS.build(dict(type='DWNet', arch=TINY, out_indices=(0, 1, 2, 3),
                             out_norm_cfg=dict(type='BN')))
    with torch.no_grad():
        det.norm3.weight.fill_(2.)
    det2.load_state_dict(det.state_dict(), strict=True)
    assert torch.equal(det2.norm3.weight, det.norm3.weight)
