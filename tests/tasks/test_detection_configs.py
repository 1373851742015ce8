"""COCO Cascade Mask R-CNN configs: names, settings, parameter counts (paper Table 3), FLOPs
counting, ImageNet-pretrained backbones and converted official detectors."""
import copy
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmdwnet.analysis import count_params
from mmdwnet.apis import init_model

BACKBONES = {'swin': 'SwinNet', 'dwnet': 'DWNet', 'dynamic-dwnet': 'DynamicDWNet',
             'i-dynamic-dwnet': 'IDynamicDWNet'}
SIZES = ('tiny', 'base')
TINY_ARCH = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])


def config_name(backbone, size):
    return f'cascade-mask-rcnn_{backbone}-{size}_fpn_giou-4conv1f_ms-3x_coco.py'


def paper_key(backbone, size):
    return f"{backbone.replace('-', '_')}_{size}"


@pytest.fixture(scope='module')
def det_dir(repo_root):
    return repo_root / 'configs' / 'detection'


def test_exactly_the_eight_models_exist(det_dir):
    # (the ImageNet-21k pre-trained variants of Table 11 are tested in tests/converters/test_in21k.py)
    leaves = sorted(p.name for p in det_dir.glob('*.py') if '-in21k-pre_' not in p.name)
    expected = sorted(config_name(b, s) for b in BACKBONES for s in SIZES)
    assert leaves == expected
    for name in leaves:
        text = (det_dir / name).read_text()
        assert text.startswith('_base_ = '), f'{name} must inherit a _base_ config'


@pytest.mark.parametrize('backbone', list(BACKBONES))
@pytest.mark.parametrize('size', SIZES)
def test_config_settings(det_dir, backbone, size):
    cfg = Config.fromfile(str(det_dir / config_name(backbone, size)))
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['mmdwnet'], allow_failed_imports=False)
    model = cfg.model
    assert model.type == 'CascadeRCNN'
    bb = model.backbone
    assert bb.type == BACKBONES[backbone] and bb.arch == size
    assert tuple(bb.out_indices) == (0, 1, 2, 3) and bb.pad_to_window is True
    assert bb.out_norm_cfg.type == ('LN' if backbone == 'swin' else 'SyncBN')
    assert bb.drop_path_rate == {'tiny': 0.2, 'base': 0.3}[size]  # as the official configs
    assert bb.init_cfg.type == 'Pretrained' and bb.init_cfg.prefix == 'backbone.'
    assert f'{backbone}-{size}' in bb.init_cfg.checkpoint
    width = {'tiny': 96, 'base': 128}[size]
    assert model.neck.in_channels == [width, width * 2, width * 4, width * 8]

    stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
    heads = model.roi_head.bbox_head
    assert model.roi_head.num_stages == 3 and len(heads) == 3
    for head, std in zip(heads, stds):
        assert head.type == 'ConvFCBBoxHead'
        assert (head.num_shared_convs, head.num_shared_fcs) == (4, 1)
        assert head.bbox_coder.target_stds == std
        assert head.reg_decoded_bbox is True and head.reg_class_agnostic is False
        assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
        assert head.norm_cfg == dict(type='SyncBN', requires_grad=True)

    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW' and optim.optimizer.lr == 1e-4
    assert optim.optimizer.weight_decay == 0.05
    assert optim.paramwise_cfg.norm_decay_mult == 0.
    assert optim.paramwise_cfg.custom_keys['relative_position_bias_table'].decay_mult == 0.
    assert cfg.train_cfg.max_epochs == 36
    warmup, steps = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.by_epoch is False
    assert steps.type == 'MultiStepLR' and steps.milestones == [27, 33]
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 16


def test_multiscale_train_and_test_pipelines(det_dir):
    cfg = Config.fromfile(str(det_dir / config_name('dwnet', 'tiny')))
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert [t.type for t in pipeline] == ['LoadImageFromFile', 'LoadAnnotations', 'RandomFlip',
                                          'RandomChoice', 'PackDetInputs']
    assert pipeline[1].with_mask and pipeline[2].prob == 0.5
    plain, crop = pipeline[3].transforms
    shorter = list(range(480, 801, 32))
    assert [t.type for t in plain] == ['RandomChoiceResize']
    assert sorted(min(s) for s in plain[0].scales) == shorter
    assert all(max(s) == 1333 for s in plain[0].scales) and plain[0].keep_ratio
    assert [t.type for t in crop] == ['RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']
    assert sorted(min(s) for s in crop[0].scales) == [400, 500, 600]
    assert crop[1].crop_type == 'absolute_range' and tuple(crop[1].crop_size) == (384, 600)
    assert sorted(min(s) for s in crop[2].scales) == shorter
    resize = [t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Resize'][0]
    assert tuple(resize.scale) == (1333, 800) and resize.keep_ratio
    assert set(cfg.test_evaluator.metric) == {'bbox', 'segm'}


@pytest.mark.slow
@pytest.mark.parametrize('backbone', list(BACKBONES))
@pytest.mark.parametrize('size', SIZES)
def test_params_match_paper_table3(det_dir, paper_tables, backbone, size):
    """Whole-detector parameters = Table 3 (millions, rounded to the integer)."""
    model = init_model(str(det_dir / config_name(backbone, size)))
    params = count_params(model) / 1e6
    paper = paper_tables['coco_cascade_mask_rcnn_3x'][paper_key(backbone, size)]['params']
    assert round(params) == paper, f'{backbone}-{size}: {params:.2f}M, paper {paper}M'


def tiny_detector_cfg(det_dir, backbone='dwnet', width=32, **backbone_overrides):
    """A real leaf config with a narrow backbone (embed 16, one block per stage), ``width``
    channels in the neck and heads and few proposals, for fast CPU tests."""
    cfg = Config.fromfile(str(det_dir / config_name(backbone, 'tiny')))
    model = cfg.model
    model.backbone.arch = copy.deepcopy(TINY_ARCH)
    model.backbone.init_cfg = None
    model.backbone.update(backbone_overrides)
    model.neck.update(in_channels=[16, 32, 64, 128], out_channels=width)
    model.rpn_head.update(in_channels=width, feat_channels=width)
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = roi.mask_roi_extractor.out_channels = width
    for head in roi.bbox_head:
        head.update(in_channels=width, conv_out_channels=width, fc_out_channels=2 * width)
    roi.mask_head.update(in_channels=width, conv_out_channels=width)
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    for stage in model.train_cfg.rcnn:
        stage.sampler.num = 64
    model.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
    return cfg


def test_det_flops_small_shape_and_modes(det_dir):
    import inspect

    from mmdwnet.analysis.det_flops import model_flops
    defaults = inspect.signature(model_flops).parameters
    assert defaults['mode'].default == 'dummy'
    assert (defaults['num_proposals'].default, defaults['num_mask_rois'].default) == (1000, 100)
    model = init_model(tiny_detector_cfg(det_dir))
    shape = (64, 96)

    def flops(boxes, masks):
        return model_flops(model, shape, num_proposals=boxes, num_mask_rois=masks)

    base = flops(20, 5)
    assert base == flops(20, 5)  # independent of the random image
    # RoI heads: linear in the proposals (3 box heads) and in the mask RoIs (3 mask heads)
    box_step, mask_step = flops(40, 5) - base, flops(20, 10) - base
    assert flops(60, 5) - base == 2 * box_step
    conv = model.roi_head.bbox_head[0].shared_convs[0].conv
    assert box_step >= 3 * 20 * 4 * conv.weight.numel() * 49
    mask_conv = model.roi_head.mask_head[0].convs[0].conv
    assert mask_step >= 3 * 5 * 4 * mask_conv.weight.numel() * 14 * 14
    # the backbone alone is counted as count_flops does
    from mmdwnet.analysis import count_flops
    assert base > count_flops(model.backbone, (3, *shape))
    assert model_flops(model, shape, mode='tensor') > 0
    assert model.training is False


def test_det_flops_bad_input(det_dir):
    from mmdwnet.analysis.det_flops import model_flops
    model = init_model(tiny_detector_cfg(det_dir))
    with pytest.raises(ValueError, match='mode must be one of'):
        model_flops(model, (64, 64), mode='fast')
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        model_flops(model, (3, 64, 64))
    with pytest.raises(TypeError, match='mmdet detector'):
        model_flops(model.backbone, (64, 64))


def test_get_flops_tool_on_detector(repo_root, det_dir, tmp_path):
    """tools/analysis_tools/get_flops.py dispatches mmdet configs to det_flops."""
    cfg = tiny_detector_cfg(det_dir)
    path = tmp_path / 'tiny_det.py'
    cfg.dump(str(path))
    out = subprocess.run(
        [sys.executable, str(repo_root / 'tools/analysis_tools/get_flops.py'), str(path),
         '--shape', '64', '96', '--json', str(tmp_path / 'f.json')],
        capture_output=True, text=True, cwd=repo_root, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import json
    result = json.loads((tmp_path / 'f.json').read_text())
    from mmdwnet.analysis.det_flops import model_flops
    assert result['flops'] == model_flops(init_model(cfg), (64, 96))
    assert 'flops:' in out.stdout


def test_syncbn_built_as_syncbn_and_reverted_by_runner(det_dir, tmp_path):
    """Heads and DW backbone outputs use SyncBN as the config builds them (mmdet's registry;
    ``init_model`` goes through mmdet's ``init_detector``, which reverts SyncBN for inference);
    a non-distributed Runner reverts it to BN."""
    import mmdet.models  # noqa: F401  (registers the detector)
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    cfg = tiny_detector_cfg(det_dir)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = DET_MODELS.build(cfg.model)
    assert isinstance(model.backbone.norm0, torch.nn.SyncBatchNorm)
    assert isinstance(model.roi_head.bbox_head[0].shared_convs[0].bn, torch.nn.SyncBatchNorm)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in runner.model.modules())
    head_bn = runner.model.roi_head.bbox_head[0].shared_convs[0].bn
    assert isinstance(head_bn, torch.nn.modules.batchnorm._BatchNorm)
    assert isinstance(runner.model.backbone.norm0, torch.nn.modules.batchnorm._BatchNorm)


@pytest.mark.parametrize('backbone', list(BACKBONES))
def test_every_backbone_norm_follows_the_official_code(det_dir, backbone):
    """The official detection DWNet builds every BN of the backbone as SyncBN (block BNs, the
    pre-FFN BN, the D-DW / I-D-DW kernel generator's BN, the output norms); Swin keeps LN.
    Counted on the tiny backbones as the configs build them: 12 blocks of 3 mixer BNs + 1
    pre-FFN BN (+ 1 generator BN for the dynamic convs) + 4 output norms."""
    from torch.nn.modules.batchnorm import _BatchNorm

    from mmdwnet.registry import MODELS
    cfg = Config.fromfile(str(det_dir / config_name(backbone, 'tiny')))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model.backbone)
    sync = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    plain = sum(isinstance(m, _BatchNorm) and not isinstance(m, torch.nn.SyncBatchNorm)
                for m in model.modules())
    layer_norms = sum(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    blocks = sum(model.arch_settings['depths'])
    assert blocks == 12
    if backbone == 'swin':  # LN before the mixer and the FFN, patch embed/merging, outputs
        assert (sync, plain, layer_norms) == (0, 0, 2 * blocks + 1 + 3 + 4)
        return
    per_block = 4 + (backbone != 'dwnet')
    assert (sync, plain, layer_norms) == (per_block * blocks + 4, 0, 1 + 3)
    generator = model.stages[0].blocks[0].mixer.aggregate
    if backbone != 'dwnet':
        assert isinstance(generator.norm, torch.nn.SyncBatchNorm)


# ---------------------------------------------------------------- pretrained / converted weights
def _perturb(module, seed=0):
    """Give every float parameter and buffer distinct random values (variances stay > 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                noise = torch.randn(t.shape, generator=g) * 0.1
                t.copy_(t.abs() + 0.5 + noise.abs() if 'running_var' in name else t + noise)


def _classifier_cfg(backbone_type):
    return Config(dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['mmdwnet'], allow_failed_imports=False),
        model=dict(type='ImageClassifier',
                   backbone=dict(type=backbone_type, arch=TINY_ARCH, out_indices=(3, )),
                   neck=dict(type='GlobalAveragePooling'),
                   head=dict(type='LinearClsHead', num_classes=10, in_channels=128,
                             loss=dict(type='CrossEntropyLoss')))))


@pytest.mark.parametrize('backbone', ['dwnet', 'swin'])
def test_backbone_loads_imagenet_classifier_checkpoint(det_dir, tmp_path, backbone):
    """init_cfg Pretrained(prefix='backbone.') loads a classification checkpoint.

    Every patch-embedding, block and patch-merging weight is copied.  norm0-2 have no
    counterpart in the classifier and keep their initialisation.  The classifier's final LN
    (norm3) initialises the detector's norm3 when that is an LN too (Swin); a BN norm3 (the
    DW-conv family) keeps its initialisation, as in the official code.  The head is not loaded.
    """
    classifier = init_model(_classifier_cfg(BACKBONES[backbone]))
    _perturb(classifier)
    ckpt = tmp_path / 'cls.pth'
    torch.save(dict(meta=dict(), state_dict=classifier.state_dict()), ckpt)

    cfg = tiny_detector_cfg(det_dir, backbone)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(ckpt),
                                       prefix='backbone.')
    detector = init_model(cfg)
    fresh = copy.deepcopy(detector.backbone.state_dict())
    detector.init_weights()
    got = detector.backbone.state_dict()
    src = {k[len('backbone.'):]: v for k, v in classifier.state_dict().items()
           if k.startswith('backbone.')}
    body = [k for k in got if k.startswith(('patch_embed.', 'stages.'))]
    assert body and set(body) == {k for k in src if not k.startswith('norm')}
    for k in body:
        assert torch.equal(got[k], src[k]), k
    for i in range(3):
        for k in (f'norm{i}.weight', f'norm{i}.bias'):
            assert torch.equal(got[k], fresh[k]), k
    if backbone == 'dwnet':
        assert torch.equal(got['norm3.weight'], fresh['norm3.weight'])
        assert not torch.equal(got['norm3.weight'], src['norm3.weight'])
    else:
        assert torch.equal(got['norm3.weight'], src['norm3.weight'])


def test_missing_pretrained_checkpoint_fails_clearly(det_dir, tmp_path):
    cfg = tiny_detector_cfg(det_dir)
    missing = tmp_path / 'nope.pth'
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(missing),
                                       prefix='backbone.')
    detector = init_model(cfg)
    with pytest.raises((FileNotFoundError, IOError), match='nope.pth'):
        detector.init_weights()


@pytest.mark.slow
def test_official_cascade_checkpoint_converts_and_loads_strictly(repo_root, det_dir, tmp_path):
    """A DemystifyLocalViT (mmdet 2.x) Cascade Mask R-CNN DWNet-T checkpoint, converted, loads
    into the matching config with strict keys and gives the same outputs."""
    from official_layout import save_official_downstream

    from mmdwnet.analysis.det_flops import _DummyForward
    config = det_dir / config_name('dwnet', 'tiny')
    model = init_model(str(config))
    _perturb(model)
    src, dst, cfg_out = tmp_path / 'official.pth', tmp_path / 'mmdwnet.pth', tmp_path / 'c.py'
    save_official_downstream(model.state_dict(), src)
    official_keys = torch.load(src, weights_only=True)['state_dict'].keys()
    assert 'backbone.layers.0.blocks.0.attn2conv.conv0.weight' in official_keys
    assert 'roi_head.bbox_head.2.shared_convs.3.conv.weight' in official_keys
    assert 'roi_head.mask_head.2.conv_logits.weight' in official_keys
    out = subprocess.run(
        [sys.executable, str(repo_root / 'tools/model_converters/official2mmdwnet.py'),
         str(src), str(dst), '--config-out', str(cfg_out)],
        capture_output=True, text=True, cwd=repo_root, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert config.name in cfg_out.read_text()
    src.unlink()

    converted = init_model(str(cfg_out), str(dst))  # strict
    img = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected = _DummyForward(model, 20, 5)(img)
        got = _DummyForward(converted, 20, 5)(img)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize('backbone', ['dwnet', 'swin'])
def test_no_weight_decay_on_norms_and_position_tables(det_dir, backbone):
    """AdamW param groups built from the config: decay 0.05 except norms / bias tables."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    cfg = tiny_detector_cfg(det_dir, backbone)
    model = init_model(cfg)
    init_default_scope('mmdet')
    optim = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    assert type(optim).__name__ == 'AdamW' and optim.defaults['lr'] == 1e-4
    decay = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optim.param_groups:
        for p in group['params']:
            decay[names[id(p)]] = group['weight_decay']
    norm_params = [f'{n}.{k}' for n, m in model.named_modules()
                   if isinstance(m, (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm))
                   for k, _ in m.named_parameters(recurse=False)]
    assert len(norm_params) > 20
    assert 'roi_head.bbox_head.0.shared_convs.0.bn.weight' in norm_params
    for name in norm_params:
        assert decay[name] == 0., name
    tables = [n for n in decay if n.endswith('relative_position_bias_table')]
    assert bool(tables) == (backbone == 'swin')
    assert all(decay[n] == 0. for n in tables)
    assert decay['backbone.patch_embed.projection.weight'] == 0.05
    assert decay['roi_head.bbox_head.0.shared_convs.0.conv.weight'] == 0.05


def test_metafile_lists_the_eight_models_with_measured_numbers(repo_root, det_dir, paper_tables):
    import yaml
    meta = yaml.safe_load((det_dir / 'metafile.yml').read_text())
    models = {m['Name']: m for m in meta['Models'] if '-in21k-pre_' not in m['Name']}
    assert sorted(f'{n}.py' for n in models) == sorted(
        config_name(b, s) for b in BACKBONES for s in SIZES)
    index = yaml.safe_load((repo_root / 'model-index.yml').read_text())
    assert 'configs/detection/metafile.yml' in index['Import']
    collections = {c['Name'] for c in meta['Collections']}
    table = paper_tables['coco_cascade_mask_rcnn_3x']
    for name, model in models.items():
        assert (repo_root / model['Config']).is_file()
        assert model['In Collection'] in collections
        section, key = model['Paper Key'].split('.')
        assert section == 'coco_cascade_mask_rcnn_3x'
        results = {r['Task']: r for r in model['Results']}
        assert set(results) == {'Object Detection', 'Instance Segmentation'}
        assert all(r['Dataset'] == 'COCO' for r in results.values())
        assert results['Object Detection']['Metrics']['box AP'] == table[key]['ap_box']
        assert results['Instance Segmentation']['Metrics']['mask AP'] == table[key]['ap_mask']
        assert 'reported by the paper' in model['Results Source']
        # written by tools/model_zoo.py update (1280x800): close to Table 3
        params, flops = model['Metadata']['Parameters'], model['Metadata']['FLOPs']
        assert round(params / 1e6) == table[key]['params'], name
        assert abs(flops / 1e9 - table[key]['flops']) / table[key]['flops'] < 0.01, name


@pytest.mark.parametrize('case,backbone', [('det_dwnet_narrow', 'dwnet'),
                                           ('det_dynamic_dwnet_narrow', 'dynamic-dwnet')])
def test_config_backbone_reproduces_official_detection_backbone(reference_dir, det_dir, case,
                                                                backbone):
    """The backbone as these configs build it (SyncBN output norms, pad_to_window) loads the
    official downstream DWNet weights strictly and returns the official outputs (100x131)."""
    from mmdwnet.converters import convert_official, load_official
    state, info = convert_official(load_official(reference_dir / f'{case}.pth'))
    assert info['kind'] == 'backbone' and info['out_norm'] == 'BN'
    io = torch.load(reference_dir / f'{case}.io.pth', weights_only=True)
    cfg = tiny_detector_cfg(det_dir, backbone)
    cfg.model.backbone.arch = dict(embed_dims=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 4, 8])
    cfg.model.backbone.drop_path_rate = 0.
    detector = init_model(cfg)
    detector.backbone.load_state_dict(state, strict=True)
    with torch.no_grad():
        outs = detector.backbone(io['input'])
        feats = detector.extract_feat(io['input'])
    assert len(outs) == 4
    for got, expected in zip(outs, io['output']):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert len(feats) == 5 and feats[0].shape[-2:] == (25, 33)
