"""Issue 2: the set-up commands, pins, CI script and mim integration."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / 'README.md').read_text()
    first_block = re.search(r'```bash\n(.*?)```', text, re.S).group(1)
    return [line.split('#')[0].strip() for line in first_block.splitlines() if line.strip()]


def test_readme_opens_with_the_two_commands_and_the_demo_figure():
    text = (ROOT / 'README.md').read_text()
    assert readme_commands() == ['make demo', 'make test']
    assert text.index('```bash') < text.index('mmdwnet**')  # before any prose
    figure = re.search(r'!\[[^]]*\]\((docs/demo\.png)\)', text)
    assert figure and figure.start() < text.index('mmdwnet**')
    assert (ROOT / figure.group(1)).is_file()


def test_ci_runs_exactly_the_readme_test_command():
    lines = [line.strip() for line in (ROOT / '.ci/run').read_text().splitlines()
             if line.strip() and not line.lstrip().startswith('#')]
    assert lines[-1] == readme_commands()[1] == 'make test'
    assert not any(line.startswith('make') for line in lines[:-1])
    make = (ROOT / 'Makefile').read_text()
    assert re.search(r'^install:\n\tbash tools/install.sh \$\(VENV\)', make, re.M)
    # demo and test depend on the stamp that tools/install.sh writes (see test_demo.py for the
    # order of the commands on a fresh VENV)
    assert re.search(r'^\$\(ENV_STAMP\):.*\n\tbash tools/install.sh \$\(VENV\)', make, re.M)
    assert re.search(r'^test: \$\(ENV_STAMP\)\n(\t.*\n)*\t\$\(PYTHON\) -m pytest', make, re.M)
    assert re.search(r'^demo: \$\(ENV_STAMP\)\n\t\$\(PYTHON\) demo/digits_demo.py', make, re.M)
    assert 'VENV ?= .venv' in make


def test_installed_environment_passes_pip_check():
    proc = subprocess.run([sys.executable, '-m', 'pip', 'check', '--disable-pip-version-check'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_constraints_hold_and_every_runtime_pip_call_uses_them():
    import importlib.metadata as md

    from packaging.requirements import Requirement
    constraints = ROOT / 'requirements' / 'constraints.txt'
    pins = [Requirement(line.split('#')[0]) for line in constraints.read_text().splitlines()
            if line.split('#')[0].strip()]
    assert {'numpy', 'setuptools', 'matplotlib', 'torch', 'mmcv'} <= {p.name for p in pins}
    for pin in pins:
        assert pin.specifier.contains(md.version(pin.name), prereleases=True), \
            (pin, md.version(pin.name))
    script = (ROOT / 'tools/install.sh').read_text()
    installs = re.findall(r'"\$\{PIP\[@\]\}" install ((?:[^\n]*\\\n)*[^\n]*)', script)
    assert len(installs) >= 5
    for args in installs:
        if '--no-deps' in args:  # the mmcv wheel alone, mmdwnet itself: resolves nothing
            continue
        if 'build.txt' in args:  # build-only pins: inside the mmcv source-build branch only
            branch = script[script.index('if [ -z "$wheel" ]; then\n  step'):]
            assert branch.index('build.txt') < branch.index('\nelse\n')
            continue
        assert '"${CONSTRAINTS[@]}"' in args, args
    assert 'setuptools<' in (ROOT / 'requirements/build.txt').read_text()


def test_stack_is_pinned_and_installed():
    import importlib.metadata as md
    pins = {}
    for req in (ROOT / 'requirements').glob('*.txt'):
        for line in req.read_text().splitlines():
            m = re.match(r'^([A-Za-z0-9_.-]+)==([\w.]+)', line)
            if m:
                pins[m.group(1)] = m.group(2)
    expected = {'torch': '2.14.1', 'torchvision': '0.29.1', 'mmcv': '2.1.0', 'mmengine': '0.10.7',
                'mmpretrain': '1.2.0', 'mmdet': '3.3.0', 'mmsegmentation': '1.2.2'}
    assert {k: pins.get(k) for k in expected} == expected
    for name, version in expected.items():
        assert md.version(name).split('+')[0] == version, name


def test_mmcv_has_compiled_ops():
    from mmcv.ops import nms
    import torch
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]


def test_second_install_is_a_fast_no_op_check():
    """The fast path of tools/install.sh recognises the ready environment."""
    script = (ROOT / 'tools/install.sh').read_text()
    assert 'stack already installed' in script
    venv = Path(sys.prefix)
    proc = subprocess.run(['bash', str(ROOT / 'tools/install.sh'), str(venv)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'stack already installed' in proc.stdout
    assert 'building from source' not in proc.stdout


def test_mim_sees_the_package_and_its_configs():
    mim = shutil.which('mim', path=str(Path(sys.executable).parent))
    if mim is None:
        pytest.skip('openmim is not installed in this environment')
    proc = subprocess.run([mim, 'list'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r'^mmdwnet\s', proc.stdout, re.M), proc.stdout
    import mmdwnet
    mim_dir = Path(mmdwnet.__file__).parent / '.mim'
    assert (mim_dir / 'tools' / 'train.py').is_file()
    assert (mim_dir / 'configs').is_dir()
    assert (mim_dir / 'model-index.yml').is_file()


def test_init_model_api(tmp_path):
    import torch
    from mmengine.config import Config
    from mmdwnet.apis import CheckpointMismatch, init_model
    cfg = Config(dict(default_scope='mmpretrain',
                      custom_imports=dict(imports=['mmdwnet'], allow_failed_imports=False),
                      model=dict(type='ImageClassifier',
                                 backbone=dict(type='DWNet', arch=dict(
                                     embed_dims=8, depths=[1, 1, 1, 1], num_heads=1)),
                                 neck=dict(type='GlobalAveragePooling'),
                                 head=dict(type='LinearClsHead', num_classes=3, in_channels=64))))
    cfg.dump(str(tmp_path / 'cfg.py'))
    model = init_model(str(tmp_path / 'cfg.py'))
    assert not model.training and type(model).__name__ == 'ImageClassifier'
    torch.save(dict(state_dict=model.state_dict()), tmp_path / 'ok.pth')
    loaded = init_model(cfg, str(tmp_path / 'ok.pth'))
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded(x, mode='tensor'), model(x, mode='tensor'))
    bad = {k.replace('backbone.stages', 'backbone.layers'): v for k, v in model.state_dict().items()}
    torch.save(dict(state_dict=bad), tmp_path / 'bad.pth')
    with pytest.raises(CheckpointMismatch, match=r'missing keys.*official2mmdwnet'):
        init_model(cfg, str(tmp_path / 'bad.pth'))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        init_model(str(tmp_path / 'nope.py'))


def test_failed_mmcv_build_stops_with_the_first_compiler_error(tmp_path):
    """tools/build_mmcv.sh on a source tree whose C++ does not compile: first error + hint."""
    src = tmp_path / 'broken'
    src.mkdir()
    (src / 'broken.cpp').write_text('int main() { return undefined_symbol_here; }\n')
    (src / 'setup.py').write_text(
        'from setuptools import setup, Extension\n'
        "setup(name='broken', version='0.0', ext_modules=[Extension('broken', ['broken.cpp'])])\n")
    log = tmp_path / 'build.log'
    proc = subprocess.run(['bash', str(ROOT / 'tools/build_mmcv.sh'), sys.executable, str(src),
                           str(tmp_path / 'wheels'), str(log)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert re.search(r"first error: .*error: .undefined_symbol_here. was not declared", proc.stderr)
    assert 'hint:' in proc.stderr and str(log) in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert log.is_file() and not list((tmp_path / 'wheels').glob('*.whl'))
