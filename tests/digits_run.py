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
import signal
import subprocess
import sys
import time
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
    # its own process group: the demo runs tools/train.py in child processes, which must stop
    # with it (terminating the demo alone leaves them training)
    proc = subprocess.Popen([str(c) for c in _demo_cmd(tmp)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    _BACKGROUND.update(proc=proc, tmp=tmp, log=log)


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:  # no process left in the group
        pass


def stop_background():
    """Terminate a background demo still running and the tool processes it started (the session
    ends before a test needed it, or a test gave up waiting); close its log.  The group is
    signalled only while the demo itself runs, so its id cannot belong to anyone else yet."""
    proc = _BACKGROUND.get('proc')
    if proc is None:
        return
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(1)  # the children's turn to exit on SIGTERM; then make sure of it
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    _BACKGROUND['log'].close()


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
