"""Model zoo bookkeeping: measured Parameters/FLOPs in the metafiles, docs/model_zoo.md from them.

The command line is ``tools/model_zoo.py`` (``update`` runs :func:`update_metafile`, ``render``
runs :func:`render`).  :func:`update_metafile` builds each model's ``Config`` and counts it with
:func:`mmdwnet.analysis.model_complexity.model_complexity` (what
``tools/analysis_tools/get_flops.py`` prints) at the config's input size (classifiers at the
crop their test pipeline evaluates, e.g. 384 for fine-tuned models; detection at 1280x800,
segmentation at 2048x512, chosen by the config's default scope), then stores
``Metadata.Parameters`` and ``Metadata.FLOPs`` (multiply-accumulates) as integers.  These two
fields are never typed by hand.  With ``check=True`` (``--check``) it only compares.

Metafile conventions (OpenMMLab / modelindex format, read by ``mim search``)::

    Models:
      - Name: dwnet-tiny_8xb128_in1k
        In Collection: DWNet
        Config: configs/classification/dwnet-tiny_8xb128_in1k.py   # relative to the repo root
        Metadata: {Parameters: ..., FLOPs: ...}                    # written by `update`
        Results:                                                    # the paper's numbers
          - {Task: Image Classification, Dataset: ImageNet-1k, Metrics: {Top 1 Accuracy: 81.3}}
        Results Source: reported by the paper (Table 2), not reproduced here
        Paper Key: imagenet_table2.dwnet_tiny       # entry of paper_tables.yaml: section.name
                                                    # (or section.name.field: field is top-1;
                                                    # section.name.coco / .ade: that task's
                                                    # columns of a Table 11 row)
        Converted From: {Weights: URL, Code: URL}   # official weights, when released

:func:`render` takes the paper's params, FLOPs and metrics from ``tables_path`` (default
``/work/shared/paper_tables.yaml``, or ``$MMDWNET_PAPER_TABLES``) through ``Paper Key``; without
that file (or key) it falls back to the metafile's ``Results``.
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

__all__ = ['MetafileError', 'ROOT', 'DEFAULT_METAFILES', 'DEFAULT_PAPER_TABLES', 'DEFAULT_OUT',
           'load_metafile', 'dump_metafile', 'config_path', 'measure', 'update_metafile',
           'load_paper_tables', 'paper_entry', 'metafile_metrics', 'render_task', 'render']


def _root() -> str:
    """The folder metafile ``Config`` paths are relative to: the checkout holding the package
    (``configs/`` next to ``mmdwnet/``), else the installed package's ``.mim`` copy."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    checkout = osp.dirname(package)
    return checkout if osp.isdir(osp.join(checkout, 'configs')) else osp.join(package, '.mim')


ROOT = _root()
TASKS = ('classification', 'detection', 'segmentation')
DEFAULT_METAFILES = [osp.join('configs', task, 'metafile.yml') for task in TASKS]
DEFAULT_PAPER_TABLES = os.environ.get(
    'MMDWNET_PAPER_TABLES', osp.join(osp.dirname(ROOT), 'shared', 'paper_tables.yaml'))
DEFAULT_OUT = osp.join('docs', 'model_zoo.md')

# paper_tables.yaml field -> column title (metrics the paper reports)
PAPER_METRICS = OrderedDict([
    ('top1', 'Top-1 (%)'),
    ('real', 'ReaL (%)'),
    ('ap_box', 'box AP'),
    ('ap_mask', 'mask AP'),
    ('miou', 'mIoU'),
])
# metafile ``Metrics`` name -> paper_tables.yaml field
METAFILE_METRICS = {
    'Top 1 Accuracy': 'top1',
    'box AP': 'ap_box',
    'mask AP': 'ap_mask',
    'mIoU': 'miou',
}
# ``Paper Key`` suffix -> (field prefix, metrics) of one task in a row that holds several
# (Table 11: ``in22k_pretrain_downstream_table11.dwnet_base.coco`` / ``.ade``)
PAPER_VIEWS = {
    'coco': ('coco_', ('ap_box', 'ap_mask')),
    'ade': ('ade_', ('miou', )),
}
# paper_tables.yaml section -> sub-heading of the model zoo page
SECTION_TITLES = {
    'imagenet_table2': 'Table 2: the main comparison (224x224)',
    'weight_sharing_table4': 'Table 4: sharing across channels (SC) and positions (SP)',
    'dynamic_manner_table5': 'Table 5: window sampling and dynamic weights',
    'table6': 'Table 6: I-D-DW plus a depth-wise conv before the FFN',
    'normalization_table12': 'Table 12: LayerNorm, BatchNorm, centering-calibrated BatchNorm',
    'retrain_384_table14': 'Table 14: fine-tuning at 384x384',
    'se_table15': 'Table 15: squeeze-and-excitation',
    'other_architectures_table13': 'Table 13: the mixers inside Twins-SVT-S and VOLO-D1',
    'in22k_pretrain_in1k_ft_table10': 'Table 10: ImageNet-22K pre-training, ImageNet-1K '
                                      'fine-tuning (224x224)',
    'in22k_pretrain_downstream_table11': 'Table 11: from ImageNet-22K pre-trained backbones',
    '': 'Other models (no figures in the paper: ImageNet-22K pre-training)',
    'coco_cascade_mask_rcnn_3x': 'Table 3: Cascade Mask R-CNN, 3x schedule',
    'ade20k_upernet_160k': 'Table 3: UPerNet, 160k iterations',
}
# section -> a note under its heading, where a paper figure needs reading
SECTION_NOTES = {
    'other_architectures_table13':
    "The paper's SVT-S row is Twins' own, counted without the attention products: "
    '`get_flops.py --convention modules` gives 2.82G (see docs/models.md).',
}
TASK_TITLES = {
    'classification': 'ImageNet-1k classification',
    'detection': 'COCO object detection and instance segmentation',
    'segmentation': 'ADE20K semantic segmentation',
}


class MetafileError(ValueError):
    """A metafile entry cannot be processed (missing config, bad key, ...)."""


# ---------------------------------------------------------------------------------- yaml i/o
class _Dumper(yaml.SafeDumper):
    """Block-style YAML with list items indented under their key (OpenMMLab metafile style)."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data):
        return True


def _represent_ordered(dumper, data):
    return dumper.represent_dict(data.items())


_Dumper.add_representer(OrderedDict, _represent_ordered)


def load_metafile(path: str) -> Tuple[List[str], Dict[str, Any]]:
    """Return (header comment lines, data dict) of the metafile at ``path``."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'metafile {path} does not exist')
    with open(path) as f:
        text = f.read()
    header = []
    for line in text.splitlines():
        if line.startswith('#'):
            header.append(line)
        else:
            break
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict) or not isinstance(data.get('Models', []), list):
        raise MetafileError(f'{path}: expected a mapping with a `Models` list (OpenMMLab metafile)')
    return header, data


def dump_metafile(path: str, header: List[str], data: Dict[str, Any]) -> None:
    """Write ``data`` to ``path`` keeping the leading comment lines ``header``."""
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)
    with open(path, 'w') as f:
        if header:
            f.write('\n'.join(header) + '\n')
        f.write(body)


# ---------------------------------------------------------------------------------- update
def _model_complexity(config, shape=None):
    from mmdwnet.analysis.model_complexity import model_complexity
    return model_complexity(config, shape)


def config_path(model: Dict[str, Any], metafile: str) -> str:
    """Absolute path of a metafile model's ``Config`` (relative to the repo root)."""
    name = model.get('Name', '<unnamed>')
    config = model.get('Config')
    if not config:
        raise MetafileError(f'{metafile}: model {name} has no `Config`')
    path = config if osp.isabs(config) else osp.join(ROOT, config)
    if not osp.isfile(path):
        raise MetafileError(f'{metafile}: model {name}: config {config} does not exist (paths '
                            'are relative to the repository root)')
    return path


def measure(model: Dict[str, Any], metafile: str,
            complexity_fn: Optional[Callable[[str], Dict[str, Any]]] = None) -> Dict[str, int]:
    """Return dict(Parameters=int, FLOPs=int) of one metafile model."""
    complexity_fn = complexity_fn or _model_complexity
    config = config_path(model, metafile)
    result = complexity_fn(config)
    return dict(Parameters=int(result['params']), FLOPs=int(result['flops']))


def update_metafile(path: str, only: Optional[Sequence[str]] = None, check: bool = False,
                    complexity_fn: Optional[Callable[[str], Dict[str, Any]]] = None,
                    log: Callable[..., Any] = print) -> Tuple[List[str], List[str]]:
    """Measure the models of the metafile ``path``; write (or with ``check`` compare) them.

    Returns:
        tuple[list[str], list[str]]: names whose stored numbers differ from the measured ones,
        names measured.
    """
    header, data = load_metafile(path)
    models = data.get('Models') or []
    complexity_fn = complexity_fn or _model_complexity
    changed, measured = [], []
    for model in models:
        if only and model.get('Name') not in only:
            continue
        measured.append(model.get('Name'))
        numbers = measure(model, path, complexity_fn)
        metadata = model.setdefault('Metadata', {}) or {}
        model['Metadata'] = metadata
        old = {k: metadata.get(k) for k in numbers}
        if old != numbers:
            changed.append(model['Name'])
        log(f"{model['Name']}: params {numbers['Parameters'] / 1e6:.2f} M, "
            f"FLOPs {numbers['FLOPs'] / 1e9:.2f} G" + ('' if old == numbers else
                                                       f' (stored: {old})'))
        if not check:
            metadata.update(numbers)
    if not check and measured:
        dump_metafile(path, header, data)
    return changed, measured


# ---------------------------------------------------------------------------------- render
def _shown_path(path):
    """``path`` relative to the repository root when possible (no machine-specific prefix)."""
    rel = osp.relpath(osp.abspath(path), ROOT)
    return rel if not osp.isabs(rel) else path


def load_paper_tables(path: Optional[str]) -> Optional[Dict[str, Any]]:
    """The paper tables as a dict, or None when ``path`` is empty or absent."""
    if not path or not osp.isfile(path):
        return None
    with open(path) as f:
        return yaml.safe_load(f)


def paper_entry(model: Dict[str, Any], tables: Optional[Dict[str, Any]],
                metafile: str) -> Optional[Dict[str, Any]]:
    """The paper_tables.yaml entry named by the model's ``Paper Key``, or None."""
    key = model.get('Paper Key')
    if not key or tables is None:
        return None
    section, _, name = key.partition('.')
    name, _, field = name.partition('.')
    entry = (tables.get(section) or {}).get(name)
    if entry is not None and field in PAPER_VIEWS:  # one task's columns of a multi-task row
        prefix, metrics = PAPER_VIEWS[field]
        view = {k[len(prefix):]: v for k, v in entry.items() if k.startswith(prefix)}
        view.update({k: entry[k] for k in metrics if k in entry})
        entry = view
    elif entry is not None and field:  # section.name.field: that value is the top-1 accuracy
        entry = {'top1': entry[field]} if field in entry else None
    if entry is None:
        raise MetafileError(f"{metafile}: model {model.get('Name')}: Paper Key {key!r} is not "
                            f'in the paper tables (sections: {sorted(tables)})')
    return entry


def metafile_metrics(model: Dict[str, Any]) -> Dict[str, Any]:
    """{paper field: value} from the metafile's ``Results``."""
    out = {}
    for result in model.get('Results') or []:
        for name, value in (result.get('Metrics') or {}).items():
            out[METAFILE_METRICS.get(name, name)] = value
    return out


def _fmt(value, scale=1., digits=2):
    if value is None or value == '':
        return '-'
    if isinstance(value, (int, float)):
        return f'{value / scale:.{digits}f}'
    return str(value)


def _link(text, url):
    return f'[{text}]({url})' if url else text


def render_task(task: str, metafile: str, tables: Optional[Dict[str, Any]],
                relto: str) -> List[str]:
    """Markdown section for one task's metafile."""
    _, data = load_metafile(metafile)
    models = data.get('Models') or []
    rows, metric_fields = [], []
    for model in models:
        entry = paper_entry(model, tables, metafile)
        metrics = dict(metafile_metrics(model))
        if entry is not None:
            for field in PAPER_METRICS:
                if field in entry:
                    if field in metrics and metrics[field] != entry[field]:
                        raise MetafileError(
                            f"{metafile}: model {model['Name']}: Results give {field}="
                            f"{metrics[field]} but the paper table {model['Paper Key']} has "
                            f'{entry[field]}')
                    metrics[field] = entry[field]
        for field in metrics:
            if field not in metric_fields:
                metric_fields.append(field)
        rows.append((model, entry or {}, metrics))
    order = list(PAPER_METRICS)
    metric_fields.sort(key=lambda f: order.index(f) if f in order else len(order))

    title = TASK_TITLES.get(task, task)
    lines = [f'## {title}', '']
    if not rows:
        return lines + [f'No models in `{osp.relpath(metafile, relto)}` yet.', '']
    groups = OrderedDict()
    for row in rows:
        section = (row[0].get('Paper Key') or '').partition('.')[0]
        groups.setdefault(section, []).append(row)
    for section, group in groups.items():
        if len(groups) > 1:
            lines += [f'### {SECTION_TITLES.get(section, section or "Other models")}', '']
        if section in SECTION_NOTES:
            lines += [SECTION_NOTES[section], '']
        lines += _table(group, metric_fields, relto) + ['']
    return lines


def _table(rows, metric_fields, relto):
    fields = [f for f in metric_fields if any(f in metrics for _, _, metrics in rows)]
    head = ['Model', 'Params (M)', 'FLOPs (G)', 'Paper params (M)', 'Paper FLOPs (G)']
    head += [f'{PAPER_METRICS.get(f, f)} †' for f in fields]
    head += ['Config', 'Official weights']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for model, entry, metrics in rows:
        meta = model.get('Metadata') or {}
        config = model.get('Config', '')
        converted = (model.get('Converted From') or {}).get('Weights')
        params = entry.get('params')
        cells = [
            f"`{model['Name']}`",
            _fmt(meta.get('Parameters'), 1e6),
            _fmt(meta.get('FLOPs'), 1e9),
            _fmt(params, digits=0 if isinstance(params, int) else 1),
            _fmt(entry.get('flops'), digits=1),
        ]
        cells += [_fmt(metrics.get(f), digits=1) for f in fields]
        cells += [_link('config', osp.relpath(osp.join(ROOT, config), relto)) if config else '-',
                  _link('official', converted) if converted else '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def render(metafiles: Sequence[str], tables_path: Optional[str], out: str) -> str:
    """Write the model zoo page for ``metafiles`` (one section per task) to ``out``; returns
    ``out``."""
    tables = load_paper_tables(tables_path)
    relto = osp.dirname(osp.abspath(out))
    shapes = {'classification': "the config's test crop (224x224; 384x384 for Table 14)",
              'detection': '1280x800', 'segmentation': '2048x512'}
    lines = [
        '# Model zoo',
        '',
        '<!-- Written by `python tools/model_zoo.py render`; edit the metafiles, not this '
        'file. -->',
        '',
        'Where the numbers come from:',
        '',
        '* **Params (M), FLOPs (G)**: measured on the mmdwnet models by '
        '`python tools/model_zoo.py update` (`tools/analysis_tools/get_flops.py`, mmengine\'s '
        'FlopAnalyzer with mmdwnet\'s op handles; FLOPs are multiply-accumulates as in the paper) '
        'and stored in the metafiles (`configs/*/metafile.yml`). Input: '
        + ', '.join(f'{t} {s}' for t, s in shapes.items()) + '.',
        '* **Paper params / FLOPs** and every column marked **†**: **reported by the paper** '
        '(ICLR 2022, "On the Connection between Local Attention and Dynamic Depth-wise '
        'Convolution"), ' + (f'read from `{_shown_path(tables_path)}`' if tables is not None else
                              'read from the metafiles\' `Results` (paper tables file not found)')
        + '. They were not reproduced by training with mmdwnet.',
        '* **Official weights**: checkpoints released by the authors; they load as released '
        '(`tools/test.py CONFIG WEIGHTS`, `load_from`, `init_cfg`: converted on load).',
        '',
    ]
    for metafile in metafiles:
        task = osp.basename(osp.dirname(osp.abspath(metafile)))
        lines += render_task(task, metafile, tables, relto)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        f.write('\n'.join(lines).rstrip('\n') + '\n')
    return out
