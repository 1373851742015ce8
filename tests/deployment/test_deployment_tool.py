"""mmdwnet.deployment.onnx and tools/deployment/pytorch2onnx.py end to end on a tiny I-D-DWNet
classifier made here (standard-op graphs and, with --ort-custom-ops, custom-op graphs)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip('onnxruntime', reason='needs `pip install mmdwnet[deploy]`')
pytest.importorskip('onnx', reason='needs `pip install mmdwnet[deploy]`')

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'deployment' / 'pytorch2onnx.py'
BASE = (ROOT / 'configs' / 'classification' / 'digits'
        / 'i-dynamic-dwnet-nano_1xb64-10e_digits-32px.py')


def _load_tool():
    from mmdwnet.deployment import onnx
    return onnx


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """(config, checkpoint, model): a 2-stage I-D-DWNet classifier with 3x3 kernels, 32x32."""
    from mmdwnet.apis import init_model
    folder = tmp_path_factory.mktemp('deploy')
    config = folder / 'tiny_idd.py'
    config.write_text(
        f"_base_ = [{str(BASE)!r}]\n"
        "model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=16, depths=[1, 1],\n"
        "                                     num_heads=[2, 4]),\n"
        "                           mixer=dict(kernel_size=3), out_indices=(1, )),\n"
        "             head=dict(num_classes=5, in_channels=32))\n")
    torch.manual_seed(0)
    model = init_model(str(config))
    model.init_weights()
    for m in model.modules():  # non-trivial BN statistics and head
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    checkpoint = folder / 'tiny_idd.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    return config, checkpoint, init_model(str(config), str(checkpoint))


def _assert_scores_match(sess, model):
    """The written graph gives the classifier's scores for a batch of 4 (not the export's
    example batch), equal to PyTorch within 1e-4."""
    x = torch.randn(4, 3, 32, 32)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x, mode='tensor').numpy()
    assert len(got) == 1 and got[0].shape == (4, 5)
    assert np.abs(got[0] - expected).max() < 1e-4


def test_cli_exports_classifier_and_refuses_to_overwrite(tiny, tmp_path):
    config, checkpoint, model = tiny
    out = tmp_path / 'model.onnx'
    cmd = [sys.executable, str(TOOL), str(config), str(checkpoint), '--shape', '32', '32',
           '--dynamic', '--output', str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'max abs diff' in res.stdout and out.is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary new file's mode

    # the written graph: the classifier's scores for any batch, equal to PyTorch
    sess = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    _assert_scores_match(sess, model)

    # an existing file is never replaced without --force
    before = out.read_bytes()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode != 0 and 'exists' in res.stderr and '--force' in res.stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.onnx']  # no temporary left


def test_force_backbone_only_torchscript(tiny, tmp_path):
    config, checkpoint, model = tiny
    tool = _load_tool()
    out = tmp_path / 'backbone.onnx'
    out.write_bytes(b'old')
    tool.export_and_verify(str(config), str(checkpoint), str(out), (40, 36), backbone_only=True,
                           exporter='torchscript', force=True)
    sess = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    x = torch.randn(1, 3, 40, 36)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model.backbone(x)
    assert [g.shape for g in got] == [tuple(e.shape) for e in expected] == [(1, 32, 5, 5)]
    assert np.abs(got[0] - expected[0].numpy()).max() < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ['backbone.onnx']


def test_out_of_tolerance_writes_nothing(tiny, tmp_path, monkeypatch, capsys):
    config, checkpoint, _ = tiny
    tool = _load_tool()
    monkeypatch.setattr(tool, 'verify', lambda net, data, inputs: [0.5, 0.25])
    out = tmp_path / 'bad.onnx'
    with pytest.raises(tool.OnnxMismatch) as exc:
        tool.export_and_verify(str(config), str(checkpoint), str(out), (32, 32),
                               exporter='torchscript')
    assert 'differs from PyTorch by 0.5' in str(exc.value)
    assert 'max abs diff 0.5' in capsys.readouterr().out
    assert not out.exists() and not list(tmp_path.iterdir())


def test_bad_arguments(tiny, tmp_path):
    config, _, _ = tiny
    tool = _load_tool()
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        tool.export_and_verify(str(config), str(tmp_path / 'missing.pth'),
                               str(tmp_path / 'x.onnx'), (32, 32))
    res = subprocess.run([sys.executable, str(TOOL), str(config), 'none', '--shape', '0', '32'],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 2 and '--shape needs positive H W' in res.stderr


def test_cli_ort_custom_ops(tiny, tmp_path):
    """--ort-custom-ops: each I-D-DW aggregation is one custom node; onnxruntime alone cannot
    load the file, with mmdwnet's session options it gives the classifier's scores for any
    batch."""
    pytest.importorskip('onnxruntime_extensions',
                        reason='--ort-custom-ops needs `pip install onnxruntime-extensions`')
    from mmdwnet.deployment import ort_ops
    config, checkpoint, model = tiny
    out = tmp_path / 'custom.onnx'
    res = subprocess.run([sys.executable, str(TOOL), str(config), str(checkpoint), '--shape', '32',
                          '32', '--dynamic', '--ort-custom-ops', '--output', str(out)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'custom nodes: MMDWLocalAggregatePointwiseBias x2' in res.stdout  # one per stage
    assert 'max abs diff' in res.stdout
    assert ort_ops.custom_nodes(str(out)) == {'MMDWLocalAggregatePointwiseBias': 2}
    with pytest.raises(Exception, match='MMDWLocalAggregatePointwiseBias'):
        ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    sess = ort_ops.inference_session(str(out))
    _assert_scores_match(sess, model)


def test_ort_custom_ops_without_extensions_writes_nothing(tiny, tmp_path, monkeypatch):
    config, checkpoint, _ = tiny
    tool = _load_tool()
    monkeypatch.setitem(sys.modules, 'onnxruntime_extensions', None)  # "not installed"
    out = tmp_path / 'custom.onnx'
    with pytest.raises(ImportError, match='pip install onnxruntime-extensions'):
        tool.export_and_verify(str(config), str(checkpoint), str(out), (32, 32),
                               custom_ops=True)
    assert not list(tmp_path.iterdir())
