"""ImageNet-22K pre-training, 22K -> 1K fine-tuning and downstream configs (paper Tables 10, 11).

Recipes against Swin's (``shared/reference/swin/README.md``), sizes against the paper, and an
end-to-end run: a synthetic ImageNet-21k folder, two iterations of a shrunk 22K config, its
checkpoint fine-tuned with the 22K -> 1K config (head mapped) and loaded by a detection and a
segmentation config.
"""
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mmengine.config import Config

from mmdwnet.analysis import count_params
from mmdwnet.apis import init_model

ROOT = Path(__file__).resolve().parents[2]
CLS, DET, SEG = (ROOT / 'configs' / t for t in ('classification', 'detection', 'segmentation'))
FAMILIES = {'swin': ('SwinNet', 'swin_base'), 'dwnet': ('DWNet', 'dwnet_base'),
            'dynamic-dwnet': ('DynamicDWNet', 'dynamic_dwnet_base'),
            'i-dynamic-dwnet': ('IDynamicDWNet', 'i_dynamic_dwnet_base')}
TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
IN21K_CLASSES = 21842  # mmpretrain's ImageNet21k


def pretrain(m):
    return CLS / f'{m}-base_16xb256_in21k.py'


def finetune(m):
    return CLS / f'{m}-base_in21k-pre_8xb128_in1k.py'


def downstream(m):
    return (DET / f'cascade-mask-rcnn_{m}-base-in21k-pre_fpn_giou-4conv1f_ms-3x_coco.py',
            SEG / f'upernet_{m}-base-in21k-pre_8xb2-160k_ade20k-512x512.py')


def _metafile_models(task):
    data = yaml.safe_load((ROOT / 'configs' / task / 'metafile.yml').read_text())
    return {m['Name']: m for m in data['Models']}


@pytest.mark.parametrize('m', list(FAMILIES))
def test_pretraining_configs_follow_swins_22k_recipe(m):
    cfg = Config.fromfile(str(pretrain(m)))
    in1k = Config.fromfile(str(CLS / f'{m}-base_8xb128_in1k.py'))
    bb = cfg.model.backbone
    assert (bb.type, bb.arch, bb.drop_path_rate) == (FAMILIES[m][0], 'base', 0.2)
    assert cfg.model.head.num_classes == cfg.data_preprocessor.num_classes == IN21K_CLASSES
    loader = cfg.train_dataloader
    assert (loader.dataset.type, loader.dataset.data_root, loader.dataset.split) == \
        ('ImageNet21k', 'data/imagenet21k', 'train')
    assert loader.batch_size * 16 == cfg.auto_scale_lr.base_batch_size == 4096
    # the same augmentation as the ImageNet-1K configs (pipeline, Mixup / CutMix, smoothing)
    assert loader.dataset.pipeline == in1k.train_dataloader.dataset.pipeline
    assert cfg.model.train_cfg == in1k.model.train_cfg and cfg.model.head.loss == \
        in1k.model.head.loss
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW' and optim.clip_grad == dict(max_norm=5.0)
    assert optim.optimizer.lr == pytest.approx(1.25e-4 * 4096 / 512)  # 1e-3 at 4096
    assert optim.optimizer.weight_decay == 0.05
    assert optim.paramwise_cfg == in1k.optim_wrapper.paramwise_cfg
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, warmup.start_factor) == ('LinearLR', 5, 1e-3)
    assert (cosine.type, cosine.begin, cosine.eta_min) == \
        ('CosineAnnealingLR', 5, pytest.approx(1.25e-6 * 8))
    assert cfg.train_cfg.max_epochs == 90
    assert cfg.get('val_cfg') is None and 'test_dataloader' not in cfg  # no 21k val split


def test_pretraining_dataset_follows_mmpretrains_imagenet21k_base():
    """Type, folder and classes as mmpretrain's _base_/datasets/imagenet21k_bs128.py."""
    import mmpretrain
    base = Path(mmpretrain.__file__).parent / '.mim' / 'configs' / '_base_' / 'datasets' / \
        'imagenet21k_bs128.py'
    if not base.is_file():
        pytest.skip(f'{base} not installed')
    theirs = Config.fromfile(str(base))
    ours = Config.fromfile(str(CLS / '_base_' / 'datasets' / 'imagenet21k_bs256_swin_224.py'))
    assert ours.dataset_type == theirs.dataset_type == ours.train_dataloader.dataset.type
    assert ours.train_dataloader.dataset.data_root == theirs.train_dataloader.dataset.data_root
    assert ours.data_preprocessor == theirs.data_preprocessor


@pytest.mark.parametrize('m', list(FAMILIES))
def test_finetuning_configs_follow_swins_22k_to_1k_recipe(m):
    cfg = Config.fromfile(str(finetune(m)))
    in1k = Config.fromfile(str(CLS / f'{m}-base_8xb128_in1k.py'))
    assert cfg.model.backbone.drop_path_rate == 0.2
    in1k.model.backbone.drop_path_rate = 0.2
    assert cfg.model == in1k.model  # the Table 2 base classifier, 1000 classes
    assert cfg.train_dataloader == in1k.train_dataloader  # ImageNet-1k at 224
    total = cfg.train_dataloader.batch_size * 8
    optim = cfg.optim_wrapper.optimizer
    assert optim.lr / total * 512 == pytest.approx(2e-5) and optim.weight_decay == 1e-8
    warmup, cosine = cfg.param_scheduler
    assert (warmup.end, warmup.start_factor, cosine.begin) == (5, 1e-3, 5)  # 2e-8 per 512
    assert cosine.eta_min / total * 512 == pytest.approx(2e-7)
    assert cfg.train_cfg.max_epochs == 30 and cfg.auto_scale_lr.base_batch_size == 1024
    assert cfg.load_from == f'checkpoints/{m}-base_in21k.pth'


@pytest.mark.parametrize('m', list(FAMILIES))
def test_downstream_configs_only_change_the_checkpoint(m):
    """Each Table 11 config inherits its ImageNet-1K version and sets nothing but the backbone
    checkpoint (read from the file's syntax tree: fast, and exact about what is overridden)."""
    import ast
    for path in downstream(m):
        tree = ast.parse(path.read_text())
        assigned = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets}
        assert sorted(assigned) == ['_base_', 'model'], path.name
        assert ast.literal_eval(assigned['_base_']) == './' + path.name.replace('-in21k-pre', '')
        assert (path.parent / path.name.replace('-in21k-pre', '')).is_file()
        model = assigned['model']
        spelled = ast.unparse(model)
        assert spelled == ("dict(backbone=dict(init_cfg=dict(checkpoint="
                           f"'checkpoints/{m}-base_in21k.pth')))"), spelled


def test_sizes_match_tables_10_and_11(paper_tables):
    """Measured numbers (tools/model_zoo.py) of every new model against the paper (the Table
    2 / 3 tolerances: parameters equal in millions, FLOPs within 1%); a 22K model is its 1K
    model plus 20,842 more head rows of 1024 weights and a bias."""
    cls, det, seg = (_metafile_models(t) for t in ('classification', 'detection',
                                                   'segmentation'))
    t10 = paper_tables['in22k_pretrain_in1k_ft_table10']
    t11 = paper_tables['in22k_pretrain_downstream_table11']
    for m, (_, key) in FAMILIES.items():
        ft = cls[finetune(m).stem]['Metadata']
        assert round(ft['Parameters'] / 1e6) == t10[key]['params'], m
        assert abs(ft['FLOPs'] / 1e9 / t10[key]['flops'] - 1) < 0.01, m
        assert ft['Parameters'] == cls[f'{m}-base_8xb128_in1k']['Metadata']['Parameters']
        pre = cls[pretrain(m).stem]['Metadata']
        extra = IN21K_CLASSES - 1000
        assert pre['Parameters'] == ft['Parameters'] + extra * (1024 + 1), m
        assert pre['FLOPs'] == ft['FLOPs'] + extra * 1024, m
        for task, models, prefix in (('coco', det, 'coco'), ('ade', seg, 'ade')):
            path = downstream(m)[0 if task == 'coco' else 1]
            meta = models[path.stem]['Metadata']
            assert round(meta['Parameters'] / 1e6) == t11[key][f'{prefix}_params'], path.name
            assert abs(meta['FLOPs'] / 1e9 / t11[key][f'{prefix}_flops'] - 1) < 0.01, path.name
            same = models[path.stem.replace('-in21k-pre', '')]['Metadata']
            assert (meta['Parameters'], meta['FLOPs']) == (same['Parameters'], same['FLOPs'])


def test_measured_numbers_are_the_models(paper_tables):
    """The stored numbers are counts of the models the configs build (two spot checks)."""
    cls = _metafile_models('classification')
    for path in (pretrain('dwnet'), finetune('i-dynamic-dwnet')):
        assert cls[path.stem]['Metadata']['Parameters'] == count_params(init_model(str(path)))


def test_metafile_results_are_the_papers(paper_tables):
    t10 = paper_tables['in22k_pretrain_in1k_ft_table10']
    t11 = paper_tables['in22k_pretrain_downstream_table11']
    cls, det, seg = (_metafile_models(t) for t in ('classification', 'detection',
                                                   'segmentation'))
    index = yaml.safe_load((ROOT / 'model-index.yml').read_text())['Import']
    assert {f'configs/{t}/metafile.yml' for t in ('classification', 'detection',
                                                   'segmentation')} <= set(index)
    for m, (_, key) in FAMILIES.items():
        entry = cls[finetune(m).stem]
        assert entry['Results'][0]['Metrics']['Top 1 Accuracy'] == t10[key]['top1']
        assert entry['Paper Key'] == f'in22k_pretrain_in1k_ft_table10.{key}'
        assert 'Results' not in cls[pretrain(m).stem]  # the paper gives no 22K accuracy
        det_entry, seg_entry = (models[p.stem] for models, p in zip((det, seg), downstream(m)))
        metrics = {r['Task']: r['Metrics'] for r in det_entry['Results']}
        assert metrics['Object Detection']['box AP'] == t11[key]['ap_box']
        assert metrics['Instance Segmentation']['mask AP'] == t11[key]['ap_mask']
        assert seg_entry['Results'][0]['Metrics']['mIoU'] == t11[key]['miou']
        for entry in (det_entry, seg_entry):
            assert 'Table 11' in entry['Results Source']
            assert (ROOT / entry['Config']).is_file()


# ------------------------------------------------------------------------------ end to end
def _write_images(root, classes, n=2, size=40):
    rng = np.random.default_rng(0)
    from PIL import Image
    for c, wnid in enumerate(classes):
        folder = root / wnid
        folder.mkdir(parents=True)
        for j in range(n):
            img = rng.integers(0, 60, (size, size + 8, 3)) + np.array([80 * c, 40, 160 - 80 * c])
            Image.fromarray(img.astype(np.uint8)).save(folder / f'{wnid}_{j}.JPEG')


def _shrink_classifier(cfg, work_dir, data_root, iters=2):
    cfg.model.backbone.arch = dict(TINY)
    cfg.model.head.in_channels = 128
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False,
                                pin_memory=False)
    cfg.train_dataloader.dataset.data_root = str(data_root)
    cfg.merge_from_dict({'train_dataloader.dataset.pipeline.1.scale': 32})
    cfg.train_cfg = dict(by_epoch=False, max_iters=iters)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, end=iters)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=iters, by_epoch=False)
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{work_dir.name}_{time.time_ns()}'  # MessageHub keys on it
    return cfg


def _build_task_model(cfg):
    """The detector / segmentor of ``cfg`` from its toolbox registry, ``init_cfg`` kept (mmseg's
    ``init_model`` drops the backbone's)."""
    import importlib

    from mmengine.registry import DefaultScope
    scope = cfg.default_scope
    importlib.import_module(f'{scope}.models')
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg.model)


@pytest.mark.slow
def test_pretrain_finetune_and_downstream_from_one_22k_checkpoint(tmp_path, caplog):
    from mmengine.runner import Runner

    from mmdwnet.converters.imagenet22k import load_22k_to_1k_map

    # 1. two iterations of the shrunk 22K config on a synthetic ImageNet-21k folder
    classes = ['n00004475', 'n00005787', 'n00006024']
    _write_images(tmp_path / 'in21k' / 'train', classes)
    cfg = _shrink_classifier(Config.fromfile(str(pretrain('dwnet'))), tmp_path / 'pre',
                             tmp_path / 'in21k')
    runner = Runner.from_cfg(cfg)
    runner.train()
    ckpt = tmp_path / 'pre' / 'iter_2.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    assert state['head.fc.weight'].shape == (IN21K_CLASSES, 128)

    # 2. the 22K -> 1K config loads it (head mapped with map22kto1k.txt) and fine-tunes
    ft = _shrink_classifier(Config.fromfile(str(finetune('dwnet'))), tmp_path / 'ft',
                            tmp_path / 'in1k')
    in1k = ['n01440764', 'n01443537']
    _write_images(tmp_path / 'in1k' / 'train', in1k)
    ft.train_dataloader.dataset.metainfo = dict(classes=in1k)
    ft.val_dataloader = ft.val_evaluator = ft.val_cfg = None  # training only, for time
    ft.load_from = str(ckpt)

    mapped = init_model(ft, str(ckpt))  # the same loading path, stopped before training
    index = load_22k_to_1k_map()
    torch.testing.assert_close(mapped.head.fc.weight, state['head.fc.weight'][index],
                               rtol=0, atol=0)
    torch.testing.assert_close(mapped.head.fc.bias, state['head.fc.bias'][index], rtol=0, atol=0)
    for key, value in mapped.backbone.state_dict().items():
        assert torch.equal(value, state['backbone.' + key]), key

    with caplog.at_level('INFO'):
        Runner.from_cfg(ft).train()
    log = (tmp_path / 'ft').glob('*/*.log')
    text = ''.join(p.read_text() for p in log) + caplog.text
    assert 'mapped the 21842-class ImageNet-22K head onto the 1000 ImageNet-1K classes' in text
    tuned = torch.load(tmp_path / 'ft' / 'iter_2.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    assert tuned['head.fc.weight'].shape == (1000, 128)
    assert all(torch.isfinite(v).all() for v in tuned.values() if v.is_floating_point())

    # 3. the same checkpoint initialises the detection and segmentation backbones
    det_cfg, seg_cfg = (Config.fromfile(str(p)) for p in downstream('dwnet'))
    det_cfg.model.neck.in_channels = [16, 32, 64, 128]
    seg_cfg.model.decode_head.in_channels = [16, 32, 64, 128]
    seg_cfg.model.auxiliary_head.in_channels = 64
    for cfg in (det_cfg, seg_cfg):
        cfg.model.backbone.arch = dict(TINY)
        cfg.model.backbone.init_cfg.checkpoint = str(ckpt)
        model = _build_task_model(cfg)
        model.init_weights()  # Pretrained(checkpoint, prefix='backbone.')
        got = model.backbone.state_dict()
        body = [k for k in got if k.startswith(('patch_embed.', 'stages.'))]
        assert len(body) > 50
        for key in body:  # every backbone tensor of the classifier, unchanged
            assert torch.equal(got[key], state['backbone.' + key]), (cfg.default_scope, key)
