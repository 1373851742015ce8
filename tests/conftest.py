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
