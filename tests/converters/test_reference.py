"""Official checkpoints, converted, reproduce the official outputs (the acceptance test)."""
import json
import subprocess
import sys

import pytest
import torch

from mmdwnet.apis import init_model

CASES = ['cls_dwnet_narrow', 'cls_dynamic_dwnet_narrow', 'cls_i_dynamic_dwnet_narrow',
         'cls_swin_narrow', 'det_dwnet_narrow', 'det_dynamic_dwnet_narrow']


def test_index_lists_every_case(reference_dir):
    assert set(json.loads((reference_dir / 'index.json').read_text())) == set(CASES)


@pytest.mark.parametrize('case', CASES)
def test_converted_official_checkpoint_reproduces_official_output(case, reference_dir, tmp_path,
                                                                 repo_root):
    dst, cfg = tmp_path / f'{case}.pth', tmp_path / f'{case}.py'
    proc = subprocess.run(
        [sys.executable, str(repo_root / 'tools/model_converters/official2mmdwnet.py'),
         str(reference_dir / f'{case}.pth'), str(dst), '--config-out', str(cfg)],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    io = torch.load(reference_dir / f'{case}.io.pth', weights_only=True)
    model = init_model(str(cfg), str(dst))
    with torch.no_grad():
        if case.startswith('cls'):
            out = model(io['input'], mode='tensor')
            assert out.shape == io['output'].shape
            assert (out - io['output']).abs().max().item() <= 1e-5
        else:
            outs = model(io['input'])
            assert len(outs) == len(io['output']) == 4
            for o, ref in zip(outs, io['output']):
                assert o.shape == ref.shape
                assert (o - ref).abs().max().item() <= 1e-5


def test_det_padding_matters(reference_dir, tmp_path, repo_root):
    """Without the official window padding, border outputs differ: the test can fail."""
    case = 'det_dwnet_narrow'
    dst, cfg = tmp_path / 'c.pth', tmp_path / 'c.py'
    subprocess.run([sys.executable, str(repo_root / 'tools/model_converters/official2mmdwnet.py'),
                    str(reference_dir / f'{case}.pth'), str(dst), '--config-out', str(cfg)],
                   check=True, capture_output=True)
    io = torch.load(reference_dir / f'{case}.io.pth', weights_only=True)
    model = init_model(str(cfg), str(dst), cfg_options={'model.pad_to_window': False})
    with torch.no_grad():
        outs = model(io['input'])
    assert (outs[0] - io['output'][0]).abs().max().item() > 1e-3
