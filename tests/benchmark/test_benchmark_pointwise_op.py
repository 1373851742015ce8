"""tools/analysis_tools/benchmark_pointwise_op.py: times the I-D-DW op at the presets' shapes."""
import json

import pytest

from script_loading import load_script


def _tool():
    return load_script('tools/analysis_tools/benchmark_pointwise_op.py')


def test_tool_times_the_chosen_shapes(tmp_path, capsys):
    from mmdwnet.ops.backends import cpu
    if not cpu.available():
        pytest.skip('compiled CPU kernels unavailable (no C compiler)')
    tool = _tool()
    out = tmp_path / 'op.json'
    tool.main(['--only', 'nano stage 4', 'nano stage 3', '--rounds', '1', '--threads', '1',
               '--json', str(out)])
    results = json.loads(out.read_text())
    assert list(results) == ['nano stage 4', 'nano stage 3']
    for r in results.values():
        assert r['forward'] > 0 and r['backward'] > 0
    assert '| nano stage 3, 64x128x2x2, R 32 |' in capsys.readouterr().out


@pytest.mark.parametrize('argv', [['--rounds', '0'], ['--only', 'no such shape']])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit) as e:
        _tool().main(argv)
    assert e.value.code == 2
