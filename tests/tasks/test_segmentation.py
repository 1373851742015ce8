"""UPerNet ADE20K configs: recipe, parameter counts (paper Table 3), optimizer, FLOP counter,
official-checkpoint conversion."""
import contextlib
import copy
import functools
import re
from pathlib import Path
from unittest import mock

import pytest
import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs' / 'segmentation'
MODELS = {  # config name part -> (paper_tables key, backbone type)
    'swin-tiny': ('swin_tiny', 'SwinNet'),
    'dwnet-tiny': ('dwnet_tiny', 'DWNet'),
    'dynamic-dwnet-tiny': ('dynamic_dwnet_tiny', 'DynamicDWNet'),
    'i-dynamic-dwnet-tiny': ('i_dynamic_dwnet_tiny', 'IDynamicDWNet'),
    'swin-base': ('swin_base', 'SwinNet'),
    'dwnet-base': ('dwnet_base', 'DWNet'),
    'dynamic-dwnet-base': ('dynamic_dwnet_base', 'DynamicDWNet'),
    'i-dynamic-dwnet-base': ('i_dynamic_dwnet_base', 'IDynamicDWNet'),
}
NARROW = dict(_delete_=True, embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
SYNC_BN = dict(type='SyncBN', requires_grad=True)


def config_path(name):
    return CONFIGS / f'upernet_{name}_8xb2-160k_ade20k-512x512.py'


@functools.lru_cache(maxsize=None)
def _load(name):
    return Config.fromfile(str(config_path(name)))


def load_cfg(name):
    """The parsed config (parsed once per session: mmseg:: bases are slow to resolve)."""
    return copy.deepcopy(_load(name))


def narrow_cfg(name, num_classes=150):
    cfg = load_cfg(name)
    cfg.merge_from_dict(dict(model=dict(
        backbone=dict(arch=copy.deepcopy(NARROW), init_cfg=None),
        decode_head=dict(in_channels=[16, 32, 64, 128], channels=16, num_classes=num_classes),
        auxiliary_head=dict(in_channels=64, channels=8, num_classes=num_classes))))
    return cfg


def plain(d):
    """A config dict without the ``_scope_`` that mmseg:: bases add."""
    return {k: v for k, v in d.items() if k != '_scope_'}


def build(cfg):
    from mmdwnet.apis import init_model
    return init_model(cfg)


@contextlib.contextmanager
def no_weight_init():
    """Skip random initialisation while building (parameter counting only): fast."""
    with contextlib.ExitStack() as stack:
        for name in ('kaiming_uniform_', 'kaiming_normal_', 'uniform_', 'normal_',
                     'trunc_normal_', 'xavier_uniform_'):
            stack.enter_context(mock.patch.object(torch.nn.init, name, lambda t, *a, **k: t))
        yield


def test_exactly_the_eight_configs():
    # (the ImageNet-21k pre-trained variants of Table 11 are tested in tests/converters/test_in21k.py)
    names = sorted(p.name for p in CONFIGS.glob('upernet_*_8xb2-160k_ade20k-512x512.py')
                   if '-in21k-pre_' not in p.name)
    assert names == sorted(config_path(n).name for n in MODELS)


@pytest.mark.parametrize('name', list(MODELS))
def test_config_recipe(name):
    cfg = load_cfg(name)
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports == dict(imports=['mmdwnet'], allow_failed_imports=False)
    m = cfg.model
    assert m.type == 'EncoderDecoder' and m.data_preprocessor.size == (512, 512)
    bb = m.backbone
    assert bb.type == MODELS[name][1]
    assert bb.arch == ('tiny' if 'tiny' in name else 'base')
    assert bb.out_indices == (0, 1, 2, 3) and bb.pad_to_window is True
    assert bb.drop_path_rate == 0.3
    swin = name.startswith('swin')
    assert bb.out_norm_cfg == (dict(type='LN') if swin else SYNC_BN)
    if not swin:  # every BN of the official segmentation DWNet is a SyncBN
        assert bb.norm2_cfg == SYNC_BN and bb.mixer.norm_cfg == SYNC_BN
    else:
        assert 'norm2_cfg' not in bb and 'mixer' not in bb
    assert bb.init_cfg.type == 'Pretrained' and bb.init_cfg.prefix == 'backbone.'
    assert name in bb.init_cfg.checkpoint

    dims = [96, 192, 384, 768] if 'tiny' in name else [128, 256, 512, 1024]
    head, aux = m.decode_head, m.auxiliary_head
    assert head.type == 'UPerHead' and head.in_channels == dims
    assert head.in_index == [0, 1, 2, 3] and head.pool_scales == (1, 2, 3, 6)
    assert head.channels == 512 and head.num_classes == 150 and head.norm_cfg == SYNC_BN
    assert aux.type == 'FCNHead' and aux.in_index == 2 and aux.in_channels == dims[2]
    assert aux.loss_decode.loss_weight == 0.4 and aux.norm_cfg == SYNC_BN
    assert aux.num_classes == 150 and m.test_cfg.mode == 'whole'

    opt = cfg.optim_wrapper
    assert opt.type == 'OptimWrapper'
    assert plain(opt.optimizer) == dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                                        weight_decay=0.01)
    warmup, poly = map(plain, cfg.param_scheduler)
    assert warmup == dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500)
    assert poly == dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000,
                        by_epoch=False)
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16

    train = {t['type']: plain(t) for t in cfg.train_dataloader.dataset.pipeline}
    assert train['LoadAnnotations']['reduce_zero_label'] is True
    assert train['RandomResize'] == dict(type='RandomResize', scale=(2048, 512),
                                         ratio_range=(0.5, 2.0), keep_ratio=True)
    assert train['RandomCrop'] == dict(type='RandomCrop', crop_size=(512, 512),
                                       cat_max_ratio=0.75)
    assert train['RandomFlip']['prob'] == 0.5 and 'PhotoMetricDistortion' in train
    test = {t['type']: plain(t) for t in cfg.test_dataloader.dataset.pipeline}
    assert test['Resize'] == dict(type='Resize', scale=(2048, 512), keep_ratio=True)
    assert cfg.test_dataloader.dataset.type == 'ADE20KDataset'
    assert cfg.test_evaluator.type == 'IoUMetric'
    assert cfg.tta_model.type == 'SegTTAModel'


@pytest.mark.parametrize('name', list(MODELS))
def test_params_match_paper_table3(name, paper_tables):
    from mmengine.registry import DefaultScope

    import mmdwnet  # noqa: F401
    from mmseg.registry import MODELS as SEG_MODELS
    cfg = load_cfg(name)
    with no_weight_init(), DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(cfg.model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    paper = paper_tables['ade20k_upernet_160k'][MODELS[name][0]]['params']
    assert round(params) == paper or abs(params - paper) <= 1, (name, params, paper)


def _decay(optim_wrapper, model, key):
    param = dict(model.named_parameters())[key]
    for group in optim_wrapper.optimizer.param_groups:
        if any(p is param for p in group['params']):
            return group['weight_decay']
    raise KeyError(key)


@pytest.mark.parametrize('name', ['dwnet-tiny', 'swin-tiny'])
def test_no_weight_decay_on_norms_and_position_tables(name):
    from mmengine.optim import build_optim_wrapper
    cfg = narrow_cfg(name)
    model = build(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    keys = [k for k, _ in model.named_parameters()]
    no_decay = [k for k in keys if re.search(r'(norm\w*|\.bn|relative_position_bias_table)\.?'
                                             r'(weight|bias)?$', k)]
    assert 'decode_head.fpn_bottleneck.bn.weight' in no_decay
    assert 'backbone.norm0.weight' in no_decay and 'backbone.patch_embed.norm.bias' in no_decay
    if name == 'swin-tiny':
        assert 'backbone.stages.0.blocks.0.mixer.relative_position_bias_table' in no_decay
    else:
        assert 'backbone.stages.0.blocks.0.mixer.norm_mid.weight' in no_decay
        assert 'backbone.stages.0.blocks.0.norm2.weight' in no_decay
    for k in no_decay:
        assert _decay(wrapper, model, k) == 0, k
    for k in ('backbone.patch_embed.projection.weight', 'decode_head.conv_seg.weight',
              'backbone.stages.1.blocks.0.ffn.layers.0.0.weight',
              'auxiliary_head.convs.0.conv.weight'):
        assert _decay(wrapper, model, k) == 0.01, k
    assert wrapper.optimizer.defaults['lr'] == 6e-5


def test_warmup_then_poly_lr():
    """Both schedulers stepped every iteration, as the runner does: linear warm-up to 6e-5 over
    1500 iterations, then linear (power 1) decay towards 0 at 160k."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = narrow_cfg('dwnet-tiny')
    wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), cfg.optim_wrapper)
    schedulers = [PARAM_SCHEDULERS.build(dict(plain(c), optimizer=wrapper.optimizer))
                  for c in cfg.param_scheduler]
    lrs = []
    for _ in range(3501):
        lrs.append(wrapper.optimizer.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()
    assert lrs[0] == pytest.approx(6e-5 * 1e-6)
    assert lrs[750] == pytest.approx(6e-5 * 0.5, rel=1e-3)
    assert lrs[1499] == pytest.approx(6e-5, rel=1e-3)
    for t in (2500, 3500):
        assert lrs[t] == pytest.approx(lrs[1500] * (1 - (t - 1500) / 158500), rel=1e-6)
    assert lrs[1500] == pytest.approx(6e-5, rel=1e-3)


@pytest.mark.parametrize('name', ['dwnet-tiny', 'i-dynamic-dwnet-tiny', 'swin-tiny'])
def test_seg_flops_is_backbone_plus_decode_head(name):
    from mmdwnet.analysis import count_flops, flop_analyzer
    from mmdwnet.analysis.seg_flops import model_flops
    model = build(narrow_cfg(name, num_classes=7))
    h, w = 45, 67  # odd: padded inside the backbone
    total = model_flops(model, (h, w))
    assert isinstance(total, int)
    backbone = count_flops(model.backbone, (3, h, w))
    with torch.no_grad():
        feats = model.backbone(torch.randn(1, 3, h, w))

    class Head(torch.nn.Module):
        def __init__(self, head):
            super().__init__()
            self.head = head

        def forward(self, *xs):
            return self.head(list(xs))

    head = flop_analyzer(Head(model.decode_head), tuple(feats)).total()
    resize = 4 * 7 * h * w  # bilinear resize of the 7-class logits to the input (4 per output)
    assert backbone > 0 and head > 0
    assert total == backbone + head + resize  # the auxiliary head is not counted
    assert model.training is False


def test_seg_flops_bad_input():
    from mmdwnet.analysis.seg_flops import model_flops
    model = build(narrow_cfg('dwnet-tiny'))
    with pytest.raises(TypeError, match='needs an mmseg segmentor'):
        model_flops(model.backbone, (64, 64))
    for bad in [(64, ), (64, 0), 'ab', (1, 2, 3)]:
        with pytest.raises(ValueError, match=r'shape must be \(H, W\)'):
            model_flops(model, bad)


def test_get_flops_tool_uses_seg_counter(tmp_path):
    from mmdwnet.analysis.model_complexity import DEFAULT_SHAPES, model_complexity
    from mmdwnet.analysis.seg_flops import model_flops
    cfg = narrow_cfg('dynamic-dwnet-tiny')
    result = model_complexity(cfg, (64, 96))
    assert result['scope'] == 'mmseg' and result['shape'] == (64, 96)
    assert result['flops'] == model_flops(build(cfg), (64, 96))
    assert DEFAULT_SHAPES['mmseg'] == (512, 2048)  # the paper's 2048x512


# mmseg 0.x UPerHead / FCNHead module names (the official checkpoints' head keys)
MMSEG0X_HEAD_MODULES = (
    [f'decode_head.psp_modules.{i}.1.{m}' for i in range(4) for m in ('conv', 'bn')]
    + [f'decode_head.bottleneck.{m}' for m in ('conv', 'bn')]
    + [f'decode_head.{n}.{i}.{m}' for n in ('lateral_convs', 'fpn_convs') for i in range(3)
       for m in ('conv', 'bn')]
    + [f'decode_head.fpn_bottleneck.{m}' for m in ('conv', 'bn')]
    + ['decode_head.conv_seg', 'auxiliary_head.convs.0.conv', 'auxiliary_head.convs.0.bn',
       'auxiliary_head.conv_seg'])


def _randomise_bn_stats(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['dwnet-tiny', 'swin-tiny'])
def test_official_upernet_checkpoint_converts_and_loads_strictly(name, tmp_path):
    from official_layout import save_official_downstream

    from mmdwnet.apis import init_model
    model = init_model(str(config_path(name)))
    _randomise_bn_stats(model)
    state = model.state_dict()
    src, dst, cfg_out = tmp_path / 'official.pth', tmp_path / 'conv.pth', tmp_path / 'cfg.py'
    save_official_downstream(state, src)
    official = torch.load(src, weights_only=True)['state_dict']
    head_modules = sorted({k.rsplit('.', 1)[0] for k in official if not k.startswith('backbone.')})
    assert head_modules == sorted(MMSEG0X_HEAD_MODULES)  # mmseg 0.x and 1.x names coincide
    assert not any(k.startswith('backbone.stages.') for k in official)

    from mmdwnet.converters.writer import convert_file  # official2mmdwnet.py's logic
    info = convert_file(str(src), str(dst), str(cfg_out))
    assert info['kind'] and info['backbone']['type'] == type(model.backbone).__name__
    assert config_path(name).name in cfg_out.read_text()
    loaded = init_model(str(cfg_out), str(dst))  # strict: raises on any missing/extra key
    assert loaded.backbone.__class__ is model.backbone.__class__
    x = torch.randn(1, 3, 67, 90)
    with torch.no_grad():
        expected, got = model(x, mode='tensor'), loaded(x, mode='tensor')
    assert got.shape == (1, 150, 17, 23)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_converter_rejects_segmentor_without_matching_config(tmp_path):
    from official_layout import save_official_downstream

    from mmdwnet.converters import UnrecognisedCheckpoint, convert_file
    model = build(narrow_cfg('dwnet-tiny'))
    save_official_downstream(model.state_dict(), tmp_path / 'narrow.pth')
    with pytest.raises(UnrecognisedCheckpoint, match='no mmdwnet segmentation config'):
        convert_file(tmp_path / 'narrow.pth', tmp_path / 'out.pth', tmp_path / 'cfg.py')


def test_metafile_lists_the_eight_models_with_paper_results(paper_tables):
    import yaml
    data = yaml.safe_load((CONFIGS / 'metafile.yml').read_text())
    models = {m['Name']: m for m in data['Models'] if '-in21k-pre_' not in m['Name']}
    assert sorted(models) == sorted(config_path(n).stem for n in MODELS)
    for name, (key, _) in MODELS.items():
        entry = models[config_path(name).stem]
        assert entry['Config'] == f'configs/segmentation/{config_path(name).name}'
        assert (ROOT / entry['Config']).is_file()
        paper = paper_tables['ade20k_upernet_160k'][key]
        result, = entry['Results']
        assert result['Task'] == 'Semantic Segmentation' and result['Dataset'] == 'ADE20K'
        assert result['Metrics']['mIoU'] == paper['miou']
        assert 'reported by the paper' in entry['Results Source']
        assert entry['Paper Key'] == f'ade20k_upernet_160k.{key}'
        # measured by tools/model_zoo.py update, never typed: close to the paper's Table 3
        meta = entry['Metadata']
        assert abs(meta['Parameters'] / 1e6 - paper['params']) <= 1, name
        assert abs(meta['FLOPs'] / 1e9 / paper['flops'] - 1) < 0.015, name
    root_index = yaml.safe_load((ROOT / 'model-index.yml').read_text())
    assert 'configs/segmentation/metafile.yml' in root_index['Import']


@pytest.mark.parametrize('name', ['dwnet-tiny', 'swin-tiny'])
def test_backbone_loads_imagenet_classifier_checkpoint(name, tmp_path):
    """init_cfg Pretrained(prefix='backbone.') takes the backbone of a (converted) classifier."""
    from mmdwnet.registry import MODELS as DW_MODELS
    btype = MODELS[name][1]
    arch = {k: v for k, v in NARROW.items() if k != '_delete_'}
    classifier_backbone = DW_MODELS.build(dict(type=btype, arch=arch))
    torch.manual_seed(1)
    for p in classifier_backbone.parameters():
        p.data.normal_()
    state = {'backbone.' + k: v for k, v in classifier_backbone.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(10, 128)
    torch.save(dict(state_dict=state), tmp_path / 'in1k.pth')

    cfg = narrow_cfg(name)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'in1k.pth'),
                                       prefix='backbone.')
    model = build(cfg)
    model.init_weights()
    seg = model.backbone.state_dict()
    for key, value in classifier_backbone.state_dict().items():
        if key.startswith('stages.') or key.startswith('patch_embed.'):
            torch.testing.assert_close(seg[key], value, rtol=0, atol=0, msg=key)
    # the classifier's final LN: into Swin's LN norm3, not into the DW family's BN norm3
    loaded = torch.equal(seg['norm3.weight'], classifier_backbone.state_dict()['norm3.weight'])
    assert loaded == (name == 'swin-tiny')
    if name != 'swin-tiny':
        assert torch.equal(seg['norm3.weight'], torch.ones(128))

    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        build(cfg).init_weights()
