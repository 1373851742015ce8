"""Layer-wise lr decay: LocalMixerNet.get_layer_depth with mmpretrain's
LearningRateDecayOptimWrapperConstructor, checked against a depth computed from the module tree."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmdwnet  # noqa: F401
from mmdwnet.apis import init_model

ROOT = Path(__file__).resolve().parents[2]
LRD = ROOT / 'configs' / 'classification' / 'dwnet-tiny-lrd_8xb128-ft30e_in1k.py'


def expected_depths(model):
    """{parameter: depth} from the module tree, independently of get_layer_depth: the patch
    embedding is 0, the blocks are numbered 1, 2, ... in forward order, a patch merging shares
    the depth of the block before it, everything after the last block is the last depth."""
    backbone = model.backbone
    depths = {}
    for p in backbone.patch_embed.parameters():
        depths[p] = 0
    block = 0
    for stage in backbone.stages:
        for blk in stage.blocks:
            block += 1
            for p in blk.parameters():
                depths[p] = block
        if stage.downsample is not None:
            for p in stage.downsample.parameters():
                depths[p] = block
    last = block + 1
    for p in model.parameters():
        depths.setdefault(p, last)
    return depths, last + 1


@pytest.fixture(scope='module')
def model_and_wrapper():
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(str(LRD))
    model = init_model(cfg)
    model.train()
    return cfg, model, build_optim_wrapper(model, cfg.optim_wrapper)


def test_config_uses_layer_decay_with_the_base_no_decay_rules():
    cfg = Config.fromfile(str(LRD))
    assert cfg.optim_wrapper.constructor == 'LearningRateDecayOptimWrapperConstructor'
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.75
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.
    assert cfg.model.backbone.type == 'DWNet' and cfg.model.backbone.arch == 'tiny'


def test_every_parameter_group_gets_its_decayed_lr(model_and_wrapper):
    cfg, model, wrapper = model_and_wrapper
    base_lr = cfg.optim_wrapper.optimizer.lr
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    depths, num_layers = expected_depths(model)
    assert num_layers == 2 + 2 + 6 + 2 + 2  # tiny: sum(depths) + 2
    groups = wrapper.optimizer.param_groups
    seen = set()
    for group in groups:
        for p in group['params']:
            expected = base_lr * rate**(num_layers - 1 - depths[p])
            assert group['lr'] == pytest.approx(expected, rel=1e-12), group['param_name']
            seen.add(p)
    trainable = {p for p in model.parameters() if p.requires_grad}
    assert seen == trainable  # every parameter is in exactly one group with its lr
    assert len({round(g['lr'], 15) for g in groups}) == num_layers  # 14 distinct lrs, as Swin-T
    head = [g for g in groups if g['param_name'].startswith('head.')]
    assert head and all(g['lr'] == pytest.approx(base_lr) for g in head)
    embed = [g for g in groups if g['param_name'].startswith('backbone.patch_embed.')]
    assert all(g['lr'] == pytest.approx(base_lr * rate**(num_layers - 1)) for g in embed)


def test_no_decay_rules_still_apply(model_and_wrapper):
    cfg, _, wrapper = model_and_wrapper
    wd = cfg.optim_wrapper.optimizer.weight_decay
    for group in wrapper.optimizer.param_groups:
        name, p = group['param_name'], group['params'][0]
        if p.ndim == 1:  # norms, biases, other flat parameters
            assert group['weight_decay'] == 0., name
        else:
            assert group['weight_decay'] == wd, name


def test_layer_depth_convention_matches_mmpretrain_swin():
    """Same depth for the same place in the network as mmpretrain's SwinTransformer."""
    from mmpretrain.models import SwinTransformer

    from mmdwnet.models.backbones import SwinNet
    theirs = SwinTransformer(arch='tiny', img_size=224)
    ours = SwinNet(arch='tiny')
    pairs = [('patch_embed.projection.weight', 'patch_embed.projection.weight'),
             ('stages.0.blocks.0.ffn.layers.0.0.weight', 'stages.0.blocks.0.ffn.layers.0.0.weight'),
             ('stages.2.blocks.5.norm1.weight', 'stages.2.blocks.5.norm1.weight'),
             ('stages.1.downsample.reduction.weight', 'stages.1.downsample.reduction.weight'),
             ('stages.2.downsample.norm.weight', 'stages.2.downsample.norm.weight'),
             ('norm3.weight', 'norm3.weight')]
    for name_theirs, name_ours in pairs:
        assert ours.get_layer_depth('backbone.' + name_ours, 'backbone.') == \
            theirs.get_layer_depth('backbone.' + name_theirs, 'backbone.'), name_ours
    assert ours.get_layer_depth('head.fc.weight', 'backbone.') == (13, 14)


def test_one_layer_decay_step_trains(model_and_wrapper):
    _, model, wrapper = model_and_wrapper
    before = model.backbone.patch_embed.projection.weight.detach().clone()
    loss = model(torch.randn(2, 3, 64, 64), mode='tensor').logsumexp(-1).mean()
    wrapper.update_params(loss)
    assert not torch.equal(before, model.backbone.patch_embed.projection.weight)
