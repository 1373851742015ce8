"""One shortened ``make demo`` run shared by test_demo.py, test_custom_dataset.py and
test_downstream_chain.py.

``demo/digits_demo.py --epochs 3 --short`` writes the digits image folder, trains the nano DWNet
and I-D-DWNet with ``tools/train.py``, tests them with ``tools/test.py`` and runs the inferencer,
then writes a small digit-scenes set and fine-tunes DWNet's Cascade Mask R-CNN and UPerNet from
the classification checkpoint for a few iterations; the run happens once per pytest session
(kept in ``_RUNS``): started in the background as soon as the collected tests include one that
needs it (``tests/conftest.py``), or by the first module that asks.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3
# the shortened run's top-1 on the 360 validation digits must clear this (chance: 10%)
TOP1_THRESHOLD = 80.


def run(cmd, timeout=900, **env):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', **env)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


_RUNS = {}
_BACKGROUND = {}  # the run started by start_in_background: its process, folder and log


def _demo_cmd(tmp):
    return [sys.executable, 'demo/digits_demo.py', '--epochs', EPOCHS, '--data-root',
            tmp / 'digits', '--work-dir', tmp / 'demo', '--short', '--scenes-root',
            tmp / 'scenes']


def start_in_background(tmp):
    """Start the shortened demo in ``tmp`` now, in a process of its own, while pytest goes on
    with the other tests (conftest.py calls this once the collected tests include one that
    needs it): the demo's five minutes, mostly one training process per core, then overlap the
    rest of the suite instead of adding to it.  :func:`demo_run` waits for it."""
    if _BACKGROUND or 'demo' in _RUNS:
        return
    log = open(tmp / 'demo.log', 'w+')
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.Popen([str(c) for c in _demo_cmd(tmp)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    _BACKGROUND.update(proc=proc, tmp=tmp, log=log)


def stop_background():
    """Terminate a background demo still running (the session ends before a test needed it)."""
    proc = _BACKGROUND.get('proc')
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)


def demo_run(tmp_path_factory):
    """(work dir, results.json as a dict, demo output) of the shortened demo."""
    if 'demo' in _RUNS:
        return _RUNS['demo']
    if _BACKGROUND:
        tmp, proc, log = _BACKGROUND['tmp'], _BACKGROUND['proc'], _BACKGROUND['log']
        proc.wait(timeout=1200)
        log.seek(0)
        out, code = log.read(), proc.returncode
    else:
        tmp = tmp_path_factory.mktemp('digits_demo')
        proc = run(_demo_cmd(tmp))
        out, code = proc.stdout + proc.stderr, proc.returncode
    assert code == 0, out[-4000:]
    _RUNS['demo'] = tmp / 'demo', json.loads((tmp / 'demo' / 'results.json').read_text()), out
    return _RUNS['demo']
