"""mmdwnet.analysis.resize_kernels (tools/analysis_tools/resize_kernels.py): 224 checkpoints ->
larger kernels/windows (Table 14)."""
import subprocess
import sys

import pytest
import torch
from mmdwnet.apis import init_model
from mmdwnet.models.mixers.dwconv import DynamicDWConv2d, IDynamicDWConv2d

TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])


@pytest.fixture(scope='module')
def rk():
    from mmdwnet.analysis import resize_kernels
    return resize_kernels


def tiny_config(tmp_path, repo_root, leaf, name, **backbone):
    """A config inheriting the real ``leaf`` with a 16-channel, 4-block backbone."""
    backbone = dict(arch=dict(TINY, _delete_=True), **backbone)
    path = tmp_path / name
    path.write_text(f"_base_ = [{str(repo_root / 'configs' / 'classification' / leaf)!r}]\n"
                    f"model = dict(backbone={backbone!r}, head=dict(in_channels=128))\n")
    return str(path)


def test_resize_kernel_keeps_constants_and_sums(rk):
    kernel = torch.full((5, 1, 7, 7), 0.3)
    assert torch.equal(rk.resize_kernel(kernel, 7), kernel)
    plain = rk.resize_kernel(kernel, 13, scale='none')
    assert plain.shape == (5, 1, 13, 13)
    torch.testing.assert_close(plain, torch.full_like(plain, 0.3))
    assert torch.equal(rk.resize_kernel(kernel, 13), plain)  # default: plain, as the paper
    summed = rk.resize_kernel(kernel, 13, mode='bilinear', scale='sum')
    torch.testing.assert_close(summed.sum((-1, -2)), kernel.sum((-1, -2)))
    with pytest.raises(ValueError, match="'sum' or 'none'"):
        rk.resize_kernel(kernel, 13, scale='mean')


def test_position_table_keeps_zero_offset_and_constants(rk):
    table = torch.randn(13 * 13, 3)
    out = rk.resize_position_table(table, 23)  # window 7 -> 12
    assert out.shape == (23 * 23, 3)
    # the zero-offset entry sits on the grid centre of both tables: bicubic keeps it exactly
    torch.testing.assert_close(out[11 * 23 + 11], table[6 * 13 + 6])
    const = rk.resize_position_table(torch.ones(13 * 13, 2) * 2.5, 23)
    torch.testing.assert_close(const, torch.full_like(const, 2.5))
    with pytest.raises(rk.ResizeError, match='square grid'):
        rk.resize_position_table(torch.zeros(12, 2), 5)


@pytest.mark.parametrize('dynamic', ['D-DW', 'I-D-DW'])
def test_resized_generators_generate_resized_kernels(rk, dynamic):
    """The generator is linear in its last conv: resized rows give resized kernels."""
    torch.manual_seed(0)
    if dynamic == 'D-DW':
        src, dst = DynamicDWConv2d(16, 7), DynamicDWConv2d(16, 13)
    else:
        src, dst = IDynamicDWConv2d(16, 7, group_channels=4), IDynamicDWConv2d(16, 13, 4)
    for m in (src, dst):
        m.eval()
        torch.nn.init.normal_(m.norm.running_mean)
    state, resized = rk.resize_state_dict(src.state_dict(), dst)
    assert sorted(resized) == ['expand.bias', 'expand.weight']
    dst.load_state_dict(state)
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        w_src, w_dst = src.generate_weight(x), dst.generate_weight(x)
    if dynamic == 'I-D-DW':  # (N, G, k, k, H, W) -> (N, G, H, W, k, k)
        w_src, w_dst = w_src.permute(0, 1, 4, 5, 2, 3), w_dst.permute(0, 1, 4, 5, 2, 3)
    torch.testing.assert_close(w_dst, rk.resize_kernel(w_src, 13), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('leaf,target_leaf,mixer_key', [
    ('dwnet-tiny_8xb128_in1k.py', 'dwnet-tiny-k12_8xb128-ft30e_in1k-384px.py', 'kernel_size'),
    ('swin-tiny_8xb128_in1k.py', 'swin-tiny-w12_8xb128-ft30e_in1k-384px.py', 'window_size'),
])
def test_cli_converts_a_224_checkpoint_for_the_384_config(rk, tmp_path, repo_root, leaf,
                                                         target_leaf, mixer_key):
    src_cfg = tiny_config(tmp_path, repo_root, leaf, 'src.py')
    dst_cfg = tiny_config(tmp_path, repo_root, target_leaf, 'dst.py')
    model = init_model(src_cfg)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=300)), tmp_path / 'src.pth')
    assert rk.resize_checkpoint(str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth'), dst_cfg)
    ckpt = torch.load(tmp_path / 'dst.pth', map_location='cpu')
    assert ckpt['meta']['resized_keys'] and ckpt['meta']['epoch'] == 300
    target = init_model(dst_cfg, checkpoint=str(tmp_path / 'dst.pth'))  # strict load
    size = target.backbone.stages[0].blocks[0].mixer
    assert getattr(size, mixer_key) == 12
    if mixer_key == 'kernel_size':  # default: plain bicubic upsampling (the paper, as Swin)
        key = 'backbone.stages.0.blocks.0.mixer.aggregate.weight'
        expected = torch.nn.functional.interpolate(model.state_dict()[key], size=(12, 12),
                                                   mode='bicubic', align_corners=False)
        assert torch.equal(target.state_dict()[key], expected)
    unchanged = [k for k in model.state_dict() if k not in ckpt['meta']['resized_keys']]
    for key in unchanged:
        assert torch.equal(target.state_dict()[key], model.state_dict()[key]), key
    with torch.no_grad():
        out = target(torch.randn(1, 3, 384, 384), mode='tensor')
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_unresizable_and_mismatched_checkpoints_fail_clearly(rk, tmp_path, repo_root):
    src_cfg = tiny_config(tmp_path, repo_root, 'local-mlp-tiny-share-ch-pos_8xb128_in1k.py',
                          'mlp7.py')
    dst_cfg = tiny_config(tmp_path, repo_root, 'local-mlp-tiny-share-ch-pos_8xb128_in1k.py',
                          'mlp12.py', img_size=384, mixer=dict(window_size=12))
    torch.save(dict(state_dict=init_model(src_cfg).state_dict()), tmp_path / 'mlp.pth')
    with pytest.raises(rk.ResizeError) as err:
        rk.resize_checkpoint(str(tmp_path / 'mlp.pth'), str(tmp_path / 'out.pth'), dst_cfg)
    assert 'local_weight' in str(err.value) and 'cannot be resized' in str(err.value)
    assert not (tmp_path / 'out.pth').exists()

    swin_cfg = tiny_config(tmp_path, repo_root, 'swin-tiny_8xb128_in1k.py', 'swin.py')
    with pytest.raises(rk.ResizeError) as err:
        rk.resize_checkpoint(str(tmp_path / 'mlp.pth'), str(tmp_path / 'out.pth'), swin_cfg)
    assert 'does not match the target model' in str(err.value)
    assert 'same architecture' in str(err.value)
    # the command line reports it as an error (exit status 2), nothing written
    proc = subprocess.run([sys.executable, 'tools/analysis_tools/resize_kernels.py',
                           str(tmp_path / 'mlp.pth'), str(tmp_path / 'out.pth'), '--config',
                           swin_cfg], cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 2 and 'error: ' in proc.stderr, proc.stderr[-2000:]
    assert 'does not match the target model' in proc.stderr
    assert not (tmp_path / 'out.pth').exists()
