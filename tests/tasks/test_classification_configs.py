"""ImageNet configs: names, inheritance, the training recipe, model sizes against the paper."""
import ast
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmdwnet.analysis import count_params
from mmdwnet.apis import init_model

ROOT = Path(__file__).resolve().parents[2]
CLS = ROOT / 'configs' / 'classification'
FAMILIES = {  # config prefix -> (paper_tables key, backbone type)
    'swin': ('swin', 'SwinNet'),
    'local-mlp': ('local_mlp', 'LocalMLPNet'),
    'dwnet': ('dwnet', 'DWNet'),
    'dynamic-dwnet': ('dynamic_dwnet', 'DynamicDWNet'),
    'i-dynamic-dwnet': ('i_dynamic_dwnet', 'IDynamicDWNet'),
}
TABLE2 = {f'{prefix}-{size}_8xb128_in1k.py': (f'{key}_{size}', backbone, size)
          for prefix, (key, backbone) in FAMILIES.items() for size in ('tiny', 'base')}
# ablation config -> (paper_tables section, entry) with published parameter counts
ABLATION_PARAMS = {
    'local-mlp-tiny-share-pos_8xb128_in1k.py': ('weight_sharing_table4', 'local_mlp_sp_only'),
    'local-mlp-tiny-share-ch-pos_8xb128_in1k.py': ('weight_sharing_table4', 'local_mlp_sc_sp'),
    'dwnet-tiny-share-ch_8xb128_in1k.py': ('weight_sharing_table4', 'dwconv_sc_only'),
    'dwnet-tiny-share-ch-pos_8xb128_in1k.py': ('weight_sharing_table4', 'dwconv_sc_sp'),
    'sliding-attention-tiny_8xb128_in1k.py': ('dynamic_manner_table5', 'attention_sliding'),
    'swin-tiny-w12_8xb128-ft30e_in1k-384px.py': ('retrain_384_table14', 'swin_w12'),
    'dwnet-tiny-k12_8xb128-ft30e_in1k-384px.py': ('retrain_384_table14', 'dwnet_k12'),
    'swin-tiny-se_8xb128_in1k.py': ('se_table15', 'swin_se'),
    'dwnet-tiny-se_8xb128_in1k.py': ('se_table15', 'dwnet_se'),
}
LEAVES = sorted(p.name for p in CLS.glob('*.py'))


@pytest.fixture(scope='module')
def params():
    """Parameter count of every leaf config's model (built once)."""
    torch.manual_seed(0)
    return {name: count_params(init_model(str(CLS / name))) for name in LEAVES}


def test_the_ten_table2_configs_exist_with_their_exact_names():
    missing = [name for name in TABLE2 if not (CLS / name).is_file()]
    assert not missing
    for name, (_, backbone, size) in TABLE2.items():
        cfg = Config.fromfile(str(CLS / name))
        assert cfg.model.backbone.type == backbone and cfg.model.backbone.arch == size
        assert cfg.model.backbone.drop_path_rate == {'tiny': 0.2, 'base': 0.5}[size]
        assert cfg.model.head.in_channels == {'tiny': 768, 'base': 1024}[size]
        assert cfg.train_dataloader.batch_size == 128  # x 8 GPUs = 1024


@pytest.mark.parametrize('name', LEAVES)
def test_leaf_configs_are_short_and_inherit_base(name):
    tree = ast.parse((CLS / name).read_text())
    targets = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
    assert targets[0] == '_base_', f'{name} must start from _base_'
    assert len(targets) <= 3, f'{name} should only override what differs: {targets}'
    cfg = Config.fromfile(str(CLS / name))
    assert cfg.default_scope == 'mmpretrain'
    assert 'mmdwnet' in cfg.custom_imports.imports


def test_every_config_builds_and_runs_a_forward_pass_at_its_resolution(params):
    assert set(params) == set(LEAVES)
    for name in LEAVES:  # a shrunk copy runs a forward pass at the config's img_size
        cfg = Config.fromfile(str(CLS / name))
        backbone = cfg.model.backbone
        if backbone.type in ('SVT', 'VOLONet', 'MixerSwap'):  # Table 13: test_table13.py
            continue
        backbone.arch = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
        cfg.model.head.in_channels = 128
        size = backbone.get('img_size', 224)
        model = init_model(cfg)
        with torch.no_grad():
            out = model(torch.randn(1, 3, size, size), mode='tensor')
        assert out.shape == (1, cfg.model.head.num_classes), name
        assert cfg.model.head.num_classes == (21842 if name.endswith('_in21k.py') else 1000)


def test_table2_parameter_counts_match_the_paper(params, paper_tables):
    for name, (key, _, _) in TABLE2.items():
        paper = paper_tables['imagenet_table2'][key]['params']
        assert round(params[name] / 1e6) == paper, (name, params[name], paper)
        official = paper_tables['official_counts'].get(key)
        if official is not None:
            assert abs(params[name] / 1e6 - official['params_exact']) <= 0.01, name


def test_ablation_parameter_counts_match_the_paper(params, paper_tables):
    for name, (section, key) in ABLATION_PARAMS.items():
        paper = paper_tables[section][key]['params']
        ours = params[name] / 1e6
        if isinstance(paper, int):
            assert round(ours) == paper, (name, ours, paper)
        else:  # published with one decimal (Table 4)
            assert abs(ours - paper) <= 0.07, (name, ours, paper)


def test_table14_k12_model_has_true_12x12_kernels(params):
    """The paper's 12x12 kernels (even: same-size output by asymmetric padding), 24.59M."""
    assert round(params['dwnet-tiny-k12_8xb128-ft30e_in1k-384px.py'] / 1e6, 2) == 24.59


def test_training_recipe():
    cfg = Config.fromfile(str(CLS / 'dwnet-tiny_8xb128_in1k.py'))
    train = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
    assert train['RandomResizedCrop']['scale'] == 224
    assert train['RandomResizedCrop']['interpolation'] == 'bicubic'
    assert train['RandomFlip']['prob'] == 0.5
    ra = train['RandAugment']
    assert (ra['policies'], ra['magnitude_level'], ra['magnitude_std'], ra['num_policies']) == \
        ('timm_increasing', 9, 0.5, 2)
    assert train['RandomErasing']['erase_prob'] == 0.25
    test = [t['type'] for t in cfg.val_dataloader.dataset.pipeline]
    assert test == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop', 'PackInputs']
    resize = cfg.val_dataloader.dataset.pipeline[1]
    assert (resize['scale'], resize['edge'], resize['interpolation']) == (256, 'short', 'bicubic')
    assert cfg.val_dataloader.dataset.pipeline[2]['crop_size'] == 224
    dataset = cfg.train_dataloader.dataset
    assert (dataset.type, dataset.data_root, dataset.split) == \
        ('ImageNetFolder', 'data/imagenet', 'train')
    assert not dataset.get('ann_file')  # the folder layout needs no annotation files

    assert [a['type'] for a in cfg.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert [a['alpha'] for a in cfg.model.train_cfg.augments] == [0.8, 1.0]
    assert cfg.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                       mode='original')

    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW' and optim.optimizer.lr == pytest.approx(1e-3)
    assert optim.optimizer.weight_decay == 0.05 and optim.clip_grad == dict(max_norm=5.0)
    assert cfg.auto_scale_lr.base_batch_size == 1024
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, warmup.by_epoch, warmup.convert_to_iter_based) == \
        ('LinearLR', 20, True, True)
    assert (cosine.type, cosine.begin) == ('CosineAnnealingLR', 20)
    assert cfg.train_cfg.max_epochs == 300
    assert not any(h['type'] == 'EMAHook' for h in cfg.get('custom_hooks', []))
    assert cfg.default_hooks.checkpoint.interval == 1


def _weight_decays(config):
    """{parameter name: weight decay} of the optimizer the config builds (tiny backbone)."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(str(CLS / config))
    cfg.model.backbone.arch = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
    cfg.model.head.in_channels = 128
    model = init_model(cfg)
    init_default_scope('mmpretrain')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: group['weight_decay'] for group in wrapper.optimizer.param_groups
            for p in group['params']}


@pytest.mark.parametrize('config,no_decay,decay', [
    ('swin-tiny_8xb128_in1k.py',
     ['mixer.relative_position_bias_table', 'norm1.weight', 'mixer.qkv.bias', 'norm3.weight'],
     ['mixer.qkv.weight', 'ffn.layers.0.0.weight', 'patch_embed.projection.weight']),
    ('local-mlp-tiny_8xb128_in1k.py', ['mixer.relative_position_bias_table'],
     ['mixer.local_weight']),
    ('dynamic-dwnet-tiny_8xb128_in1k.py',
     ['mixer.aggregate.bias', 'mixer.norm_in.weight', 'mixer.aggregate.expand.bias'],
     ['mixer.aggregate.expand.weight', 'mixer.proj_in.weight']),
    ('dwnet-tiny_8xb128_in1k.py', ['mixer.aggregate.bias', 'norm2.bias'],
     ['mixer.aggregate.weight']),
])
def test_no_weight_decay_on_norms_biases_and_position_tables(config, no_decay, decay):
    decays = _weight_decays(config)
    for suffix, expected in [(s, 0.) for s in no_decay] + [(s, 0.05) for s in decay]:
        hits = [d for n, d in decays.items() if n.endswith(suffix)]
        assert hits and all(d == expected for d in hits), (suffix, hits)


def test_finetune_384_configs():
    """Table 14 fine-tunes at 384 with the paper's Appendix E settings: 30 epochs, lr 1e-5,
    weight decay 1e-8, stochastic depth 0.1."""
    for name, key, size in [('swin-tiny-w12_8xb128-ft30e_in1k-384px.py', 'window_size', 12),
                            ('dwnet-tiny-k12_8xb128-ft30e_in1k-384px.py', 'kernel_size', 12),
                            ('dwnet-tiny-k7_8xb128-ft30e_in1k-384px.py', 'kernel_size', 7),
                            ('swin-tiny-w7_8xb128-ft30e_in1k-384px.py', 'window_size', 7)]:
        cfg = Config.fromfile(str(CLS / name))
        assert cfg.model.backbone.img_size == 384 and cfg.model.backbone.mixer[key] == size
        assert cfg.model.backbone.drop_path_rate == 0.1
        assert cfg.optim_wrapper.optimizer.lr == 1e-5
        assert cfg.optim_wrapper.optimizer.weight_decay == 1e-8
        assert cfg.train_dataloader.dataset.pipeline[1]['scale'] == 384
        assert cfg.val_dataloader.dataset.pipeline[2]['crop_size'] == 384
        assert cfg.train_cfg.max_epochs == 30 and cfg.load_from


@pytest.mark.parametrize('norm_first', [True, False])
def test_table6_extra_conv_is_shuffle_transformers_form(norm_first):
    """Table 6: x + DW(BN(x)) as Shuffle Transformer (the config's default); the variant
    x + BN(DW(x)) on request. Checked against the formula; conv-BN fusion stays exact."""
    from mmcv.cnn import fuse_conv_bn
    cfg = Config.fromfile(str(CLS / 'i-dynamic-dwnet-tiny-ffn-dw7_8xb128_in1k.py'))
    backbone = cfg.model.backbone
    backbone.arch = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
    backbone.ffn_dwconv_norm_first = norm_first
    cfg.model.head.in_channels = 128
    layer = init_model(cfg).backbone.stages[0].blocks[0].ffn_dwconv
    assert layer.norm_first is norm_first and layer.conv.kernel_size == (7, 7)
    torch.manual_seed(0)
    torch.nn.init.normal_(layer.norm.running_mean)
    torch.nn.init.uniform_(layer.norm.running_var, 0.5, 2.)
    torch.nn.init.normal_(layer.norm.weight)
    layer.eval()
    x = torch.randn(2, 9, 11, 16)  # (B, H, W, C)
    nchw = x.permute(0, 3, 1, 2)
    bn = layer.norm

    def norm(t):
        return (t - bn.running_mean.view(1, -1, 1, 1)) / (bn.running_var.view(1, -1, 1, 1)
                                                          + bn.eps).sqrt() \
            * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)

    def conv(t):
        return torch.nn.functional.conv2d(t, layer.conv.weight, layer.conv.bias, padding=3,
                                          groups=16)

    with torch.no_grad():
        branch = conv(norm(nchw)) if norm_first else norm(conv(nchw))
        expected = x + branch.permute(0, 2, 3, 1)
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
        fused = fuse_conv_bn(layer)
        assert isinstance(fused.norm, torch.nn.Identity) is (not norm_first)  # BN after conv
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4)
