"""tools/analysis_tools/benchmark.py: the CUDA mode's refusal without a GPU, the targets as data
(docs/benchmark_targets.yml, stated in docs/benchmark_gpu.md), the GPU report and op benchmark
plumbing on CPU (no model benchmarking; the CPU report itself is run by
tests/test_speed_equivalence.py)."""
import importlib.util
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

TOOL = 'tools/analysis_tools/benchmark.py'


@pytest.fixture(scope='module')
def bench(repo_root):
    spec = importlib.util.spec_from_file_location('mmdwnet_benchmark_tool', repo_root / TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_mode_refuses_without_cuda(tmp_path, repo_root):
    """No CUDA device: a clear message, a non-zero exit, nothing written or overwritten."""
    new, existing = tmp_path / 'new.md', tmp_path / 'existing.json'
    existing.write_text('measurements the user keeps\n')
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')  # refuses on GPU machines too
    proc = subprocess.run([sys.executable, str(repo_root / TOOL), '--device', 'cuda', '--out',
                           str(new), '--json', str(existing)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode != 0
    assert 'no CUDA device' in proc.stderr and 'no report was written' in proc.stderr
    assert not new.exists() and existing.read_text() == 'measurements the user keeps\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['existing.json']


def test_arguments_per_device(bench):
    cpu = bench.parse_args([])
    assert (cpu.out, cpu.batch, cpu.op_shape) == ('docs/benchmark.md', 8, [8, 96, 56, 56])
    gpu = bench.parse_args(['--device', 'cuda'])
    assert (gpu.out, gpu.batches, gpu.op_shape[0], gpu.iters) == (
        'docs/benchmark_gpu.md', [64, 128], 64, 10)
    with pytest.raises(SystemExit):
        bench.parse_args(['--batch', '8', '16'])  # several batch sizes only on CUDA


def test_targets_are_data_and_documented(bench, repo_root):
    """The tool holds no target numbers; docs/benchmark_gpu.md states those it reads, the
    Makefile runs the CUDA mode, and no GPU numbers are claimed before a GPU run."""
    targets = bench.load_targets()
    assert not hasattr(bench, 'TARGETS') and not hasattr(bench, 'PAPER')
    assert targets['gpu']['models'] == {'dwnet': 1.30, 'dynamic-dwnet': 1.26,
                                        'i-dynamic-dwnet': 1.00}
    doc = (repo_root / 'docs' / 'benchmark_gpu.md').read_text()
    for name, target in targets['gpu']['models'].items():
        label = bench.MODELS[name][0]
        assert re.search(rf'\| {re.escape(label)} \| >= {target:.2f}x \|', doc), label
    assert f'>= **{targets["gpu"]["triton_op_speedup_over_torch"]:g}x**' in doc
    if 'No measurements yet' in doc:  # the hand-written page: no timings anywhere
        assert not re.search(r'images/s \|', doc) and ' ms' not in doc
    make = (repo_root / 'Makefile').read_text()
    assert re.search(r'^bench-gpu:\n\t.*benchmark\.py --device cuda --out docs/benchmark_gpu'
                     r'\.md', make, re.M)


def synthetic_runs(bench, batches):
    """Made-up measurements to exercise the report writer (written to a temporary file)."""
    runs = {}
    for b in batches:
        models = {}
        for i, name in enumerate(bench.MODELS):
            speed = 100.0 if name == bench.REFERENCE else 100.0 * (1.0 + 0.2 * i)
            models[name] = dict(label=bench.MODELS[name][0], params=28.0, flops=4.5,
                                throughput={s: [speed, speed * 1.01]
                                            for s in bench.GPU_SETTINGS},
                                memory={s: 1000.0 for s in bench.GPU_SETTINGS})
        runs[b] = dict(models=models, seconds=1.0)
    return runs


def test_gpu_report_and_op_benchmark_plumbing(bench, tmp_path, monkeypatch):
    """gpu_op_benchmark's implementations agree with F.unfold (run here on CPU, tiny shape);
    the GPU report writer renders targets, every batch and the ops from made-up numbers."""
    args = bench.parse_args(['--device', 'cuda', '--out', str(tmp_path / 'gpu.md'),
                             '--op-shape', '1', '8', '5', '7', '--op-groups', '2',
                             '--op-kernel', '3', '--op-rounds', '1', '--no-memory'])
    args.device = 'cpu'  # the plumbing, not the speed: CPU tensors
    ops = bench.gpu_op_benchmark(args)
    assert set(ops['results']) == {'local_aggregate', 'local_aggregate_pointwise'}
    for op, res in ops['results'].items():
        assert list(res)[-1] == 'F.unfold' and f'{op} (torch)' in res
        assert all(r['max_abs_diff'] < 1e-4 for r in res.values()), res
    monkeypatch.setattr(bench, 'gpu_machine_lines', lambda args, backend: ['- GPU: none'])
    bench.write_gpu_report(synthetic_runs(bench, args.batches), ops, args, 1.0)
    text = (tmp_path / 'gpu.md').read_text()
    assert '## Targets (fp32 inference' in text and '## Batch 64' in text
    assert '## Batch 128' in text and '### `local_aggregate_pointwise`' in text
    assert 'Triton was not available' in text  # no Triton on CPU tensors here
    dwnet = re.search(r'\| DWNet-T \(DW-Conv\) \| >= 1\.30x \| \*\*1\.00x\*\*.*\| \*\*no\*\* \|',
                      text)
    ddw = re.search(r'\| D-DWNet-T \(D-DW-Conv\) \| >= 1\.26x \| \*\*1\.20x\*\*.*\| \*\*no\*\* \|',
                    text)
    idw = re.search(r'\| I-D-DWNet-T \(I-D-DW-Conv\) \| >= 1\.00x \| \*\*1\.40x\*\*.*\| yes \|',
                    text)
    assert dwnet and ddw and idw, text
    assert '[benchmark_notes.md](' in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ['gpu.md']  # no temporary left


def test_compile_train_section_is_written_between_markers_and_replaced(tmp_path, repo_root):
    """benchmark_compile_train.py (make bench-compile) writes its section into the report
    atomically, keeps the rest of the file, and replaces the section on a rerun."""
    path = repo_root / 'tools' / 'analysis_tools' / 'benchmark_compile_train.py'
    spec = importlib.util.spec_from_file_location('benchmark_compile_train', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    report = tmp_path / 'benchmark_compile.md'
    report.write_text('# compile\n\nthe inference table\n')
    argv = ['--configs', 'configs/classification/digits/dwnet-nano_1xb64-10e_digits-32px.py',
            '--img-size', '32', '--batch', '2', '--rounds', '1', '--backend', 'aot_eager',
            '--out', str(report)]
    for _ in range(2):
        tool.main(argv)
    text = report.read_text()
    assert text.startswith('# compile\n\nthe inference table\n\n<!-- compile-train -->')
    assert text.count(tool.BEGIN) == text.count(tool.END) == 1
    assert re.search(r'\| dwnet-nano_1xb64-10e_digits-32px \| [\d.]+ \([\d.-]+\) \| ', text)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['benchmark_compile.md']
