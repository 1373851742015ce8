"""mmdwnet.analysis.model_zoo and its command line tools/model_zoo.py (metafile numbers,
docs/model_zoo.md) and the classification metafile."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmdwnet.analysis import count_params
from mmdwnet.analysis import model_zoo as mz
from mmdwnet.apis import init_model

ROOT = Path(__file__).resolve().parents[2]
METAFILE = ROOT / 'configs' / 'classification' / 'metafile.yml'
TABLE2 = [f'{p}-{s}_8xb128_in1k'
          for p in ('swin', 'local-mlp', 'dwnet', 'dynamic-dwnet', 'i-dynamic-dwnet')
          for s in ('tiny', 'base')]
RELEASED = {
    'swin-tiny_8xb128_in1k': 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/'
    'swin_tiny_patch4_window7_224.pth',
    'swin-base_8xb128_in1k': 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/'
    'swin_base_patch4_window7_224.pth',
    'dwnet-tiny_8xb128_in1k': 'dwnet_tiny_224.pth',
    'dwnet-base_8xb128_in1k': 'dwnet_base_224.pth',
    'dynamic-dwnet-tiny_8xb128_in1k': 'dynamic_dwnet_tiny_224.pth',
    'dynamic-dwnet-base_8xb128_in1k': 'dynamic_dwnet_base_224.pth',
}
OFFICIAL = 'https://github.com/Atten4Vis/DemystifyLocalViT/releases/download/prerelease/'


@pytest.fixture(scope='module')
def models():
    return {m['Name']: m for m in yaml.safe_load(METAFILE.read_text())['Models']}


def tiny_config(tmp_path, name='tiny.py'):
    path = tmp_path / name
    leaf = ROOT / 'configs' / 'classification' / 'dwnet-tiny_8xb128_in1k.py'
    path.write_text(f'_base_ = [{str(leaf)!r}]\nmodel = dict(backbone=dict(arch=dict('
                    '_delete_=True, embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8]), '
                    'img_size=64), head=dict(in_channels=128))\n')
    return path


def test_metafile_lists_the_table2_models_in_openmmlab_format(models, paper_tables):
    from modelindex.models.ModelList import ModelList
    assert set(TABLE2) <= set(models)
    loaded = {m.name: m for m in ModelList.from_file(str(METAFILE))}  # modelindex (mim) reads it
    for name, model in models.items():
        assert (ROOT / model['Config']).is_file(), name
        assert isinstance(model['Metadata']['Parameters'], int)
        assert isinstance(model['Metadata']['FLOPs'], int)
        if name.endswith('_in21k'):  # ImageNet-21k pre-training: the paper reports no accuracy
            assert 'Results' not in model and model['Metadata']['Training Data'] == 'ImageNet-21k'
            continue
        result, = model['Results']
        assert (result['Task'], result['Dataset']) == ('Image Classification', 'ImageNet-1k')
        assert 'reported by the paper' in model['Results Source']
        assert loaded[name].results[0].metrics['Top 1 Accuracy'] == \
            result['Metrics']['Top 1 Accuracy']
    for name in TABLE2:
        key = models[name]['Paper Key'].split('.')[1]
        assert models[name]['Results'][0]['Metrics']['Top 1 Accuracy'] == \
            paper_tables['imagenet_table2'][key]['top1']
        url = (models[name].get('Converted From') or {}).get('Weights')
        expected = RELEASED.get(name)
        if expected is None:
            assert url is None, name  # no released weights for Local MLP / I-D-DWNet
        else:
            assert url == (expected if expected.startswith('http') else OFFICIAL + expected)


def test_metafile_numbers_are_measured(models):
    for name in ('dwnet-tiny_8xb128_in1k', 'i-dynamic-dwnet-tiny_8xb128_in1k'):
        model = init_model(str(ROOT / models[name]['Config']))
        assert models[name]['Metadata']['Parameters'] == count_params(model)
    assert models['dwnet-tiny_8xb128_in1k']['Metadata']['FLOPs'] == pytest.approx(3.74e9, 0.01)
    # the 384 fine-tuned model is counted at 384x384 (Table 14: 11.1G)
    assert models['dwnet-tiny-k7_8xb128-ft30e_in1k-384px']['Metadata']['FLOPs'] == \
        pytest.approx(11.0e9, 0.01)


def test_update_writes_measured_numbers_and_check_detects_stale_ones(tmp_path):
    config = tiny_config(tmp_path)
    metafile = tmp_path / 'metafile.yml'
    metafile.write_text('# header kept\nModels:\n  - Name: tiny\n    Config: ' + str(config)
                        + '\n    Metadata:\n      Parameters: 1\n      Epochs: 300\n')
    changed, measured = mz.update_metafile(str(metafile), check=True, log=lambda *a: None)
    assert changed == measured == ['tiny']
    assert 'Parameters: 1\n' in metafile.read_text()  # --check does not write
    mz.update_metafile(str(metafile), log=lambda *a: None)
    text = metafile.read_text()
    assert text.startswith('# header kept\n')
    meta = yaml.safe_load(text)['Models'][0]['Metadata']
    assert meta['Parameters'] == count_params(init_model(str(config)))
    assert meta['Epochs'] == 300 and meta['FLOPs'] > 0
    changed, _ = mz.update_metafile(str(metafile), check=True, log=lambda *a: None)
    assert changed == []


def test_input_shape_is_the_configs_evaluation_size(tmp_path):
    """get_flops / model_zoo count a config at the size it evaluates (its test crop)."""
    from mmdwnet.analysis.model_complexity import input_shape
    cls, det = ROOT / 'configs' / 'classification', ROOT / 'configs' / 'detection'
    assert input_shape(str(cls / 'dwnet-tiny_8xb128_in1k.py')) == (224, 224)
    for name in ('dwnet-tiny-k7_8xb128-ft30e_in1k-384px.py',
                 'dwnet-tiny-k12_8xb128-ft30e_in1k-384px.py',
                 'swin-tiny-w12_8xb128-ft30e_in1k-384px.py'):
        assert input_shape(str(cls / name)) == (384, 384), name
    assert input_shape(str(det / 'cascade-mask-rcnn_dwnet-tiny_fpn_giou-4conv1f_ms-3x_coco.py')) \
        == (800, 1280)
    # a pre-training config without a test set: its train crop
    path = tmp_path / 'pretrain.py'
    path.write_text("default_scope = 'mmpretrain'\nmodel = dict(backbone=dict(img_size=96))\n"
                    "train_dataloader = dict(dataset=dict(pipeline=[dict(type="
                    "'RandomResizedCrop', scale=160)]))\n")
    assert input_shape(str(path)) == (160, 160)
    path.write_text("default_scope = 'mmpretrain'\nmodel = dict(backbone=dict(img_size=96))\n")
    assert input_shape(str(path)) == (96, 96)


def test_get_flops_counts_at_the_config_size_and_shape_overrides(tmp_path):
    """Swin with window 12 (which cannot run at 224) is counted at its 384 crop; --shape wins."""
    import json

    from mmdwnet.analysis.model_complexity import model_complexity
    leaf = ROOT / 'configs' / 'classification' / 'swin-tiny-w12_8xb128-ft30e_in1k-384px.py'
    path = tmp_path / 'swin12.py'
    path.write_text(f'_base_ = [{str(leaf)!r}]\nmodel = dict(backbone=dict(arch=dict('
                    '_delete_=True, embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])),'
                    ' head=dict(in_channels=128))\n')
    result = model_complexity(str(path))
    assert result['shape'] == (384, 384)
    at_384 = result['flops']
    at_768 = model_complexity(str(path), (768, 768))['flops']
    assert 3.5 < at_768 / at_384 < 4.5  # about (768 / 384)^2
    # convention 'modules': the attention products (q @ k^T, attn @ v: 2 x tokens x window^2 x
    # channels per block at 384 with window 12) are not counted
    modules = model_complexity(str(path), convention='modules')['flops']
    products = sum(2 * (96 // 2**i)**2 * 144 * 16 * 2**i for i in range(4))
    assert at_384 - modules == products
    # the command line: the config's size, the convention, the json file; bad choices refused
    tool = str(ROOT / 'tools' / 'analysis_tools' / 'get_flops.py')
    proc = subprocess.run([sys.executable, tool, str(path), '--convention', 'modules', '--json',
                           str(tmp_path / 'm.json')], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'input: 3x384x384' in proc.stdout and 'modules convention' in proc.stdout
    written = json.loads((tmp_path / 'm.json').read_text())
    assert written['convention'] == 'modules' and written['flops'] == modules
    proc = subprocess.run([sys.executable, tool, str(path), '--convention', 'jit'], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice: 'jit'" in proc.stderr


def _tool(*args):
    """Run tools/model_zoo.py as a script (the command line, its exit status and messages)."""
    return subprocess.run([sys.executable, str(ROOT / 'tools' / 'model_zoo.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def test_update_errors_name_the_problem(tmp_path):
    metafile = tmp_path / 'metafile.yml'
    metafile.write_text('Models:\n  - Name: ghost\n    Config: configs/classification/nope.py\n')
    with pytest.raises(mz.MetafileError, match='configs/classification/nope.py does not exist'):
        mz.update_metafile(str(metafile), log=lambda *a: None)
    # the command line: exit status 2 and the message, for what only it checks
    proc = _tool('update', '--metafile', metafile, '--only', 'other')
    assert proc.returncode == 2 and "no model named ['other']" in proc.stderr, proc.stderr
    proc = _tool('update', '--metafile', tmp_path / 'missing.yml')
    assert proc.returncode == 2 and 'missing.yml' in proc.stderr, proc.stderr


def test_render_puts_ours_next_to_the_paper(tmp_path):
    out = tmp_path / 'model_zoo.md'
    tables = ROOT.parent / 'shared' / 'paper_tables.yaml'
    if not tables.is_file():
        pytest.skip(f'paper tables not found at {tables}')
    assert mz.render([str(METAFILE)], str(tables), str(out)) == str(out)
    text = out.read_text()
    assert 'reported by the paper' in text and 'read from `../shared/paper_tables.yaml`' in text
    row = next(line for line in text.splitlines() if '`dwnet-tiny_8xb128_in1k`' in line)
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1:7] == ['24.17', '3.74', '24', '3.8', '81.3', '86.8']
    assert '### Table 4' in text and '### Table 14' in text

    # without the paper tables (through the command line): the metafile's Results, and the
    # page says so
    out2 = tmp_path / 'no_tables.md'
    proc = _tool('render', '--metafile', METAFILE, '--paper-tables', tmp_path / 'absent.yaml',
                 '--out', out2)
    assert proc.returncode == 0 and f'wrote {out2}' in proc.stdout, proc.stderr
    text = out2.read_text()
    assert 'paper tables file not found' in text
    row = next(line for line in text.splitlines() if '`dwnet-tiny_8xb128_in1k`' in line)
    assert [c.strip() for c in row.strip('|').split('|')][1:6] == ['24.17', '3.74', '-', '-',
                                                                    '81.3']


def test_render_refuses_results_that_contradict_the_paper(tmp_path):
    tables = tmp_path / 'tables.yaml'
    tables.write_text('imagenet_table2:\n  dwnet_tiny: {params: 24, flops: 3.8, top1: 81.3}\n')
    metafile = tmp_path / 'classification' / 'metafile.yml'
    metafile.parent.mkdir()
    metafile.write_text('Models:\n  - Name: x\n    Config: c.py\n    Paper Key: '
                        'imagenet_table2.dwnet_tiny\n    Results:\n      - Task: Image '
                        'Classification\n        Dataset: ImageNet-1k\n        Metrics:\n'
                        '          Top 1 Accuracy: 99.9\n')
    with pytest.raises(mz.MetafileError, match='99.9 but the paper table'):
        mz.render([str(metafile)], str(tables), str(tmp_path / 'out.md'))


def _section(text, title='## ImageNet-1k classification'):
    """The lines of one task's section, relative link targets removed."""
    lines = [re.sub(r'\]\(\.\.?/[^)]*\)', '](...)', line) for line in text.splitlines()]
    start = lines.index(title)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith('## ')), len(lines))
    return [line for line in lines[start:end] if line]


def test_committed_model_zoo_page_is_up_to_date(tmp_path):
    committed = ROOT / 'docs' / 'model_zoo.md'
    if not (ROOT.parent / 'shared' / 'paper_tables.yaml').is_file():
        pytest.skip('paper tables absent: the page cannot be regenerated identically')
    fresh = tmp_path / 'model_zoo.md'
    mz.render([str(METAFILE)], mz.DEFAULT_PAPER_TABLES, str(fresh))
    assert _section(fresh.read_text()) == _section(committed.read_text()), \
        'docs/model_zoo.md is stale: run `python tools/model_zoo.py render`'


def test_mim_search_lists_the_models():
    mim = Path(sys.executable).with_name('mim')
    if not (ROOT / 'mmdwnet' / '.mim' / 'model-index.yml').exists() or not mim.exists():
        pytest.skip('mmdwnet/.mim/model-index.yml missing: run `pip install -e .`')
    proc = subprocess.run([str(mim), 'search', 'mmdwnet'], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in TABLE2:
        assert f'config id: {name}' in proc.stdout, name
