"""Report of measured mixer properties: markdown table, matplotlib table and relation graph
(paper Figure 3), JSON.

Everything here reads :class:`~mmdwnet.analysis.connectivity.probes.MixerProperties` results
and measures nothing; see :mod:`mmdwnet.analysis.connectivity.probes` for the definitions.
"""
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

from .probes import MixerProperties

__all__ = [
    'PROPERTY_COLUMNS', 'table_rows', 'to_markdown', 'save_table_png', 'relation_graph',
    'save_relation_graph_png', 'write_outputs'
]

YES, NO = '\u2713', '\u2717'
PROPERTY_COLUMNS = ('Mixer', 'Sparse between channels', 'Sparse between positions (RF)',
                    'Sampling', 'Sharing across positions', 'Sharing across channels',
                    'Dynamic weight', 'Weights computed from', 'Whole mixer (1x1 proj.)',
                    'Params', 'FLOPs')


def _mark(flag):
    return YES if flag else NO


def table_rows(results: Sequence[MixerProperties]) -> List[List[str]]:
    """Rows of display strings, one per result, in :data:`PROPERTY_COLUMNS` order."""
    rows = []
    for r in results:
        share_pos = {'full': f'{YES} all positions', 'block': f'{YES} block-wise (period '
                     f'{r.share_period})', 'none': NO}[r.share_positions]
        share_ch = (f'{YES} {r.channels_per_weight} ch./weight' if r.channels_per_weight > 1
                    else f'{NO} 1 ch./weight')
        source = '-' if r.weight_source == 'static' else SOURCE_NAMES[r.weight_source]
        if r.weight_source == 'local':
            source += ' {}x{}'.format(*r.weight_source_extent)
        dyn = f'{YES} ({r.dynamic_change:.2g})' if r.dynamic else NO
        mixer = ('channels dense' if not r.mixer_sparse_channels else 'channels sparse') + \
            ', RF {}x{}'.format(*r.mixer_receptive_field)
        params = f'{r.params / 1e3:.1f}K' if r.params is not None else '-'
        flops = f'{r.flops / 1e6:.1f}M' if r.flops is not None else '-'
        rows.append([
            r.name,
            _mark(r.sparse_channels),
            '{} {} {}x{}'.format(_mark(r.positions == 'local'), r.positions,
                                 *r.receptive_field),
            r.sampling, share_pos, share_ch, dyn, source, mixer, params, flops
        ])
    return rows


def to_markdown(results: Sequence[MixerProperties],
                not_probed: Sequence[Tuple[str, str]] = ()) -> str:
    """Markdown table of the measured properties (with the probe and cost shapes), then the
    mixers that could not be probed (``(name, reason)`` pairs from :func:`probe_mixers`)."""
    lines = ['| ' + ' | '.join(PROPERTY_COLUMNS) + ' |',
             '|' + '|'.join(['---'] * len(PROPERTY_COLUMNS)) + '|']
    for row in table_rows(results):
        lines.append('| ' + ' | '.join(str(v) for v in row) + ' |')
    if results:
        c, h, w = results[0].probe_shape
        note = f'\nProbed with C={c} channels on {h}x{w} maps'
        if results[0].cost_shape is not None:
            cc, ch, cw = results[0].cost_shape
            note += (f'; parameters and FLOPs (multiply-accumulates) of the mixer at C={cc}, '
                     f'{ch}x{cw}')
        lines.append(note + '.')
    if not_probed:
        lines.append('\nNot probed (no `aggregation(x)` analysis hook):\n')
        lines += [f'* {name}: {reason}' for name, reason in not_probed]
    return '\n'.join(lines) + '\n'


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_table_png(results: Sequence[MixerProperties], path: Union[str, Path]) -> None:
    """Render the table with matplotlib to ``path``."""
    plt = _plt()
    rows = table_rows(results)
    columns = [c.replace(' (', '\n(').replace('Sharing across', 'Sharing across\n')
               .replace('Weights computed', 'Weights\ncomputed')
               .replace('Sparse between', 'Sparse\nbetween')
               for c in PROPERTY_COLUMNS]
    fig, ax = plt.subplots(figsize=(16, 0.45 * len(rows) + 1.4))
    ax.axis('off')
    table = ax.table(cellText=rows, colLabels=columns, loc='center', cellLoc='center')
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(columns))))
    table.scale(1, 1.5)
    for (i, _), cell in table.get_celld().items():
        if i == 0:
            cell.set_height(cell.get_height() * 2)
            cell.set_facecolor('#dde6f0')
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)


# relation graph: the properties compared and how a difference is named
GRAPH_PROPERTIES = ('sparse_channels', 'positions', 'sampling', 'share_positions',
                    'shares_channels', 'weight_source')
SOURCE_NAMES = {'static': 'static', 'position': 'own position', 'local': 'neighbourhood',
                'global': 'whole map'}


def _graph_key(r):
    return dict(sparse_channels=r.sparse_channels, positions=r.positions, sampling=r.sampling,
                share_positions=r.share_positions, shares_channels=r.channels_per_weight > 1,
                weight_source=r.weight_source)


def _difference_label(name, a, b):
    if name == 'weight_source':
        if 'static' in (a, b):
            return 'dynamic weight'
        return f'weights from ({SOURCE_NAMES[a]} / {SOURCE_NAMES[b]})'
    return {'sparse_channels': 'sparse between channels', 'positions': 'local / full',
            'sampling': f'sampling ({a} / {b})',
            'share_positions': f'sharing across positions ({a} / {b})',
            'shares_channels': 'sharing across channels'}[name]


def relation_graph(results: Sequence[MixerProperties]
                   ) -> Tuple[List[List[int]], List[Tuple[int, int, List[str]]]]:
    """The relation graph (paper Figure 3) built from the measured properties.

    Mixers with equal properties (:data:`GRAPH_PROPERTIES`) form one node.  Nodes are joined
    when their properties differ in exactly one; components that stay apart are then joined
    by their closest pairs (fewest differences, Kruskal order).  Each edge is labelled by the
    properties that differ.

    Returns:
        tuple[list[list[int]], list[tuple[int, int, list[str]]]]: nodes (indices into
        ``results``) and edges (node i, node j, labels).
    """
    nodes, keys = [], []
    for idx, r in enumerate(results):
        key = _graph_key(r)
        if key in keys:
            nodes[keys.index(key)].append(idx)
        else:
            keys.append(key)
            nodes.append([idx])
    n = len(keys)
    diffs = {(i, j): [k for k in GRAPH_PROPERTIES if keys[i][k] != keys[j][k]]
             for i in range(n) for j in range(i + 1, n)}
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    edges = []
    for (i, j), d in sorted(diffs.items(), key=lambda kv: (len(kv[1]), kv[0])):
        if len(d) == 1 or find(i) != find(j):
            edges.append((i, j, [_difference_label(k, keys[i][k], keys[j][k]) for k in d]))
        parent[find(i)] = find(j)
    return nodes, edges


def _circle_order(n, edges):
    """Depth-first order of the nodes, so that neighbours sit next to each other."""
    adj = {i: sorted({j for a, b, _ in edges for i2, j in ((a, b), (b, a)) if i2 == i})
           for i in range(n)}
    order, seen = [], set()
    for root in range(n):
        stack = [root]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            order.append(i)
            stack.extend(reversed([j for j in adj[i] if j not in seen]))
    return order


def save_relation_graph_png(results: Sequence[MixerProperties],
                            path: Union[str, Path]) -> None:
    """Draw :func:`relation_graph` with matplotlib (circular layout) to ``path``."""
    plt = _plt()
    nodes, edges = relation_graph(results)
    order = _circle_order(len(nodes), edges)
    pos = {}
    for rank, i in enumerate(order):
        angle = math.pi / 2 - 2 * math.pi * rank / max(len(order), 1)
        pos[i] = (1.6 * math.cos(angle), math.sin(angle))
    fig, ax = plt.subplots(figsize=(18, 12))
    ax.axis('off')
    for i, j, labels in edges:
        (x0, y0), (x1, y1) = pos[i], pos[j]
        ax.plot([x0, x1], [y0, y1], color='#8a8a8a', lw=1.4, zorder=1)
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, '\n'.join(labels), fontsize=9,
                ha='center', va='center', color='#7a2e00', zorder=3,
                bbox=dict(boxstyle='round,pad=0.2', fc='white', ec='none', alpha=0.9))
    for i, members in enumerate(nodes):
        r = results[members[0]]
        desc = 'positions: {}, {} ch./weight\n{}'.format(
            r.share_positions, r.channels_per_weight,
            'static' if not r.dynamic else f'dynamic, from {SOURCE_NAMES[r.weight_source]}')
        names = '\n'.join(results[m].name for m in members)
        x, y = pos[i]
        ax.text(x, y, f'{names}\n{desc}', fontsize=9, ha='center', va='center', zorder=4,
                bbox=dict(boxstyle='round,pad=0.4', fc='#e3eefa' if r.dynamic else '#f3f3f3',
                          ec='#2f5d8a'))
    ax.set_xlim(-2.0, 2.0)
    ax.set_ylim(-1.2, 1.2)
    ax.set_title('Relation graph of the probed mixers: edges join mixers whose measured '
                 'properties differ (labels)')
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)


def write_outputs(results: Sequence[MixerProperties], out_dir: Union[str, Path],
                  stem: str = 'connectivity',
                  not_probed: Sequence[Tuple[str, str]] = ()) -> Dict[str, str]:
    """Write ``{stem}.md``, ``{stem}.png``, ``{stem}.json`` and ``relation_graph.png``.

    Returns:
        dict: name -> path of every written file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = dict(markdown=out / f'{stem}.md', png=out / f'{stem}.png', json=out / f'{stem}.json',
                 graph=out / 'relation_graph.png')
    paths['markdown'].write_text(to_markdown(results, not_probed))
    save_table_png(results, paths['png'])
    nodes, edges = relation_graph(results)
    names = [[results[m].name for m in members] for members in nodes]
    data = dict(mixers=[asdict(r) for r in results],
                not_probed=[dict(name=n, reason=r) for n, r in not_probed],
                relation_graph=dict(nodes=names, edges=[
                    dict(a=names[i], b=names[j], differ=labels) for i, j, labels in edges]))
    paths['json'].write_text(json.dumps(data, indent=2, default=str))
    save_relation_graph_png(results, paths['graph'])
    return {k: str(v) for k, v in paths.items()}
