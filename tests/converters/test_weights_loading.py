"""Issue 12: official checkpoints load wherever users put them, and never a silent random backbone.

Every path loads the official-format reference files of ``../shared/reference`` (no conversion
step) into the repo's configs and must reproduce the official outputs (<= 1e-5):
``init_cfg=Pretrained`` with and without ``prefix``, ``load_from`` / ``tools/test.py``
(mmengine's ``load_checkpoint``, strict), ``mmdwnet.apis.init_model``, ``mmpretrain.get_model``,
``mmdet.apis.init_detector`` and ``mmseg.apis.init_model``.  Other-architecture, other-size,
damaged and unrelated checkpoints raise; the expected exceptions (head re-initialised when
fine-tuning, 22K -> 1K mapping) are checked too.
"""
import copy

import pytest
import torch
from mmengine.runner.checkpoint import load_checkpoint

from mmdwnet.apis import init_model
from mmdwnet.converters.imagenet22k import load_22k_to_1k_map, map_22k_to_1k
from mmdwnet.converters.loading import (CheckpointMismatch, attach_checkpoint_hooks,
                                        strict_loading)
from mmdwnet.utils import safe_loading
from reference_models import (CLS_CASES, DET_CASES, build, max_diff, mmengine_messages,
                              narrow_config)

TOL = 1e-5


def _io(reference_dir, case):
    return torch.load(reference_dir / f'{case}.io.pth', weights_only=True)


def _official(reference_dir, case):
    return torch.load(reference_dir / f'{case}.pth', weights_only=True)


def _with_pretrained(cfg, checkpoint, prefix):
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint))
    if prefix is not None:
        cfg.model.backbone.init_cfg.prefix = prefix
    return cfg


def assert_same_weights(model, reference, prefix=''):
    """Every tensor of ``model`` equals ``reference``'s (same keys): the same outputs follow."""
    got, want = model.state_dict(), reference.state_dict()
    want = {k[len(prefix):]: v for k, v in want.items() if k.startswith(prefix)}
    assert set(got) == set(want)
    for key, value in got.items():
        assert torch.equal(value, want[key]), key


@pytest.mark.parametrize('case', CLS_CASES)
def test_official_classification_file_loads_through_every_path(case, reference_dir, repo_root):
    """init_model's outputs equal the official ones; every other path loads the same tensors."""
    from mmpretrain import get_model
    path = str(reference_dir / f'{case}.pth')
    io = _io(reference_dir, case)
    cfg = narrow_config(repo_root, case)

    with mmengine_messages() as log:
        model = init_model(cfg, path)
    assert sum('converted an official' in m for m in log) == 1, log
    with torch.no_grad():
        assert max_diff(model(io['input'], mode='tensor'), io['output']) <= TOL

    with safe_loading():  # the gate places the official keys under backbone.* / head.fc.*
        assert_same_weights(get_model(cfg, pretrained=path), model)
    loaded = build(cfg)
    with safe_loading(), strict_loading():  # what tools/test.py (load_from, strict) does
        load_checkpoint(loaded, path, map_location='cpu', strict=True)
    assert_same_weights(loaded, model)
    # outside the gate nothing converts an official classification file: a clear error, and
    # no process-wide hook does it behind the user's back
    with pytest.raises(CheckpointMismatch, match=r"no key starts with 'backbone.'.*official "
                       r'classification file .*safe_loading\(\)'):
        load_checkpoint(build(cfg), path, map_location='cpu')
    for prefix in ('backbone.', None):  # init_cfg of the classifier's backbone
        pretrained = build(_with_pretrained(cfg, path, prefix))
        pretrained.init_weights()
        assert_same_weights(pretrained.backbone, model, 'backbone.')


def _whole_mmdet2_file(tmp_path, official_backbone, detector):
    """An mmdet 2.x whole-detector file: official backbone keys + neck/heads."""
    state = dict(official_backbone['state_dict'])
    state.update((k, v) for k, v in detector.state_dict().items() if not k.startswith('backbone.'))
    path = tmp_path / 'whole.pth'
    torch.save(dict(meta=dict(mmdet_version='2.25.0'), state_dict=state), path)
    return str(path)


@pytest.mark.parametrize('case', DET_CASES)
def test_official_detection_file_loads_through_every_path(case, reference_dir, repo_root,
                                                         tmp_path):
    """The detection config's backbone, through init_cfg, gives the official outputs; the
    toolboxes' builders, strict init_model and load_from of whole mmdet 2.x files load the same
    tensors (one case: each Cascade Mask R-CNN build costs seconds)."""
    from mmdwnet.registry import MODELS
    path = str(reference_dir / f'{case}.pth')
    io = _io(reference_dir, case)
    cfg = narrow_config(repo_root, case)
    backbones = []
    for prefix in ('backbone.', None):
        backbone = MODELS.build(_with_pretrained(cfg, path, prefix).model.backbone)
        backbone.init_weights()
        backbones.append(backbone.eval())
    with torch.no_grad():
        assert max_diff(backbones[0](io['input']), io['output']) <= TOL
    assert_same_weights(backbones[1], backbones[0])
    if case != 'det_dwnet_narrow':
        return
    from mmdet.apis import init_detector
    from mmseg.apis import init_model as init_segmentor
    detector = init_detector(cfg, path, device='cpu')  # the toolbox API, backbone-only file
    assert_same_weights(detector.backbone, backbones[0])
    whole = _whole_mmdet2_file(tmp_path, _official(reference_dir, case), detector)
    assert_same_weights(init_model(cfg, whole), detector)
    loaded = build(cfg)
    with strict_loading():
        load_checkpoint(loaded, whole, map_location='cpu', strict=True)
    assert_same_weights(loaded, detector)
    segmentor = init_segmentor(narrow_config(repo_root, 'seg_dwnet_narrow'), path, device='cpu')
    assert_same_weights(segmentor.backbone, backbones[0])


def test_official_classification_file_relocated_only_by_the_gate(reference_dir, tmp_path):
    """The gate returns an official classification file as backbone.* (official keys, for the
    backbone to convert) + head.fc.*; other files, and reads outside the gate, are unchanged."""
    from mmdwnet.converters.loading import relocate_official_classifier
    path = reference_dir / 'cls_dwnet_narrow.pth'
    official = _official(reference_dir, 'cls_dwnet_narrow')
    with safe_loading():
        relocated = torch.load(path)
    state = relocated['state_dict']
    assert set(relocated) == {'state_dict'}
    assert set(state) == {('head.fc.' + k[5:]) if k.startswith('head.') else 'backbone.' + k
                          for k in official['model']}
    assert torch.equal(state['head.fc.weight'], official['model']['head.weight'])
    assert torch.equal(state['backbone.patch_embed.proj.weight'],
                       official['model']['patch_embed.proj.weight'])
    assert set(torch.load(path, weights_only=True)) == {'model'}  # outside: as saved
    ours = {'state_dict': {'backbone.x': torch.zeros(1)}}
    assert relocate_official_classifier(ours) is ours
    assert relocate_official_classifier([1]) == [1]


def test_checkpoint_hooks_are_attached_per_model(repo_root):
    """attach_checkpoint_hooks gives the one model holding an mmdwnet backbone its pre-hook,
    once; other models, and other instances, get none."""
    cfg = narrow_config(repo_root, 'cls_dwnet_narrow')
    model, other = build(cfg), build(cfg)
    assert attach_checkpoint_hooks(model) and attach_checkpoint_hooks(model)
    assert len(model._load_state_dict_pre_hooks) == 1
    assert len(other._load_state_dict_pre_hooks) == 0
    assert not attach_checkpoint_hooks(torch.nn.Linear(1, 1))


# ---------------------------------------------------------------- what must raise
def test_another_architecture_raises_everywhere(reference_dir, repo_root):
    from mmpretrain import get_model
    cfg = narrow_config(repo_root, 'cls_dwnet_narrow')
    other = str(reference_dir / 'cls_dynamic_dwnet_narrow.pth')
    match = r'official DynamicDWNet .* DWNet backbone .* another architecture'
    with pytest.raises(CheckpointMismatch, match=match):
        init_model(cfg, other)
    with pytest.raises(CheckpointMismatch, match=match), safe_loading():
        get_model(cfg, pretrained=other)
    with pytest.raises(CheckpointMismatch, match=match), safe_loading():
        load_checkpoint(build(cfg), other)  # load_from, non-strict: still refused
    with pytest.raises(CheckpointMismatch, match=match):
        build(_with_pretrained(cfg, other, 'backbone.')).init_weights()


def test_another_size_raises(reference_dir, repo_root):
    cfg = narrow_config(repo_root, 'cls_swin_narrow')
    cfg.model.backbone.arch.embed_dims = 32
    cfg.model.head.in_channels = 256
    with pytest.raises(CheckpointMismatch, match=r'embed_dims=16.*embed_dims=32'), safe_loading():
        load_checkpoint(build(cfg), str(reference_dir / 'cls_swin_narrow.pth'))


@pytest.mark.parametrize('damage, match', [
    (lambda s: [s.pop(k) for k in list(s) if k.startswith('layers.1.blocks.0.')],
     r'missing keys: stages.1.blocks.0.mixer'),
    (lambda s: s.update({'layers.1.blocks.0.attn2conv.conv.weight': torch.zeros(32, 1, 5, 5)}),
     r'shape mismatches: stages.1.blocks.0.mixer.aggregate.weight: checkpoint \(32, 1, 5, 5\)'),
    (lambda s: s.update({'layers.0.blocks.0.attn2conv.extra': torch.zeros(1)}),
     r"unknown block key 'layers.0.blocks.0.attn2conv.extra'"),
])
def test_damaged_official_file_raises(damage, match, reference_dir, repo_root, tmp_path):
    state = _official(reference_dir, 'cls_dwnet_narrow')['model']
    damage(state)
    torch.save({'model': state}, tmp_path / 'damaged.pth')
    cfg = narrow_config(repo_root, 'cls_dwnet_narrow')
    with pytest.raises(CheckpointMismatch, match=match), safe_loading():
        load_checkpoint(build(cfg), str(tmp_path / 'damaged.pth'))


def test_unrelated_checkpoint_and_wrong_prefix_raise(repo_root, tmp_path):
    cfg = narrow_config(repo_root, 'cls_dwnet_narrow')
    torch.save(dict(state_dict={'backbone.conv1.weight': torch.zeros(64, 3, 7, 7),
                                'head.fc.weight': torch.zeros(10, 2048)}), tmp_path / 'r50.pth')
    with pytest.raises(CheckpointMismatch, match=r'unexpected keys: conv1.weight.*Likely cause: '
                       r'a checkpoint of another model'):
        load_checkpoint(build(cfg), str(tmp_path / 'r50.pth'))
    torch.save(dict(state_dict={'model.x': torch.zeros(1)}), tmp_path / 'none.pth')
    with pytest.raises(CheckpointMismatch, match=r"no key starts with 'backbone.'.*\['model'\]"):
        load_checkpoint(build(cfg), str(tmp_path / 'none.pth'))
    with pytest.raises(CheckpointMismatch, match=r"init_cfg prefix 'encoder.'"):
        build(_with_pretrained(cfg, tmp_path / 'r50.pth', 'encoder.')).init_weights()


def test_head_of_another_size_reinitialised_when_fine_tuning_refused_in_strict(
        reference_dir, repo_root):
    path = str(reference_dir / 'cls_dwnet_narrow.pth')
    cfg = narrow_config(repo_root, 'cls_dwnet_narrow', num_classes=5)
    model = build(cfg)
    assert attach_checkpoint_hooks(model)  # what init_model and the tools' runner do
    head = model.head.fc.weight.detach().clone()
    with mmengine_messages() as log, safe_loading():
        load_checkpoint(model, path)  # fine-tuning on a 5-class set: allowed, with a warning
    assert torch.equal(model.head.fc.weight, head)
    assert any('head.fc has 10 classes, the model 5' in m and 're-initialised' in m for m in log)
    official = _official(reference_dir, 'cls_dwnet_narrow')['model']
    assert torch.equal(model.backbone.patch_embed.projection.weight,
                       official['patch_embed.proj.weight'])
    with pytest.raises(CheckpointMismatch, match=r'head.fc.weight: checkpoint \(10, 128\) vs '
                       r'model \(5, 128\)'):
        init_model(cfg, path)


# ---------------------------------------------------------------- ImageNet-22K -> 1K
def test_map_ships_with_the_package(reference_dir):
    shipped = load_22k_to_1k_map()
    official = [int(v) for v in (reference_dir / 'swin' / 'map22kto1k.txt').read_text().split()]
    assert shipped.tolist() == official and len(official) == 1000
    with pytest.raises(ValueError, match='21841 .* or 21842 .* rows, got 1000'):
        map_22k_to_1k(torch.zeros(1000, 4))


def _encoded_head(rows, channels=128):
    """A head whose row i is the constant i: after mapping, row j tells which class it was."""
    index = torch.arange(rows, dtype=torch.float32)
    return index[:, None].expand(rows, channels).clone(), index.clone()


@pytest.mark.parametrize('rows', [21841, 21842])
def test_22k_head_mapped_onto_1k(rows, reference_dir, repo_root, tmp_path):
    """Official Swin 22K files (21841 classes) and mmdwnet / mmpretrain 22K checkpoints
    (21842-row heads) load into a 1000-class model: row i is 22K class map[i]."""
    official = _official(reference_dir, 'cls_swin_narrow')['model']
    official['head.weight'], official['head.bias'] = _encoded_head(rows)
    if rows == 21841:  # the official layout
        torch.save({'model': official}, tmp_path / 'in22k.pth')
    else:  # mmdwnet's own layout (a 22K pre-training run with mmpretrain's 21842 classes)
        ours = init_model(narrow_config(repo_root, 'cls_swin_narrow', num_classes=rows))
        state = ours.state_dict()
        state['head.fc.weight'], state['head.fc.bias'] = _encoded_head(rows)
        torch.save(dict(state_dict=state), tmp_path / 'in22k.pth')
    cfg = narrow_config(repo_root, 'cls_swin_narrow', num_classes=1000)
    with mmengine_messages() as log:  # the model's own load hook maps the head
        model = init_model(cfg, str(tmp_path / 'in22k.pth'))
    expected = load_22k_to_1k_map().float()
    assert torch.equal(model.head.fc.bias, expected)
    assert torch.equal(model.head.fc.weight[:, 0], expected)
    assert torch.equal(model.head.fc.weight[:, -1], expected)
    assert any(f'mapped the {rows}-class ImageNet-22K head onto the 1000' in m for m in log), log


# ---------------------------------------------------------------- tools/test.py
def test_tools_test_evaluates_official_files_and_never_what_did_not_load(reference_dir, repo_root,
                                                                        tmp_path):
    import mmengine
    from mmpretrain.apis import ImageClassificationInferencer

    from reference_models import with_image_folder_test_set
    from mmdwnet.apis import test as tool  # tools/test.py's main
    cfg = with_image_folder_test_set(narrow_config(repo_root, 'cls_dwnet_narrow'),
                                     tmp_path / 'images')
    cfg.dump(str(tmp_path / 'cfg.py'))
    official = str(reference_dir / 'cls_dwnet_narrow.pth')

    def run(checkpoint, *extra):
        return tool.main([str(tmp_path / 'cfg.py'), checkpoint, '--work-dir',
                          str(tmp_path / 'work'), *extra])

    metrics = run(official, '--out', str(tmp_path / 'preds.pkl'))  # no conversion step
    assert 'accuracy/top1' in metrics
    dumped = mmengine.load(tmp_path / 'preds.pkl')
    inferencer = ImageClassificationInferencer(init_model(cfg, official))
    for sample in dumped:  # the evaluated scores are those of the official weights
        expected = inferencer(sample['img_path'])[0]['pred_scores']
        assert max_diff(sample['pred_score'], torch.from_numpy(expected)) <= TOL

    with pytest.raises(CheckpointMismatch, match='another architecture'):
        run(str(reference_dir / 'cls_dynamic_dwnet_narrow.pth'))
    backbone_only = {k: v for k, v in init_model(cfg, official).state_dict().items()
                     if k.startswith('backbone.')}
    torch.save(dict(state_dict=backbone_only), tmp_path / 'backbone_only.pth')
    with pytest.raises(CheckpointMismatch, match=r'missing keys: head.fc.weight, head.fc.bias'):
        run(str(tmp_path / 'backbone_only.pth'))  # a random head is never evaluated


# ---------------------------------------------------------------- model zoo
def _metafile_weights(repo_root):
    import yaml
    for task in ('classification', 'detection', 'segmentation'):
        for model in yaml.safe_load((repo_root / 'configs' / task / 'metafile.yml').read_text())[
                'Models']:
            if model.get('Weights') or model.get('Converted From'):
                yield task, model


OFFICIAL_RELEASES = ('https://github.com/Atten4Vis/DemystifyLocalViT/releases/download/',
                     'https://github.com/SwinTransformer/storage/releases/download/')


def test_metafile_weights_are_the_official_releases(repo_root):
    """Every released model has ``Weights``: the official file itself (converted on load)."""
    entries = list(_metafile_weights(repo_root))
    assert len(entries) >= 18
    for task, model in entries:
        assert model['Weights'] == model['Converted From']['Weights'], model['Name']
        assert model['Weights'].startswith(OFFICIAL_RELEASES), model['Name']
        assert (repo_root / model['Config']).is_file()


@pytest.mark.parametrize('config', [
    'classification/swin-tiny_8xb128_in1k.py',
    'classification/dwnet-tiny_8xb128_in1k.py',
    'classification/dynamic-dwnet-tiny_8xb128_in1k.py',
    'detection/cascade-mask-rcnn_dwnet-tiny_fpn_giou-4conv1f_ms-3x_coco.py',
    'segmentation/upernet_swin-tiny_8xb2-160k_ade20k-512x512.py',
])
def test_metafile_configs_take_the_official_layout_strictly(config, repo_root):
    """The official key layout of each zoo config's architecture loads into it (strict) --
    what ``tools/test.py CONFIG WEIGHTS`` does with the released file (full-size files are
    not downloaded here; the reference files above check the values)."""
    from mmengine.config import Config

    from mmdwnet.registry import MODELS
    from official_layout import official_backbone_state
    cfg = Config.fromfile(str(repo_root / 'configs' / config))
    cfg.model.backbone.init_cfg = None
    backbone = MODELS.build(cfg.model.backbone)
    classification = config.startswith('classification')
    official = official_backbone_state(backbone.state_dict(), classification=classification)
    if classification:
        official = {'model': dict(official, **{'head.weight': torch.zeros(1000, 768),
                                                'head.bias': torch.zeros(1000)})}
    else:
        official = {'backbone.' + k: v for k, v in official.items()}
    with strict_loading(), mmengine_messages() as log:
        backbone.load_state_dict(official, strict=True)
    assert any('converted an official' in m for m in log)


def test_resume_needs_a_training_checkpoint(reference_dir, repo_root, tmp_path):
    """--resume PATH with weights alone (an official file) says to use load_from instead."""
    import argparse

    from mmdwnet.apis import train as tool  # tools/train.py's options
    official = str(reference_dir / 'cls_dwnet_narrow.pth')
    cfg = narrow_config(repo_root, 'cls_dwnet_narrow')
    args = argparse.Namespace(amp=False, auto_scale_lr=False, no_validate=False, resume=official,
                              config='cfg.py')
    with pytest.raises(ValueError, match=f'not a training checkpoint.*load_from={official}'):
        tool.merge_args(cfg, args)
    runner_ckpt = tmp_path / 'epoch_1.pth'  # what mmengine's runner saves (meta epoch/iter)
    torch.save(dict(meta=dict(epoch=1, iter=10), state_dict={}), runner_ckpt)
    args.resume = str(runner_ckpt)
    assert tool.merge_args(cfg, args).resume is True


def test_other_libraries_swin_still_reads_the_official_swin_file(reference_dir):
    """The loaders return checkpoints unchanged: mmdet's own Swin converts official Swin weights
    in its init_weights as before (conversion happens only in mmdwnet backbones)."""
    from mmdet.models.backbones import SwinTransformer
    from mmengine.config import ConfigDict
    path = str(reference_dir / 'cls_swin_narrow.pth')
    swin = SwinTransformer(embed_dims=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 4, 8],
                           convert_weights=True,
                           init_cfg=ConfigDict(type='Pretrained', checkpoint=path))
    swin.init_weights()
    official = _official(reference_dir, 'cls_swin_narrow')['model']
    assert torch.equal(swin.patch_embed.projection.weight, official['patch_embed.proj.weight'])
    assert torch.equal(swin.stages[1].blocks[1].ffn.layers[1].weight,
                       official['layers.1.blocks.1.mlp.fc2.weight'])
