"""The HTML view of the report (module_utils/report_html.py): content, bad input, the background writer."""

import datetime
import json
import os
import re
import subprocess
import sys
import time

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import report, report_html

T0 = 1764580000.0


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def samples(start, count, fail_at=None, no_data_at=None):
    out = []
    for i in range(count):
        error = dict(value=0.05, status='fail') if i == fail_at else dict(value=0.002, status='pass')
        memory = dict(value=None, status='inconclusive', note='no data') if i == no_data_at else dict(value=5e7, status='pass')
        out.append(dict(n=i + 1, at=iso(start + 5 * i), values=dict(error_rate=error, memory_bytes=memory)))
    return out


GATES = dict(error_rate=dict(op='lt', threshold=0.01, worst=0.05), memory_bytes=dict(op='lt', threshold=1073741824.0))


def phase(start, status, count=4, **kw):
    rec = dict(status=status, phase_started_at=iso(start), started_at=iso(start + 2), phase_ended_at=iso(start + 30),
               ended_at=iso(start + 29), shares=dict(original=0.99, ultra_fast=0.01),
               shares_before=dict(original=1.0, ultra_fast=0.0), samples=samples(start + 5, count), gates=GATES,
               verdict=dict(result=status, reasons=[]))
    rec.update(kw)
    return rec


def full_report():
    trip_reason = ('gate error_rate tripped in phase ramp: error_rate=0.05, not < 0.01 (threshold), sampled at %s '
                   '(sample 3/4; 1 failing sample(s) > failure_limit 0)' % iso(T0 + 100 + 15))
    return dict(
        canary=phase(T0, 'passed'),
        ramp=phase(T0 + 100, 'failed', samples=samples(T0 + 105, 3, fail_at=2, no_data_at=1), rolled_back=True,
                   verdict=dict(result='failed', reasons=[trip_reason]), shares=dict(original=0.9, ultra_fast=0.1)),
        rollback=dict(status='rolled_back', trigger='automatic', phase='ramp', reason='ramp failed',
                      started_at=iso(T0 + 116), trip_at=iso(T0 + 115), ended_at=iso(T0 + 135),
                      durations=dict(trip_to_shares_reverted_s=0.1, trip_to_complete_s=19.5),
                      shares=dict(original=1.0, ultra_fast=0.0), logs_archived=['/x/analyzer.log']))


def write(path, doc):
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(doc, handle)


def page_of(tmp_path, doc, name='report.json'):
    path = str(tmp_path / name)
    write(path, doc)
    ok, message = report_html.write_html(path)
    with open(report_html.html_path(path), encoding='utf-8') as handle:
        return ok, message, handle.read()


def group(page, gid):
    """The markers of one SVG group (matplotlib writes a scatter's points as <use> in a <g id=gid>; none: no group)."""
    match = re.search(r'<g id="%s">(.*?)</g>' % re.escape(gid), page, re.S)
    # (a marker is a <use> of one definition, or, for a few points, a <path> of its own)
    if match is None:
        return 0
    return match.group(1).count('<use ') or match.group(1).count('<path d=')


def test_html_path_beside_the_report():
    assert report_html.html_path('/a/report.json') == '/a/report.html'
    assert report_html.html_path('/a/report-drill.json') == '/a/report-drill.html'
    assert report_html.html_path('/a/report') == '/a/report.html'


def test_page_shows_verdicts_one_chart_per_gate_and_the_rollback(tmp_path):
    ok, message, page = page_of(tmp_path, full_report())
    assert ok, message
    assert re.search(r'data-phase="canary" data-status="passed".*?PASSED', page, re.S)
    assert re.search(r'data-phase="ramp" data-status="failed".*?FAILED', page, re.S)
    assert re.search(r'data-phase="rollback" data-status="rolled_back".*?ROLLED BACK', page, re.S)
    charts = re.findall(r'<figure class="chart chart-gate" id="gate-([a-z]+)-([a-z_]+)"', page)
    assert sorted(charts) == [('canary', 'error_rate'), ('canary', 'memory_bytes'), ('ramp', 'error_rate'),
                              ('ramp', 'memory_bytes')]
    assert page.count('<svg') == 6  # 4 gates, the timeline, the rollback timings
    assert 'id="timeline"' in page and 'trip (automatic)' in page and 'shares reverted' in page
    assert 'trip \u2192 shares reverted' in page and '0.100 s' in page and '19.500 s' in page
    assert 'problems' not in page.split('<h2>')[0] or 'Could not read' not in page


def test_pass_fail_and_no_data_are_distinct_markers_with_text(tmp_path):
    _ok, _msg, page = page_of(tmp_path, full_report())
    # ramp: error_rate 2 pass + 1 fail; memory 2 pass + 1 no data.
    assert group(page, 'gate-ramp-error_rate-pass') == 2
    assert group(page, 'gate-ramp-error_rate-fail') == 1
    assert group(page, 'gate-ramp-error_rate-inconclusive') == 0
    assert group(page, 'gate-ramp-memory_bytes-inconclusive') == 1
    # Shapes differ (not colour alone) and the legend says it in words.
    shapes = {}
    for status in ('pass', 'fail'):
        body = re.search(r'<g id="gate-ramp-error_rate-%s">(.*?)</g>' % status, page, re.S).group(1)
        ref = re.search(r'xlink:href="#([^"]+)"', body)
        shapes[status] = re.search(r'<path id="%s" d="([^"]+)"' % ref.group(1), page).group(1) if ref else \
            re.search(r'<path d="([^"]+)"', body).group(1)
    assert len(shapes['fail'].split('L')) > len(shapes['pass'].split('L')) or shapes['fail'] != shapes['pass']
    assert 'FAIL (1)' in page and 'pass (2)' in page and 'no data (1)' in page
    assert 'threshold: &lt; 1 %' in page or 'threshold: < 1 %' in page
    # The tripping sample is marked on its gate.
    assert 'id="gate-ramp-error_rate-trip"' in page


def test_page_is_self_contained(tmp_path):
    _ok, _msg, page = page_of(tmp_path, full_report())
    assert '<script' not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert 'url(http' not in page and '@import' not in page


def test_judge_is_shown_when_present_and_absence_is_fine(tmp_path):
    doc = full_report()
    doc['canary']['judge'] = dict(score=97.5, verdict='passed', pass_score=95, marginal_score=75,
                                  metrics=dict(latency_p99=dict(classification='pass', baseline_median=5.0,
                                                                canary_median=5.2, p_value=0.4)))
    _ok, _msg, page = page_of(tmp_path, doc)
    assert 'canary: judgement against the baseline' in page and 'latency_p99' in page and '97.5' in page
    doc['canary']['judge'] = [
        dict(at=iso(T0 + 10), score=60),
        dict(at=iso(T0 + 20), score=97, verdict='passed', metrics=[dict(name='error_rate', classification='pass')])]
    _ok, _msg, page = page_of(tmp_path, doc)
    assert 'id="judge-canary"' in page and 'error_rate' in page
    doc['canary']['judge'] = 'garbage'
    _ok, _msg, page = page_of(tmp_path, doc)
    assert 'phase canary: judge record is a str' in page


def test_notifications_beside_the_report_within_its_time(tmp_path):
    lines = [
        dict(received_at=T0 - 3600, path='/rollout', body=dict(cohort_rollout=dict(event='start', phase='old', level='info', message='earlier run'))),
        dict(received_at=T0 + 1, path='/rollout', body=dict(cohort_rollout=dict(event='start', phase='canary', level='info', message='canary starts'))),
        dict(received_at=T0 + 120, path='/rollout', body=dict(cohort_rollout=dict(event='rollback', phase='ramp', level='critical', message='rolled back'))),
        dict(received_at=T0 + 121, path='/alertmanager', body=dict(alerts=[dict(status='firing', labels=dict(alertname='HighErrorRate', severity='warning'))])),
    ]
    with open(str(tmp_path / 'notifications.jsonl'), 'w') as handle:
        handle.write('\n'.join(json.dumps(x) for x in lines) + '\nnot json\n')
    _ok, _msg, page = page_of(tmp_path, full_report())
    section = page.split('id="notifications"')[1]
    assert 'canary starts' in section and 'rolled back' in section and 'HighErrorRate' in section
    assert 'earlier run' not in section
    assert '1 unreadable line(s) skipped' in section


def test_no_notifications_log_is_said(tmp_path):
    _ok, _msg, page = page_of(tmp_path, full_report())
    assert 'no notifications log found' in page.split('id="notifications"')[1]


@pytest.mark.parametrize('content, says', [
    (None, 'does not exist'),
    (b'', 'is empty'),
    (b'{"canary": {"status": "runn', 'is not valid JSON, maybe truncated'),
    (b'[1, 2]', 'holds a JSON list, not an object'),
])
def test_bad_report_gives_a_page_that_says_what_it_could_not_read(tmp_path, capsys, content, says):
    path = str(tmp_path / 'report.json')
    if content is not None:
        with open(path, 'wb') as handle:
            handle.write(content)
    assert report_html.main([path]) == 2
    err = capsys.readouterr().err
    assert path in err and says in err
    with open(report_html.html_path(path), encoding='utf-8') as handle:
        page = handle.read()
    assert 'Could not read everything' in page and says in page and path in page


def test_older_format_is_shown_as_far_as_it_goes(tmp_path):
    doc = full_report()
    doc['canary'] = 'passed'  # a phase that was a plain string
    doc['ramp']['samples'].append(dict(n=9, value=0.1))  # a sample without values/at
    del doc['ramp']['gates']
    ok, msg, page = page_of(tmp_path, doc)
    assert ok and 'could not show everything: phase canary: the record is a str' in msg
    assert 'phase canary: the record is a str, not an object' in page
    assert 'phase ramp: 1 sample value(s) in a format this page does not know were skipped' in page
    assert 'phase ramp: samples without a gates record' in page
    assert 'id="gate-ramp-error_rate"' in page and 'data-phase="rollback"' in page


def test_a_chart_that_fails_is_said_in_its_place(tmp_path, monkeypatch):
    def boom(self, *args, **kwargs):
        raise ValueError('bad data for this chart')
    monkeypatch.setattr(report_html.Charts, 'timeline', boom)
    ok, _msg, page = page_of(tmp_path, full_report())
    assert ok
    assert 'chart not drawn: ValueError: bad data for this chart' in page
    assert 'chart timeline could not be drawn' in page
    assert page.count('<svg') == 5  # the others are drawn


def test_without_matplotlib_the_page_has_the_tables_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import matplotlib -> ImportError
    ok, _msg, page = page_of(tmp_path, full_report())
    assert ok
    assert '<svg' not in page and 'matplotlib cannot be imported' in page
    assert 'data-status="failed"' in page and 'trip \u2192 complete' in page


def test_write_failure_is_recorded_not_raised(tmp_path):
    path = str(tmp_path / 'report.json')
    write(path, full_report())
    os.mkdir(report_html.html_path(path))  # the page's name is taken by a directory: rename fails
    ok, message = report_html.write_html(path)
    assert not ok and 'not written' in message
    with open(report_html.html_path(path) + '.err', encoding='utf-8') as handle:
        assert 'not written' in handle.read()
    assert [n for n in os.listdir(str(tmp_path)) if n.endswith('.tmp')] == []


def test_schedule_never_raises(tmp_path, monkeypatch):
    monkeypatch.setenv('COHORT_ROLLOUT_HTML', 'on')

    def no_fork(*args, **kwargs):
        raise OSError(11, 'Resource temporarily unavailable')
    monkeypatch.setattr(subprocess, 'Popen', no_fork)
    path = str(tmp_path / 'report.json')
    doc = report.update_phase(path, 'canary', dict(status='running'))  # the report is written all the same
    assert doc == dict(canary=dict(status='running'))
    with open(report_html.html_path(path) + '.err', encoding='utf-8') as handle:
        assert 'background render not started' in handle.read()


def test_every_report_write_renders_the_page_in_the_background(tmp_path, monkeypatch):
    monkeypatch.setenv('COHORT_ROLLOUT_HTML', 'on')
    path = str(tmp_path / 'report.json')
    report.update_phase(path, 'canary', phase(T0, 'running'))
    assert report_html.wait_current(path, timeout=60), 'the page never matched the report'
    for number in range(15):  # a burst: the renderers coalesce and the last write wins
        report.update_phase(path, 'canary', dict(samples=samples(T0, number + 1)))
    report.update_phase(path, 'canary', dict(status='passed'))
    assert report_html.wait_current(path, timeout=60), 'the page never caught up with the last write'
    with open(report_html.html_path(path), encoding='utf-8') as handle:
        page = handle.read()
    assert 'data-status="passed"' in page and 'pass (15)' in page
    assert not os.path.exists(report_html.html_path(path) + '.err')


def test_wait_current_is_bounded_and_off_means_no_wait(tmp_path, monkeypatch):
    path = str(tmp_path / 'report.json')
    write(path, full_report())
    started = time.monotonic()
    assert report_html.wait_current(path, timeout=30) is False  # COHORT_ROLLOUT_HTML=off: no wait at all
    assert time.monotonic() - started < 1
    monkeypatch.setenv('COHORT_ROLLOUT_HTML', 'on')
    started = time.monotonic()
    assert report_html.wait_current(path, timeout=0.5) is False  # nothing renders it
    assert 0.4 < time.monotonic() - started < 5
    report_html.write_html(path)
    assert report_html.wait_current(path, timeout=0.5) is True


def test_no_renderer_is_started_while_one_is_at_work(tmp_path, monkeypatch):
    import fcntl
    monkeypatch.setenv('COHORT_ROLLOUT_HTML', 'on')
    started = []
    monkeypatch.setattr(subprocess, 'Popen', lambda *args, **kwargs: started.append(args[0]))
    path = str(tmp_path / 'report.json')
    with open(report_html.html_path(path) + '.lock', 'w') as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a renderer at work: it will see the next write
        report.update_phase(path, 'canary', dict(status='running'))
        assert started == []
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    report.update_phase(path, 'canary', dict(status='passed'))
    assert len(started) == 1 and started[0][-2:] == ['--background', path]
