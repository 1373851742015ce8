"""Centering-calibrated BatchNorm (Table 12 "CC-BN"): formula, train/eval, registry, fusion."""
import pytest
import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer, fuse_conv_bn

from mmdwnet.models.norms import CCBN, SyncCCBN
from mmdwnet.registry import MODELS

TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])


def _reference(x, w_m, gamma, beta, mean=None, var=None, eps=1e-5):
    """CC-BN computed element by element from its definition: x_c = x + w_m[c] * mean over
    (h, w) of x[n, c]; then BN with the batch statistics of x_c (or the given ones)."""
    n, c, h, w = x.shape
    xc = torch.empty_like(x, dtype=torch.float64)
    for i in range(n):
        for j in range(c):
            xc[i, j] = x[i, j].double() + w_m[j].double() * x[i, j].double().sum() / (h * w)
    if mean is None:
        mean = xc.mean(dim=(0, 2, 3))
        var = ((xc - mean.view(1, -1, 1, 1))**2).mean(dim=(0, 2, 3))  # biased, as BN normalises
    out = (xc - mean.double().view(1, -1, 1, 1)) / (var.double().view(1, -1, 1, 1) + eps).sqrt()
    return (out * gamma.double().view(1, -1, 1, 1) + beta.double().view(1, -1, 1, 1)).float(), xc


def _randomised(layer, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.centering_weight.copy_(torch.randn(layer.num_features, generator=g))
        layer.bn.weight.copy_(torch.rand(layer.num_features, generator=g) + 0.5)
        layer.bn.bias.copy_(torch.randn(layer.num_features, generator=g))
        layer.bn.running_mean.copy_(torch.randn(layer.num_features, generator=g))
        layer.bn.running_var.copy_(torch.rand(layer.num_features, generator=g) + 0.5)
    return layer


def test_starts_as_plain_batch_norm():
    layer, bn = CCBN(6), nn.BatchNorm2d(6)
    assert torch.equal(layer.centering_weight, torch.zeros(6))
    x = torch.randn(4, 6, 5, 7) * 3 + 1
    torch.testing.assert_close(layer(x), bn(x))  # train mode: same batch statistics
    torch.testing.assert_close(layer.bn.running_var, bn.running_var)


def test_train_mode_matches_the_formula_and_updates_running_stats():
    layer = _randomised(CCBN(5))
    running_mean, running_var = layer.bn.running_mean.clone(), layer.bn.running_var.clone()
    x = torch.randn(3, 5, 4, 6) * 2 + 0.5
    expected, xc = _reference(x, layer.centering_weight, layer.bn.weight, layer.bn.bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    count = 3 * 4 * 6
    batch_mean = xc.mean(dim=(0, 2, 3))
    batch_var = ((xc - batch_mean.view(1, -1, 1, 1))**2).sum(dim=(0, 2, 3)) / (count - 1)
    torch.testing.assert_close(layer.bn.running_mean, (0.9 * running_mean + 0.1 * batch_mean)
                               .float())
    torch.testing.assert_close(layer.bn.running_var, (0.9 * running_var + 0.1 * batch_var)
                               .float())
    # the centering weight learns: it receives a gradient
    layer(x).pow(2).sum().backward()
    assert layer.centering_weight.grad is not None and layer.centering_weight.grad.abs().sum() > 0


def test_eval_mode_uses_running_stats_and_each_sample_alone():
    layer = _randomised(CCBN(4)).eval()
    x = torch.randn(3, 4, 5, 5)
    expected, _ = _reference(x, layer.centering_weight, layer.bn.weight, layer.bn.bias,
                             layer.bn.running_mean, layer.bn.running_var)
    with torch.no_grad():
        out = layer(x)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        # per-sample calibration: an image's output does not depend on the rest of the batch
        torch.testing.assert_close(layer(x[1:2]), out[1:2])
    before = layer.bn.running_mean.clone()
    layer(x)
    assert torch.equal(layer.bn.running_mean, before)


def test_non_spatial_inputs_and_bad_shapes():
    layer = _randomised(CCBN(3)).eval()
    x = torch.randn(2, 3)
    expected, _ = _reference(x[:, :, None, None], layer.centering_weight, layer.bn.weight,
                             layer.bn.bias, layer.bn.running_mean, layer.bn.running_var)
    torch.testing.assert_close(layer(x), expected[:, :, 0, 0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r'CCBN\(3\) expects \(N, 3, \.\.\.\)'):
        layer(torch.randn(2, 4, 5, 5))


@pytest.mark.parametrize('scope', [None, 'mmpretrain', 'mmdet', 'mmseg'])
def test_registered_norm_layers_build_from_any_scope(scope):
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        name, layer = build_norm_layer(dict(type='CCBN', requires_grad=False), 8)
        _, sync = build_norm_layer(dict(type='SyncCCBN'), 8)
    assert isinstance(layer, CCBN) and name == 'ccbn'
    assert not any(p.requires_grad for p in layer.parameters())
    assert isinstance(sync, SyncCCBN) and isinstance(sync.bn, nn.SyncBatchNorm)


def test_sync_form_is_reverted_and_honours_norm_eval():
    from mmengine.model import revert_sync_batchnorm
    backbone = MODELS.build(dict(type='DWNet', arch=TINY, mixer=dict(norm_cfg=dict(
        type='SyncCCBN')), norm2_cfg=dict(type='SyncCCBN'), norm_eval=True))
    ccbns = [m for m in backbone.modules() if isinstance(m, SyncCCBN)]
    assert len(ccbns) == 4 * 4  # three in each mixer, one before each FFN
    reverted = revert_sync_batchnorm(backbone).train()
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in reverted.modules())
    assert all(not m.bn.training for m in ccbns)  # norm_eval finds the inner BN
    out = reverted(torch.randn(2, 3, 64, 64))
    assert out[0].shape == (2, 128, 2, 2)


def test_conv_bn_fusion_stays_exact_and_leaves_cc_bn_alone():
    """mmcv's fuse_conv_bn folds plain BNs after convs; a CC-BN (whose per-sample mean cannot
    be folded into a conv) and its conv are left as they are, so the output is unchanged."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6),
                          nn.Conv2d(6, 6, 3, padding=1), _randomised(CCBN(6)))
    torch.nn.init.normal_(model[1].running_mean)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_conv_bn(model)
        got = fused(x)
    assert isinstance(fused[1], nn.Identity)  # the plain BN was folded
    assert isinstance(fused[3], CCBN) and isinstance(fused[3].bn, nn.BatchNorm2d)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_cc_bn_backbone_fused_and_fast_path_give_the_module_outputs():
    """A DWNet with CC-BN in the mixers and before the FFN: fuse_conv_bn and the CPU fast path
    (which folds only plain BNs) leave the outputs unchanged."""
    from mmdwnet.models.layers.switches import fast_inference
    torch.manual_seed(0)
    backbone = MODELS.build(dict(type='DWNet', arch=TINY, mixer=dict(norm_cfg=dict(type='CCBN')),
                                 norm2_cfg=dict(type='CCBN')))
    for m in backbone.modules():
        if isinstance(m, CCBN):
            _randomised(m, seed=len(m.bn.weight))
    backbone.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), fast_inference(False):
        expected = backbone(x)[0]
    with torch.no_grad(), fast_inference(True):
        torch.testing.assert_close(backbone(x)[0], expected, rtol=1e-4, atol=1e-4)
        fused = fuse_conv_bn(backbone)
        assert sum(isinstance(m, CCBN) for m in fused.modules()) == 4 * 4
        torch.testing.assert_close(fused(x)[0], expected, rtol=1e-4, atol=1e-4)


def test_table12_configs_use_cc_bn(repo_root):
    from mmdwnet.apis import init_model
    cls = repo_root / 'configs' / 'classification'
    dwnet = init_model(str(cls / 'dwnet-tiny-ccbn_8xb128_in1k.py')).backbone
    block = dwnet.stages[0].blocks[0]
    assert isinstance(block.norm2, CCBN) and isinstance(block.mixer.norm_in, nn.BatchNorm2d)
    swin = init_model(str(cls / 'swin-tiny-ccbn_8xb128_in1k.py')).backbone
    block = swin.stages[0].blocks[0]
    assert isinstance(block.norm1, CCBN) and isinstance(block.norm2, CCBN)
