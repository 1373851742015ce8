"""One shortened ``make demo`` run shared by test_demo.py, test_custom_dataset.py and
test_downstream_chain.py.

``demo/digits_demo.py --epochs 3 --short`` writes the digits image folder, trains the nano DWNet
and I-D-DWNet with ``tools/train.py``, tests them with ``tools/test.py`` and runs the inferencer,
then writes a small digit-scenes set and fine-tunes DWNet's Cascade Mask R-CNN and UPerNet from
the classification checkpoint for a few iterations; the run happens once per pytest session
(kept in ``_RUNS``), whichever module asks first.
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


def demo_run(tmp_path_factory):
    """(work dir, results.json as a dict, demo output) of the shortened demo."""
    if 'demo' in _RUNS:
        return _RUNS['demo']
    tmp = tmp_path_factory.mktemp('digits_demo')
    proc = run([sys.executable, 'demo/digits_demo.py', '--epochs', EPOCHS, '--data-root',
                tmp / 'digits', '--work-dir', tmp / 'demo', '--short', '--scenes-root',
                tmp / 'scenes'])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    _RUNS['demo'] = tmp / 'demo', json.loads((tmp / 'demo' / 'results.json').read_text()), out
    return _RUNS['demo']
