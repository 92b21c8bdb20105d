"""The judge inside the bake (module_utils/gates.Bake with a judge_runner): fake clock, scripted judgements."""
import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import gates, judge

from test_gates_logic import FakeClock, scripted, spec  # pylint: disable=import-error

JUDGE = dict(baseline='original', canary='ultra_fast', step=2, interval=20,
             metrics=[dict(name='latency', query='lat{variant="$variant"}', critical=True)])


def judged(verdicts):
    """A judge_runner returning, call after call, judgements with these verdicts (the last one repeats)."""
    calls = []

    def runner(start, end):
        verdict = verdicts[min(len(calls), len(verdicts) - 1)]
        calls.append((start, end))
        return dict(score={'pass': 100.0, 'fail': 0.0, 'marginal': 80.0, 'nodata': 0.0}[verdict], verdict=verdict,
                    reasons=[] if verdict == 'pass' else ['latency %s' % verdict],
                    metrics={'latency': dict(classification='high' if verdict == 'fail' else 'pass',
                                             failed=verdict == 'fail', median=dict(baseline=5.0, canary=45.0),
                                             p_value=0.001)})
    runner.calls = calls
    return runner


def bake(verdicts, **over):
    s = spec(interval=10, duration=60, judge=dict(JUDGE), **over)
    s['judge'] = judge.normalize_judge(JUDGE)
    lines, records = [], []
    runner = judged(verdicts)
    clock = FakeClock()
    result = gates.Bake(s, scripted({'error_rate': [0.001]}), emit=lines.append, clock=clock,
                        on_update=records.append, judge_runner=runner).run()
    return result, lines, records, runner


def test_judged_at_its_interval_and_at_the_end():
    result, lines, records, runner = bake(['pass'])
    assert result['verdict'] == 'passed'
    # 7 samples at 0..60 s; judgements at 20 s and 40 s during the bake, then the final one at 60 s.
    assert [end - start for start, end in runner.calls] == [20, 40, 60]
    judge_lines = [line for line in lines if '[canary judge' in line]
    assert len(judge_lines) == 3 and judge_lines[-1].startswith('[canary judge final 60s] score 100 -> PASS')
    final = records[-1]['judge']
    assert final['final'] is True and final['verdict'] == 'pass' and len(final['judgements']) == 3
    assert result['judge']['score'] == 100


def test_a_hopeless_judgement_trips_the_bake_early():
    result, lines, _records, runner = bake(['pass', 'fail'])
    assert result['verdict'] == 'failed' and len(runner.calls) == 2
    assert result['reasons'][0].startswith('judge fail in phase canary: score 0 (pass >= 95, marginal >= 75) over 40s')
    assert len(result['samples']) == 5  # stopped at 40 s of 60


def test_intermediate_nodata_or_marginal_does_not_stop_the_bake():
    result, _lines, _records, runner = bake(['nodata', 'marginal', 'pass'])
    assert result['verdict'] == 'passed' and len(runner.calls) == 3


@pytest.mark.parametrize('final,verdict', [('marginal', 'inconclusive'), ('nodata', 'inconclusive'), ('fail', 'failed')])
def test_final_judgement_decides_with_the_gates(final, verdict):
    result, _lines, _records, _runner = bake(['pass', 'pass', final])
    assert result['verdict'] == verdict
    assert any(reason.startswith('judge %s in phase canary' % final) for reason in result['reasons'])


def test_gates_fail_even_when_the_judge_passes():
    s = spec(interval=10, duration=60)
    s['judge'] = judge.normalize_judge(JUDGE)
    result = gates.Bake(s, scripted({'error_rate': [0.5]}), emit=lambda line: None, clock=FakeClock(),
                        judge_runner=judged(['pass'])).run()
    assert result['verdict'] == 'failed' and 'gate error_rate tripped' in result['reasons'][0]


def test_judge_arguments_are_validated_with_the_gate_arguments():
    with pytest.raises(gates.GateSpecError) as err:
        spec(judge=dict(JUDGE, confidence=1.5))
    assert 'judge.confidence must be within (0, 1)' in str(err.value)
    assert spec(judge=dict(JUDGE, interval=None))['judge']['interval'] == 10  # defaults to the bake's interval
