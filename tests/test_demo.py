"""``make demo`` (demo/digits_demo.py), shortened to a few epochs: outputs and their numbers."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from digits_run import EPOCHS, ROOT, run


@pytest.fixture(scope='module')
def demo(digits_demo):
    return digits_demo


@pytest.mark.slow
def test_demo_writes_figure_and_table(demo):
    from PIL import Image
    work_dir, results, out = demo
    assert set(results['models']) == {'DWNet', 'I-D-DWNet'} and results['epochs'] == EPOCHS
    with Image.open(work_dir / 'predictions.png') as img:
        assert img.size[0] > 800 and img.size[1] > 200
    table = (work_dir / 'results.md').read_text()
    for name, res in results['models'].items():
        row = next(line for line in table.splitlines() if line.startswith(f'| {name} |'))
        assert f'| {res["top1"]:.2f} |' in row and f'{res["params"] / 1e6:.2f} M' in row
        assert res['params'] > 0 and res['flops'] > 0 and res['images_per_s'] > 0
        assert len(res['predictions']) == len(results['images']) == 10
        assert Path(res['checkpoint']).name == f'epoch_{EPOCHS}.pth'
    assert 'Epoch(train)' in out and 'Epoch(test)' in out  # mmengine's progress is shown
    assert [img['label'] for img in results['images']] == list(range(10))  # one per digit


@pytest.mark.slow
def test_reported_top1_is_what_tools_test_gives(demo, tmp_path):
    work_dir, results, _ = demo
    res = results['models']['DWNet']
    data_root = Path(results['images'][0]['path']).parents[2]
    proc = run([sys.executable, 'tools/test.py', ROOT / res['config'], res['checkpoint'],
                '--work-dir', tmp_path / 'test', '--cfg-options',
                f'test_dataloader.dataset.data_root={data_root}'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    top1 = float(re.search(r'accuracy/top1: (\d+\.\d+)', proc.stdout + proc.stderr).group(1))
    assert abs(top1 - res['top1']) < 1e-3, (top1, res['top1'])


@pytest.mark.slow
def test_predictions_match_an_independently_built_model(demo):
    """The inferencer's labels equal argmax of mmpretrain.get_model on the same images."""
    import mmcv
    import torch
    from mmpretrain import get_model
    _, results, _ = demo
    res = results['models']['I-D-DWNet']
    from mmdwnet.utils import safe_loading
    with safe_loading():  # a runner checkpoint: weights-only with mmengine's types (the gate)
        model = get_model(str(ROOT / res['config']), pretrained=res['checkpoint'], device='cpu')
    images = [mmcv.imread(img['path']) for img in results['images']]  # BGR, as the pipeline
    batch = torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in images]).float()
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=list(batch)), False)
        logits = model(data['inputs'], mode='tensor')
    assert logits.argmax(1).tolist() == res['predictions']


def test_bad_epochs_is_refused_before_anything_runs():
    proc = subprocess.run([sys.executable, 'demo/digits_demo.py', '--epochs', '1'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and '--epochs 1: use at least 2' in proc.stderr


def test_make_targets_create_the_environment_first(tmp_path):
    venv = tmp_path / 'fresh-venv'
    for target, command in (('demo', 'demo/digits_demo.py --epochs 3'), ('test', '-m pytest')):
        # --no-print-directory: under `make test` (CI) this make is nested and would print
        # "Entering directory" lines around the commands
        proc = subprocess.run(['make', '--no-print-directory', '-n', target, f'VENV={venv}',
                               'DEMO_EPOCHS=3'], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == f'bash tools/install.sh {venv}', lines  # install first ...
        assert lines[-1].strip() == f'{venv}/bin/python {command}'  # ... then the command


def _dead(pid):
    """True when ``pid`` is gone or a zombie (exited; a container's init may not reap it)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except FileNotFoundError:
        return True


def test_stopping_the_background_demo_stops_the_tools_it_started(tmp_path, monkeypatch):
    """The background demo runs tools/train.py in child processes; ending the session before
    the demo (an early failure under -x) must stop them too, not leave them training."""
    import time

    import digits_run
    monkeypatch.setattr(digits_run, '_BACKGROUND', {})
    monkeypatch.setattr(digits_run, '_RUNS', {})
    pid_file = tmp_path / 'child.pid'
    script = ('import subprocess, sys, time\n'
              'child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])\n'
              f'open({str(pid_file)!r}, "w").write(str(child.pid))\n'
              'time.sleep(120)\n')
    monkeypatch.setattr(digits_run, '_demo_cmd', lambda tmp: [sys.executable, '-c', script])
    digits_run.start_in_background(tmp_path)
    proc = digits_run._BACKGROUND['proc']
    for _ in range(200):
        if pid_file.is_file() and pid_file.read_text():
            break
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert not _dead(child)
    digits_run.stop_background()
    assert proc.poll() is not None and digits_run._BACKGROUND['log'].closed
    for _ in range(100):
        if _dead(child):
            break
        time.sleep(0.05)
    assert _dead(child), 'the demo child process survived stop_background'
