"""Effective receptive field tool: support matches the architecture, CLI outputs, errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import mmdwnet  # noqa: F401
from mmdwnet.analysis import erf_cli as tool
from mmdwnet.analysis.erf import (effective_receptive_field, high_contribution_area,
                                  load_images, stage_output)
from mmdwnet.models.backbones import DWNet, DynamicDWNet, SwinNet

TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])


def _support(erf):
    rows, cols = np.nonzero(erf > 1e-8 * erf.max())
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def _eval(model):
    model.eval()
    return model


@pytest.mark.parametrize('kernel_size', [3, 7])
def test_erf_support_is_the_theoretical_receptive_field(kernel_size):
    """Stage 0 = 4x4 patches + one k x k DW block: the ERF spans k patches = 4k pixels."""
    torch.manual_seed(0)
    model = _eval(DWNet(arch=TINY, mixer=dict(kernel_size=kernel_size), img_size=64))
    erf = effective_receptive_field(model, load_images('random', 2, (64, 64)), 0,
                                    progress=False)
    assert erf.shape == (64, 64)
    assert _support(erf) == (4 * kernel_size, 4 * kernel_size)


def test_erf_of_window_attention_and_dynamic_conv():
    torch.manual_seed(0)
    images = load_images('random', 1, (56, 56))
    swin = _eval(SwinNet(arch=TINY, img_size=56))
    erf = effective_receptive_field(swin, images, 0, progress=False)
    assert _support(erf) == (28, 28)  # one 7x7 window of 4x4 patches
    assert erf[:28].max() == 0 and erf[:, :28].max() == 0  # the centre's window is bottom-right
    ddw = _eval(DynamicDWNet(arch=TINY, img_size=56))
    erf = effective_receptive_field(ddw, images, 0, progress=False)
    assert _support(erf) == (56, 56)  # the kernel generator pools the whole map
    ratios = high_contribution_area(erf)
    assert 0 < ratios[0.2] < ratios[0.5] < ratios[0.99] <= 1


def test_stage_output_and_errors(tmp_path):
    model = _eval(DWNet(arch=TINY, img_size=64))
    x = torch.randn(1, 3, 64, 64)
    assert stage_output(model, x, 2).shape == (1, 64, 4, 4)
    with pytest.raises(IndexError, match='4 stages'):
        stage_output(model, x, 4)
    with pytest.raises(TypeError, match='stages'):
        stage_output(torch.nn.Conv2d(3, 3, 1), x, 0)
    with pytest.raises(FileNotFoundError, match='neither'):
        load_images(str(tmp_path / 'missing'))
    with pytest.raises(FileNotFoundError, match='no .jpg'):
        load_images(str(tmp_path))
    import mmcv
    for i in range(3):
        mmcv.imwrite(np.full((20, 30, 3), 40 * i, np.uint8), str(tmp_path / f'{i}.png'))
    batch = load_images(str(tmp_path), 2, (32, 48))
    assert batch.shape == (2, 3, 32, 48)
    assert load_images('skimage', 2, (40, 40)).shape == (2, 3, 40, 40)


def test_cli_with_config_and_checkpoint(repo_root, tmp_path, capsys):
    cfg = tmp_path / 'tiny_dwnet.py'
    cfg.write_text(
        f"_base_ = ['{repo_root}/configs/classification/dwnet-tiny_8xb128_in1k.py']\n"
        'model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=16, '
        'depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8]), img_size=64), '
        'head=dict(in_channels=128))\n')
    from mmdwnet.apis import init_model
    torch.manual_seed(3)
    model = init_model(str(cfg))
    ckpt = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    out = tmp_path / 'out' / 'erf.png'
    rc = tool.main([str(cfg), '--checkpoint', str(ckpt), '--stage', '1', '--images', 'skimage',
                    '--num-images', '2', '--img-size', '64', '--out', str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert '2/2' in printed and 'high-contribution area ratio' in printed  # progress bar
    erf = np.load(out.with_suffix('.npy'))
    expected = effective_receptive_field(model, load_images('skimage', 2, (64, 64)), 1,
                                         progress=False)
    np.testing.assert_allclose(erf, expected, rtol=1e-5, atol=1e-12)
    import matplotlib.image as mpimg
    assert mpimg.imread(out).shape[0] > 100
    assert tool.main([str(cfg), '--stage', '7', '--img-size', '64', '--num-images', '1',
                      '--out', str(tmp_path / 'x.png')]) == 2
    assert 'out of range' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([str(cfg), '--out', str(tmp_path / 'x.jpg')])
    assert '.png' in capsys.readouterr().err


def test_tool_script_wraps_the_package_cli(repo_root, tmp_path):
    """tools/analysis_tools/effective_receptive_field.py runs as a script: the package's
    parser and exit status (2 for a config that does not exist)."""
    script = repo_root / 'tools' / 'analysis_tools' / 'effective_receptive_field.py'
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / 'missing.py'),
                           '--num-images', '1', '--img-size', '32',
                           '--out', str(tmp_path / 'erf.png')],
                          capture_output=True, text=True, cwd=repo_root)
    assert proc.returncode == 2, proc.stderr
    assert 'error:' in proc.stderr and 'missing.py' in proc.stderr
    assert not (tmp_path / 'erf.png').exists()
