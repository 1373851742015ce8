"""The benchmark CLIs (tools/analysis_tools/benchmark*.py, run as subprocesses) and the
package behind them (mmdwnet.benchmark): the CUDA mode's refusal without a GPU, the targets and
model list as data (docs/benchmark_targets.yml, stated in docs/benchmark_gpu.md), the GPU report
and op benchmark plumbing on CPU, the CPU report end to end on tiny models, the compiled-training
section."""
import json
import os
import re
import subprocess
import sys

import pytest

from mmdwnet.benchmark import cli, measure, report, suites

TOOL = 'tools/analysis_tools/benchmark.py'
TINY = dict(embed_dims=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 4, 8])


@pytest.fixture(scope='module')
def suite():
    return suites.load_suite()


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


def test_arguments_per_device(suite):
    cpu = cli.parse_args([])
    assert (cpu.out, cpu.batch, cpu.op_shape) == ('docs/benchmark.md', 8, [8, 96, 56, 56])
    assert cpu.models == suite['bench_models']  # the model list is the suite's
    assert not cpu.no_roofline and not cpu.roofline_only  # make bench includes the roofline
    gpu = cli.parse_args(['--device', 'cuda'])
    assert (gpu.out, gpu.batches, gpu.op_shape[0], gpu.iters) == (
        'docs/benchmark_gpu.md', [64, 128], 64, 10)
    with pytest.raises(SystemExit):
        cli.parse_args(['--batch', '8', '16'])  # several batch sizes only on CUDA
    assert cli.parse_args(['--models', 'dwnet']).models == ['dwnet', suite['reference']]


@pytest.mark.parametrize('argv, message', [
    (['--rounds', '0'], '--rounds must be >= 1'),
    (['--roofline-rounds', '0'], '--roofline-rounds must be >= 1'),
    (['--roofline-only', '--no-roofline'], 'contradict'),
    (['--device', 'cuda', '--roofline-only'], 'CPU-only'),
    (['--device', 'cuda', '--quick'], 'CPU-only'),
    (['--models', 'no-such-model'], 'invalid choice'),
])
def test_cli_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv)
    assert exc.value.code != 0 and message in capsys.readouterr().err


def test_benchmark_rejects_bad_arguments(repo_root, tmp_path):
    """The tool itself (a subprocess): argparse's refusal, nothing written."""
    proc = subprocess.run([sys.executable, str(repo_root / TOOL), '--rounds', '0', '--out',
                           str(tmp_path / 'b.md')], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and '--rounds must be >= 1' in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_targets_are_data_and_documented(suite, repo_root):
    """The package holds no target numbers or model list; docs/benchmark_gpu.md states the
    targets it reads, the Makefile runs the CUDA mode, and no GPU numbers are claimed before a
    GPU run."""
    for module in (cli, measure, report, suites):
        assert not any(hasattr(module, n) for n in ('TARGETS', 'PAPER', 'MODELS')), module
    assert suite['gpu']['models'] == {'dwnet': 1.30, 'dynamic-dwnet': 1.26,
                                      'i-dynamic-dwnet': 1.00}
    labels = suites.model_labels(suite)
    doc = (repo_root / 'docs' / 'benchmark_gpu.md').read_text()
    for name, target in suite['gpu']['models'].items():
        assert re.search(rf'\| {re.escape(labels[name])} \| >= {target:.2f}x \|', doc), name
    assert f'>= **{suite["gpu"]["triton_op_speedup_over_torch"]:g}x**' in doc
    if 'No measurements yet' in doc:  # the hand-written page: no timings anywhere
        assert not re.search(r'images/s \|', doc) and ' ms' not in doc
    make = (repo_root / 'Makefile').read_text()
    assert re.search(r'^bench-gpu:\n\t.*benchmark\.py --device cuda --out docs/benchmark_gpu'
                     r'\.md', make, re.M)
    for name in suite['bench_models'] + suite['roofline']['models']:
        entry = suite['models'][name]
        assert 'model' in entry or (repo_root / entry['config']).is_file(), name
        for key in ('seg_config', 'det_config'):
            assert key not in entry or (repo_root / entry[key]).is_file(), (name, key)


def test_suite_errors_name_the_problem(tmp_path):
    bad = tmp_path / 'suite.yml'
    bad.write_text('- just a list\n')
    with pytest.raises(ValueError, match='not a benchmark suite'):
        suites.load_suite(str(bad))
    with pytest.raises(FileNotFoundError, match='no/such.py not found'):
        suites.model_cfg(dict(label='x', config='no/such.py'))
    with pytest.raises(ValueError, match='neither `config` nor `model`'):
        suites.model_cfg(dict(label='x'))


def synthetic_runs(suite, batches):
    """Made-up measurements to exercise the report writer (written to a temporary file)."""
    runs = {}
    for b in batches:
        models = {}
        for i, name in enumerate(suite['bench_models']):
            speed = 100.0 if name == suite['reference'] else 100.0 * (1.0 + 0.2 * i)
            models[name] = dict(label=suite['models'][name]['label'], params=28.0, flops=4.5,
                                throughput={s: [speed, speed * 1.01]
                                            for s in report.GPU_SETTINGS},
                                memory={s: 1000.0 for s in report.GPU_SETTINGS})
        runs[b] = dict(models=models, seconds=1.0, reference=suite['reference'],
                       arch_reference=suite['arch_reference'])
    return runs


def test_gpu_report_and_op_benchmark_plumbing(suite, tmp_path, monkeypatch):
    """gpu_op_benchmark's implementations agree with F.unfold (run here on CPU, tiny shape);
    the GPU report writer renders targets, every batch and the ops from made-up numbers."""
    args = cli.parse_args(['--device', 'cuda', '--out', str(tmp_path / 'gpu.md'),
                           '--op-shape', '1', '8', '5', '7', '--op-groups', '2',
                           '--op-kernel', '3', '--op-rounds', '1', '--no-memory'])
    args.device = 'cpu'  # the plumbing, not the speed: CPU tensors
    ops = measure.gpu_op_benchmark(args)
    assert set(ops['results']) == {'local_aggregate', 'local_aggregate_pointwise'}
    for op, res in ops['results'].items():
        assert list(res)[-1] == 'F.unfold' and f'{op} (torch)' in res
        assert all(r['max_abs_diff'] < 1e-4 for r in res.values()), res
    monkeypatch.setattr(report, 'gpu_machine_lines', lambda args, backend: ['- GPU: none'])
    report.write_gpu_report(synthetic_runs(suite, args.batches), ops, args, 1.0, suite)
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


@pytest.mark.slow
def test_benchmark_tool_writes_report_and_chart(tmp_path, repo_root, suite):
    """make bench end to end on tiny models: the legacy tables and the chart (the roofline
    section: test_roofline_only_is_spliced_into_the_report)."""
    out = tmp_path / 'bench.md'
    cmd = [sys.executable, str(repo_root / TOOL), '--out', str(out),
           '--rounds', '1', '--warmup', '0', '--arch', json.dumps(TINY), '--no-batch1',
           '--op-shape', '2', '16', '14', '14', '--op-groups', '4', '--op-rounds', '1',
           '--no-roofline', '--json', str(tmp_path / 'bench.json')]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    png = tmp_path / 'bench.png'
    assert png.is_file() and png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    for name in suite['bench_models']:  # every model has a row in both tables
        label = suite['models'][name]['label']
        assert text.count(f'| {label} |') >= 2, label
    assert '## Targets' in text and '## I-D-DW aggregation op' in text
    assert 'torch intra-op threads' in text and 'Not measured: GPU' in text
    info = json.loads((tmp_path / 'bench.json').read_text())
    models = {k: v for k, v in info['models'].items()}
    assert set(models) == set(suite['bench_models'])
    assert all(len(m['throughput']['infer']) == 1 for m in models.values())
    # the dense fast path is reported switched off too, and the mixer-only comparison is there
    assert all(len(m['throughput']['infer_plain']) == 1 for m in models.values())
    assert '(fused, plain modules)' in text
    assert '## Throughput relative to mmdwnet Swin-T' in text
    assert info['ops']['max_abs_diff'] <= 1e-5
    assert report.ROOFLINE_BEGIN not in text and 'roofline' not in info
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bench.json', 'bench.md', 'bench.png']


def test_compile_train_section_is_written_between_markers_and_replaced(tmp_path, repo_root):
    """benchmark_compile_train.py (make bench-compile) writes its section into the report
    atomically, keeps the rest of the file, and replaces the section on a rerun."""
    report_file = tmp_path / 'benchmark_compile.md'
    report_file.write_text('# compile\n\nthe inference table\n')
    argv = ['--configs', 'configs/classification/digits/dwnet-nano_1xb64-10e_digits-32px.py',
            '--img-size', '32', '--batch', '2', '--rounds', '1', '--backend', 'aot_eager',
            '--out', str(report_file)]
    cli.compile_train_main(argv)
    proc = subprocess.run([sys.executable, str(repo_root / 'tools' / 'analysis_tools' /
                                               'benchmark_compile_train.py')] + argv,
                          capture_output=True, text=True, timeout=300, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = report_file.read_text()
    assert text.startswith('# compile\n\nthe inference table\n\n<!-- compile-train -->')
    assert text.count(report.COMPILE_BEGIN) == text.count(report.COMPILE_END) == 1
    assert re.search(r'\| dwnet-nano_1xb64-10e_digits-32px \| [\d.]+ \([\d.-]+\) \| ', text)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['benchmark_compile.md']


def test_roofline_only_is_spliced_into_the_report(tmp_path, suite):
    """--roofline-only --quick (one tiny model, in process): the roofline section is written
    between its markers into the existing report, whose tables are kept; rerun replaces it."""
    out, dump = tmp_path / 'benchmark.md', tmp_path / 'roofline.json'
    out.write_text('# Speed and memory benchmark\n\nthe legacy tables\n')
    argv = ['--roofline-only', '--quick', '--roofline-models', 'dwnet', '--roofline-rounds',
            '1', '--threads', '1', '--out', str(out), '--json', str(dump)]
    for _ in range(2):
        cli.main(argv)
    text = out.read_text()
    assert text.startswith('# Speed and memory benchmark\n\nthe legacy tables\n\n'
                           + report.ROOFLINE_BEGIN)
    assert text.count(report.ROOFLINE_BEGIN) == text.count(report.ROOFLINE_END) == 1
    label = suite['models']['dwnet']['label']
    assert re.search(rf'\| {re.escape(label)} \| inference b2 224x224 \(classifier\) \| .*'
                     r'\| >= 80% \| (met|\*\*miss\*\*) \|', text)
    assert '### Where the time goes' in text and '### Peak forward memory ratios' in text
    res = json.loads(dump.read_text())['roofline']
    assert set(res['rows']['dwnet']) == set(suite['roofline']['settings'])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['benchmark.md', 'roofline.json']
