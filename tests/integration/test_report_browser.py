"""The HTML report of real sandbox runs, opened in headless Chromium (issue 16).

Runs after test_drills.py in `make test` (pytest takes the files in name order), so the
sandbox's reports hold a deploy (canary, ramp, rollout passed) followed by a manual rollback
(drill f) and failed canaries rolled back by the gate (drills b, c, d); a report is archived
under .sandbox/reports/ with its own page when the next canary starts. Only reports written
after this module was collected count (no leftover of an older run). Run alone, the test makes
the runs it needs itself: deploy.yml + rollback.yml, and a failing canary drill.

What the page shows is read from the rendered DOM (not from the template): a verdict per phase
and for the rollback, one drawn chart per gate of each phase, the rollback section with its
timings; JavaScript errors and any network request fail the test. Screenshots are kept under
.sandbox/artifacts/ (docs/report-screenshot.png is one of them).
"""

import glob
import json
import os
import struct
import subprocess
import time

import pytest

from browser_support import Browser, chromium_path
from sandbox_support import BIN, ENV, ROOT, wait_candidate_quiet

STATE = os.path.join(ROOT, '.sandbox')
ARTIFACTS = os.path.join(STATE, 'artifacts')
COLLECTED_AT = time.time()
PHASES = ('canary', 'ramp', 'rollout')

import sys  # noqa: E402  (the collection, for the page's own helpers)
sys.path.insert(0, os.path.join(ROOT, 'collections'))
from ansible_collections.cohort.rollout.plugins.module_utils import report_html  # noqa: E402


def reports():
    """(path, doc) of this session's reports, newest first."""
    found = []
    for path in glob.glob(os.path.join(STATE, 'report*.json')) + glob.glob(os.path.join(STATE, 'reports', '*.json')):
        if os.path.getmtime(path) < COLLECTED_AT - 1:
            continue
        try:
            with open(path, encoding='utf-8') as handle:
                found.append((os.path.getmtime(path), path, json.load(handle)))
        except (OSError, ValueError):
            continue
    return [(path, doc) for _m, path, doc in sorted(found, reverse=True)]


def is_deploy(doc):
    return all(doc.get(p, {}).get('status') == 'passed' for p in PHASES) and 'durations' in doc.get('rollback', {})


def is_drill(doc):
    rollback = doc.get('rollback', {})
    reasons = doc.get('canary', {}).get('verdict', {}).get('reasons') or ['']
    # A canary stopped by a gate (the drills also leave canaries fenced by the guard, and judged ones).
    return (doc.get('canary', {}).get('status') == 'failed' and doc['canary'].get('rolled_back')
            and rollback.get('trigger') == 'automatic' and 'durations' in rollback and reasons[0].startswith('gate '))


def playbook(name, *args):
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'playbooks/' + name] + list(args), cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=1500, check=False)
    return proc


def find_or_make(kind):
    match = is_deploy if kind == 'deploy' else is_drill
    for path, doc in reports():
        if match(doc):
            return path, doc
    # Run alone: make the real run this test needs, into a report of its own.
    path = os.path.join(STATE, 'report-browser-%s.json' % kind)
    if os.path.exists(path):
        os.unlink(path)
    var = ['-e', 'rollout_report_path=%s' % path]
    if kind == 'deploy':
        run = playbook('deploy.yml', *var)
        assert run.returncode == 0, run.stdout[-4000:]
        run = playbook('rollback.yml', '-e', 'rollback_reason=browser test', *var)
        assert run.returncode == 0, run.stdout[-4000:]
    else:
        wait_candidate_quiet()
        run = playbook('canary.yml', '-e', 'analyzer_fault_error_rate=0.05', *var)
        assert run.returncode != 0, 'the faulty canary passed: ' + run.stdout[-4000:]
        playbook('provision.yml', '--limit', 'analyzers')
    with open(path, encoding='utf-8') as handle:
        doc = json.load(handle)
    assert match(doc), doc
    return path, doc


@pytest.fixture(scope='module')
def browser():
    assert chromium_path(), 'chromium is not installed: make setup installs the Debian package'
    os.makedirs(ARTIFACTS, exist_ok=True)
    with Browser() as instance:
        yield instance


DOM = r"""(() => {
  const text = (el) => el ? el.innerText : null;
  const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 50 && r.height > 50; };
  return {
    title: document.title,
    verdicts: [...document.querySelectorAll('#verdicts .verdict')].map(v => (
      {phase: v.dataset.phase, status: v.dataset.status, text: v.innerText})),
    gateCharts: [...document.querySelectorAll('#gates figure.chart-gate')].map(f => (
      {id: f.id, svg: !!f.querySelector('svg'), drawn: !!f.querySelector('svg') && visible(f.querySelector('svg')),
       caption: text(f.querySelector('figcaption')),
       fail: ((g) => g ? (g.querySelectorAll('use').length || g.querySelectorAll(':scope > path').length) : 0)(
         f.querySelector('g[id$="-fail"]')),
       legend: [...f.querySelectorAll('svg text')].map(t => t.textContent).filter(t => /\(\d+\)$/.test(t))})),
    timeline: !!document.querySelector('#timeline svg') && visible(document.querySelector('#timeline svg')),
    timelineText: [...document.querySelectorAll('#timeline svg text')].map(t => t.textContent),
    rollback: text(document.querySelector('#rollback')),
    rollbackChart: !!document.querySelector('#rollback svg') && visible(document.querySelector('#rollback svg')),
    problems: text(document.querySelector('#problems')),
    notifications: text(document.querySelector('#notifications')),
  };
})()"""


def open_page(browser, path, name):
    html = report_html.html_path(path)
    assert report_html.wait_current(path, timeout=90), 'the HTML report of %s never matched it' % path
    page = browser.open('file://' + html)
    try:
        dom = page.evaluate(DOM)
        shot = page.screenshot(os.path.join(ARTIFACTS, 'report-%s.png' % name))
        top = page.screenshot(os.path.join(ARTIFACTS, 'report-%s-top.png' % name), full=False)
        errors = list(page.errors)
    finally:
        page.close()
    for png in (shot, top):
        with open(png, 'rb') as handle:
            head = handle.read(24)
        assert head[:8] == b'\x89PNG\r\n\x1a\n', png
        width, height = struct.unpack('>II', head[16:24])
        assert width >= 800 and height >= 600, (png, width, height)
    assert errors == [], errors
    return dom


def check_common(dom, doc):
    statuses = dict((v['phase'], v['status']) for v in dom['verdicts'])
    expected = dict((p, doc[p]['status']) for p in PHASES if p in doc)
    expected['rollback'] = doc['rollback']['status']
    assert statuses == expected
    words = {'passed': 'PASSED', 'failed': 'FAILED', 'rolled_back': 'ROLLED BACK', 'inconclusive': 'INCONCLUSIVE'}
    for verdict in dom['verdicts']:
        assert words[verdict['status']] in verdict['text'], verdict
    # One drawn chart per gate of each phase, and no other.
    gates = sorted('gate-%s-%s' % (p, g) for p in PHASES if p in doc for g in doc[p].get('gates', {}))
    assert sorted(c['id'] for c in dom['gateCharts']) == gates
    for chart in dom['gateCharts']:
        assert chart['drawn'], chart
        # Pass / FAIL / no data are told apart in words in every chart's legend, not by colour alone.
        assert [t.split(' (')[0] for t in chart['legend']] == ['pass', 'FAIL', 'no data'], chart
    assert dom['timeline']
    # The rollback section: its facts and timings as recorded.
    rollback = doc['rollback']
    assert dom['rollback'].count(rollback['trigger']) >= 1 and rollback['reason'] in dom['rollback']
    for value in rollback['durations'].values():
        assert '%.3f s' % value in dom['rollback'], (value, dom['rollback'])
    assert dom['rollbackChart']
    assert dom['problems'] is None, dom['problems']


def test_deploy_and_rollback_report_in_chromium(browser):
    path, doc = find_or_make('deploy')
    dom = open_page(browser, path, 'deploy')
    check_common(dom, doc)
    assert len(dom['gateCharts']) >= 9  # canary 4, ramp 5, rollout 3 gates by the runbook
    assert all(c['fail'] == 0 for c in dom['gateCharts'])
    for phase in PHASES:
        assert '%s starts' % phase in dom['timelineText'] and '%s passed' % phase in dom['timelineText']
    assert 'trip (manual)' in dom['timelineText'] and 'rollback complete' in dom['timelineText']
    assert 'rollback' in dom['notifications'] and 'complete' in dom['notifications']


def test_failed_canary_report_in_chromium(browser):
    path, doc = find_or_make('drill')
    dom = open_page(browser, path, 'drill')
    check_common(dom, doc)
    # The gate that tripped (its verdict says which) has its FAIL marker on its chart.
    reason = doc['canary']['verdict']['reasons'][0]
    assert reason.startswith('gate '), reason
    gate = reason.split()[1]
    charts = dict((c['id'], c) for c in dom['gateCharts'])
    assert charts['gate-canary-%s' % gate]['fail'] >= 1, charts['gate-canary-%s' % gate]
    assert 'trip (automatic)' in dom['timelineText'] and 'shares reverted' in dom['timelineText']
    assert 'ROLLED BACK' in [v for v in dom['verdicts'] if v['phase'] == 'rollback'][0]['text']
