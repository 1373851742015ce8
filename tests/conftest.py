import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get('MMDWNET_REFERENCE', ROOT.parent / 'shared' / 'reference'))
PAPER_TABLES = REFERENCE.parent / 'paper_tables.yaml'
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/official_layout.py etc.

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope='session')
def reference_dir():
    if not (REFERENCE / 'index.json').is_file():
        pytest.skip(f'official reference checkpoints not found at {REFERENCE} '
                    '(set MMDWNET_REFERENCE to the shared/reference folder)')
    return REFERENCE


@pytest.fixture(scope='session')
def paper_tables():
    if not PAPER_TABLES.is_file():
        pytest.skip(f'paper tables not found at {PAPER_TABLES}')
    import yaml
    return yaml.safe_load(PAPER_TABLES.read_text())


@pytest.fixture(scope='session')
def repo_root():
    return ROOT


@pytest.fixture(scope='session')
def digits_demo(tmp_path_factory):
    """(work dir, results.json as a dict, output) of the shortened demo (tests/digits_run.py)."""
    import digits_run
    return digits_run.demo_run(tmp_path_factory)


def _needs_demo(item):
    return 'digits_demo' in getattr(item, 'fixturenames', ())


def pytest_collection_modifyitems(session, config, items):
    """The tests that use the shortened demo run last (in their order), so that the demo,
    started in the background at the end of collection, overlaps every other test."""
    items[:] = [i for i in items if not _needs_demo(i)] + [i for i in items if _needs_demo(i)]


def pytest_collection_finish(session):
    """Start the shortened demo (tests/digits_run.py) in the background when a collected test
    needs it."""
    import digits_run
    if not session.config.option.collectonly and any(_needs_demo(i) for i in session.items):
        digits_run.start_in_background(session.config._tmp_path_factory.mktemp('digits_demo'))


def pytest_sessionfinish(session):
    import digits_run
    digits_run.stop_background()
