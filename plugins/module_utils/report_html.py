# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML view of the rollout report: ``<report>.html`` beside ``<report>.json``.

One self-contained file (inline CSS and SVG, no script, nothing fetched), rewritten
atomically after every write of the report, so it is current during a bake and complete
after a rollback. Charts are drawn by matplotlib (SVG backend, text kept as text).

Cost and safety (docs/performance.md "HTML report"): the report writer only *schedules*
a render (``schedule``): when a renderer holds ``<report>.html.lock`` it does nothing (that
renderer sees the write), otherwise it starts one detached Python (``fork``/``exec``).
The renderer takes the lock without waiting (one that finds it held exits at once) and
renders again, still holding it, while the report keeps changing, waiting as long as the
last render took between two renders (at most half a core: a bounded rate during a bake).
A burst of writes costs one or two renders, and a render never runs in the gate's process. ``wait_current`` lets the
phase boundaries (and scripts) wait, bounded, for a page that matches the report.
Nothing here raises into the writer: failures go into the page itself or, when no page
can be written, into ``<report>.html.err``.

Bad input never raises either: a missing, empty, truncated (not JSON) or older-format
report gives a page that says what it could not read, and ``main`` names the file.

Standard library only at import time (matplotlib is imported when a chart is drawn),
and no import from this collection, so the file runs as a script by path as well.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import html
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

FILE_MODE = 0o600
PHASES = ('canary', 'ramp', 'rollout')
KNOWN = PHASES + ('rollback',)
OPS = {'lt': '<', 'le': '\u2264', 'gt': '>', 'ge': '\u2265'}
STATUS_WORDS = {
    'passed': ('\u2714', 'PASSED'), 'failed': ('\u2716', 'FAILED'), 'inconclusive': ('?', 'INCONCLUSIVE'),
    'running': ('\u25b6', 'RUNNING'), 'rolled_back': ('\u21a9', 'ROLLED BACK'),
}
# Okabe-Ito colours (readable with colour-blindness); shape and text carry the meaning anyway.
COLOURS = {'pass': '#0072B2', 'fail': '#D55E00', 'inconclusive': '#7f7f7f', 'threshold': '#000000',
           'share': '#009E73', 'trip': '#D55E00', 'phase': '#555555', 'revert': '#CC79A7'}
MARKERS = {'pass': ('o', 'pass'), 'fail': ('X', 'FAIL'), 'inconclusive': ('^', 'no data')}
ENV_OFF = 'COHORT_ROLLOUT_HTML'  # set to "off" to disable the page (e.g. a controller without matplotlib)
MATPLOTLIB_HINT = 'pip install matplotlib (requirements.txt pins the tested version)'
RENDERER_TIMEOUT = 120


def html_path(json_path):
    """``report.json`` -> ``report.html`` (any other name gets ``.html`` appended)."""
    base = json_path[:-5] if json_path.endswith('.json') else json_path
    return base + '.html'


def _digest(data):
    return hashlib.sha256(data).hexdigest()


# -- reading ------------------------------------------------------------------------------------------------
def read_source(path):
    """(report dict or None, raw bytes or None, problems): never raises."""
    try:
        with open(path, 'rb') as handle:
            raw = handle.read()
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return None, None, ['report file %s does not exist (no phase has written it yet?)' % path]
        return None, None, ['cannot read report file %s: %s' % (path, exc.strerror or exc)]
    if not raw.strip():
        return None, raw, ['report file %s is empty' % path]
    try:
        doc = json.loads(raw.decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, raw, ['report file %s is not valid JSON, maybe truncated (%d bytes): %s' % (path, len(raw), exc)]
    if not isinstance(doc, dict):
        return None, raw, ['report file %s holds a JSON %s, not an object with one key per phase'
                           % (path, type(doc).__name__)]
    return doc, raw, []


def _epoch(value):
    if value is None or value == '' or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith('Z'):
        text = text[:-1] + '+00:00'
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _num(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def normalise(doc):
    """The parts of the report the page shows, and what could not be read (older formats, odd records)."""
    problems = []
    phases = []
    for name in PHASES:
        if name not in doc:
            continue
        rec = doc[name]
        if not isinstance(rec, dict):
            problems.append('phase %s: the record is a %s, not an object (older report format?); not shown'
                            % (name, type(rec).__name__))
            continue
        phases.append((name, rec))
    rollback = doc.get('rollback')
    if rollback is not None and not isinstance(rollback, dict):
        problems.append('rollback: the record is a %s, not an object; not shown' % type(rollback).__name__)
        rollback = None
    others = dict((k, v) for k, v in doc.items() if k not in KNOWN)
    return phases, rollback, others, problems


def gate_series(name, rec, problems):
    """{gate: [(epoch, value or None, status, note)]} from a phase's samples; odd samples are counted as problems."""
    samples = rec.get('samples')
    series = {}
    if samples is None:
        return series
    if not isinstance(samples, list):
        problems.append('phase %s: samples is a %s, not a list (older report format?)' % (name, type(samples).__name__))
        return series
    skipped = 0
    for sample in samples:
        values = sample.get('values') if isinstance(sample, dict) else None
        at = _epoch(sample.get('at')) if isinstance(sample, dict) else None
        if not isinstance(values, dict) or at is None:
            skipped += 1
            continue
        for gate, entry in values.items():
            if not isinstance(entry, dict) or entry.get('status') not in ('pass', 'fail', 'inconclusive'):
                skipped += 1
                continue
            value = _num(entry.get('value'))
            status = entry['status']
            if status != 'inconclusive' and value is None:
                status = 'inconclusive'
            series.setdefault(gate, []).append((at, value, status, entry.get('note') or ''))
    if skipped:
        problems.append('phase %s: %d sample value(s) in a format this page does not know were skipped '
                        '(older report format?)' % (name, skipped))
    return series


def notifications_for(json_path, start, end, explicit=None):
    """(rollout notifications within [start, end], where they came from or why none): the sandbox's webhook log.

    The sandbox's receiver appends to ``notifications.jsonl`` in the state directory, the directory
    of the report (or its parent, for an archived report under ``reports/``). A production webhook
    (Slack, a pager) keeps its own history: then the page says where it looked.
    """
    directory = os.path.dirname(os.path.abspath(json_path))
    if explicit:
        candidates = [explicit]
    else:
        candidates = [os.path.join(directory, 'notifications.jsonl'),
                      os.path.join(os.path.dirname(directory), 'notifications.jsonl')]
    for path in candidates:
        try:
            with open(path, 'r', encoding='utf-8') as handle:
                lines = handle.readlines()
        except IOError:
            continue
        found, bad = [], 0
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if not isinstance(doc, dict):
                bad += 1
                continue
            body = doc.get('body') if isinstance(doc.get('body'), dict) else {}
            event = body.get('cohort_rollout')
            at = _epoch(doc.get('received_at'))
            if at is None and isinstance(event, dict):
                at = _epoch(event.get('at'))
            if at is None or (start is not None and at < start - 5) or (end is not None and at > end + 15):
                continue
            if isinstance(event, dict):
                found.append(dict(at=at, source='rollout', level=event.get('level', ''), event=event.get('event', ''),
                                  phase=event.get('phase', ''), text=event.get('message', '')))
            elif isinstance(body.get('alerts'), list):
                for alert in body['alerts']:
                    labels = alert.get('labels', {}) if isinstance(alert, dict) else {}
                    found.append(dict(at=at, source='alertmanager', level=labels.get('severity', ''),
                                      event=alert.get('status', '') if isinstance(alert, dict) else '',
                                      phase=labels.get('phase', ''), text=labels.get('alertname', '')))
        note = path + ((' (%d unreadable line(s) skipped)' % bad) if bad else '')
        return found, note
    return None, 'no notifications log found (looked at %s); a production webhook keeps its own history' % (
        ', '.join(candidates))


# -- charts -------------------------------------------------------------------------------------------------
class Charts(object):
    """matplotlib figures to inline SVG strings; ``error`` says why there are none."""

    def __init__(self):
        self.error = None
        self.count = 0
        try:
            import matplotlib  # pylint: disable=import-outside-toplevel
            matplotlib.use('svg', force=True)
            from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
            import matplotlib.dates as mdates  # pylint: disable=import-outside-toplevel
            import matplotlib.transforms as mtransforms  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            self.error = 'charts not drawn: matplotlib cannot be imported on the controller (%s); %s' % (
                exc, MATPLOTLIB_HINT)
            return
        self.matplotlib = matplotlib
        self.Figure = Figure
        self.mdates = mdates
        self.mtransforms = mtransforms

    def svg(self, fig, chart_id):
        """The figure as an <svg> element; ids salted per chart so that several SVGs share one page."""
        buf = io.StringIO()
        with self.matplotlib.rc_context({'svg.fonttype': 'none', 'svg.hashsalt': chart_id}):
            fig.savefig(buf, format='svg', bbox_inches='tight')
        text = buf.getvalue()
        start = text.find('<svg')
        self.count += 1
        return text[start:] if start >= 0 else text

    def _dt(self, epochs):
        return [datetime.datetime.fromtimestamp(e, datetime.timezone.utc) for e in epochs]

    def _time_axis(self, ax):
        locator = self.mdates.AutoDateLocator(minticks=3, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(self.mdates.ConciseDateFormatter(locator, tz=datetime.timezone.utc))
        ax.set_xlabel('time (UTC)')

    def gate(self, chart_id, phase, gate, points, op, threshold, trip_at=None, span=None):
        fig = self.Figure(figsize=(5.6, 2.5))
        ax = fig.add_subplot()
        scale, unit = value_scale(gate)
        values = [(t, v * scale) for t, v, s, _n in points if v is not None]
        if values:
            line = ax.plot(self._dt([t for t, _v in values]), [v for _t, v in values], color='#bbbbbb', linewidth=1,
                           zorder=1)
            line[0].set_gid('%s-line' % chart_id)
        blended = self.mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
        for status in ('pass', 'fail', 'inconclusive'):
            chosen = [(t, v) for t, v, s, _n in points if s == status]
            marker, word = MARKERS[status]
            label = '%s (%d)' % (word, len(chosen))
            if status == 'inconclusive':
                # No value to plot: a hollow triangle on the bottom edge, at the sample's time.
                coll = ax.scatter(self._dt([t for t, _v in chosen]), [0.04] * len(chosen), marker=marker, s=60,
                                  facecolors='none', edgecolors=COLOURS[status], linewidths=1.5, label=label,
                                  transform=blended, zorder=3, clip_on=False)
            else:
                coll = ax.scatter(self._dt([t for t, _v in chosen]), [v * scale for _t, v in chosen], marker=marker,
                                  s=70 if status == 'fail' else 36, color=COLOURS[status], label=label, zorder=3)
            coll.set_gid('%s-%s' % (chart_id, status))
        if threshold is not None:
            thr = ax.axhline(threshold * scale, color=COLOURS['threshold'], linestyle='--', linewidth=1,
                             label='threshold: %s %s%s' % (OPS.get(op, op or '?'), fmt_scaled(threshold, gate), unit))
            thr.set_gid('%s-threshold' % chart_id)
        if trip_at is not None:
            x = self.mdates.date2num(self._dt([trip_at])[0])
            ax.axvline(x, color=COLOURS['trip'], linestyle=':', linewidth=1.5).set_gid('%s-trip' % chart_id)
            ax.annotate('trip', xy=(x, 0.95), xycoords=blended, color=COLOURS['trip'],
                        ha='left', va='top', fontsize=9, xytext=(3, 0), textcoords='offset points')
        ax.set_title('%s \u00b7 %s' % (phase, gate), loc='left', fontsize=10)
        ax.set_ylabel(unit.strip() or 'value')
        ax.grid(True, axis='y', alpha=0.3)
        if span:
            # The phase's whole bake, so that every gate of a phase has the same time axis (one sample too).
            pad = max(1.0, (span[1] - span[0]) * 0.03)
            ax.set_xlim(self.mdates.date2num(self._dt([span[0] - pad])[0]),
                        self.mdates.date2num(self._dt([span[1] + pad])[0]))
        self._time_axis(ax)
        ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.3), ncol=4, fontsize=8, frameon=False,
                  handletextpad=0.3, columnspacing=1.0)
        return self.svg(fig, chart_id)

    def timeline(self, chart_id, steps, marks, candidate):
        fig = self.Figure(figsize=(9, 2.8))
        ax = fig.add_subplot()
        times = self._dt([t for t, _s in steps])
        shares = [s * 100 for _t, s in steps]
        line = ax.step(times, shares, where='post', color=COLOURS['share'], linewidth=2,
                       label='%s share of traffic (%%)' % candidate)
        line[0].set_gid('%s-share' % chart_id)
        for (t, s), when in zip(steps, times):
            ax.annotate('%g%%' % round(s * 100, 3), xy=(when, s * 100), xytext=(2, 4), textcoords='offset points',
                        fontsize=8)
        ax.set_yscale('symlog', linthresh=1)
        ax.set_ylim(-0.2, 160)
        ax.set_yticks([0, 1, 10, 100])
        ax.set_yticklabels(['0%', '1%', '10%', '100%'])
        blended = self.mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
        styles = {'start': ('-', COLOURS['phase']), 'end': (':', COLOURS['phase']), 'trip': ('--', COLOURS['trip']),
                  'revert': ('-.', COLOURS['revert']), 'complete': (':', COLOURS['revert'])}
        for index, (when, kind, text) in enumerate(sorted(marks)):
            style, colour = styles.get(kind, ('-', '#333333'))
            x = self.mdates.date2num(self._dt([when])[0])
            mark = ax.axvline(x, color=colour, linestyle=style, linewidth=1)
            mark.set_gid('%s-mark-%d-%s' % (chart_id, index, kind))
            ax.annotate(text, xy=(x, 1.0 - 0.12 * (index % 4)), xycoords=blended, fontsize=8, color=colour,
                        xytext=(2, -2), textcoords='offset points', ha='left', va='top')
        ax.set_ylabel('share to %s' % candidate)
        ax.grid(True, axis='y', alpha=0.3)
        self._time_axis(ax)
        return self.svg(fig, chart_id)

    def durations(self, chart_id, items):
        fig = self.Figure(figsize=(7, 0.6 + 0.45 * len(items)))
        ax = fig.add_subplot()
        labels = [label for label, _v in items]
        values = [v for _l, v in items]
        bars = ax.barh(labels, values, color=COLOURS['revert'], hatch='//', edgecolor='#333333')
        for index, rect in enumerate(bars):
            rect.set_gid('%s-bar-%d' % (chart_id, index))
        for rect, value in zip(bars, values):
            ax.annotate('%.2f s' % value, xy=(rect.get_width(), rect.get_y() + rect.get_height() / 2), xytext=(3, 0),
                        textcoords='offset points', va='center', fontsize=9)
        ax.invert_yaxis()
        ax.set_xlabel('seconds after the trip')
        ax.set_xlim(0, max(values + [1.0]) * 1.25)
        return self.svg(fig, chart_id)

    def judge_scores(self, chart_id, points, pass_score, marginal_score):
        fig = self.Figure(figsize=(7, 2.2))
        ax = fig.add_subplot()
        ax.plot(self._dt([t for t, _s in points]), [s for _t, s in points], marker='s', color=COLOURS['pass'],
                label='score')
        for value, word in ((pass_score, 'pass'), (marginal_score, 'marginal')):
            if value is not None:
                ax.axhline(value, linestyle='--', color='#333333', linewidth=1, label='%s \u2265 %g' % (word, value))
        ax.set_ylim(0, 105)
        ax.set_ylabel('score')
        self._time_axis(ax)
        ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        return self.svg(fig, chart_id)


def value_scale(gate):
    """(factor, unit suffix) for a gate's values by its name: ratios in %, bytes in MiB."""
    if gate.endswith('_bytes'):
        return 1.0 / (1024 * 1024), ' MiB'
    if gate.endswith('_ms'):
        return 1.0, ' ms'
    if gate.endswith('rate') or gate.endswith('_ratio'):
        return 100.0, ' %'
    return 1.0, ''


def fmt_scaled(value, gate):
    scale, _unit = value_scale(gate)
    return fmt(value * scale)


def fmt(value):
    if value is None:
        return 'no data'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return '%.3g' % value
        return ('%.4f' % value).rstrip('0').rstrip('.')
    return str(value)


def fmt_time(epoch):
    if epoch is None:
        return '-'
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


# -- the page -----------------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:1.5em auto;max-width:1100px;
padding:0 1em;color:#1a1a1a}
h1{font-size:1.5em;margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#555;font-size:.9em} code{background:#f2f2f2;padding:0 .2em}
.verdicts{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.verdict{border:2px solid #999;border-radius:6px;padding:.5em .8em;min-width:11em}
.verdict .word{font-weight:bold;font-size:1.15em}
.s-passed{border-color:#0072B2}.s-failed,.s-rolled_back{border-color:#D55E00;border-style:double;border-width:4px}
.s-inconclusive{border-color:#7f7f7f;border-style:dashed}.s-running{border-color:#009E73;border-style:dotted}
.problems{border:2px solid #D55E00;background:#fff4ec;padding:.5em 1em;border-radius:6px}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.2em .5em;
text-align:left;vertical-align:top} th{background:#f4f4f4}
figure{margin:.8em 0} figcaption{font-size:.9em;color:#333} svg{max-width:100%;height:auto}
.reasons li{margin:.2em 0}
.gate-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:.4em 1.2em}
"""


def esc(value):
    return html.escape('' if value is None else str(value), quote=True)


class Page(object):
    def __init__(self, json_path, charts):
        self.json_path = json_path
        self.charts = charts
        self.parts = []
        self.problems = []

    def add(self, text):
        self.parts.append(text)

    def chart(self, kind, chart_id, caption, draw, *args, **kwargs):
        """One <figure>; a chart that cannot be drawn says why in its place (never fails the page)."""
        attrs = 'class="chart chart-%s" id="%s"' % (kind, esc(chart_id))
        if self.charts.error:
            body = '<p class="no-chart">%s</p>' % esc(self.charts.error)
        else:
            try:
                body = draw(chart_id, *args, **kwargs)
            except Exception as exc:  # pylint: disable=broad-except
                body = '<p class="no-chart">chart not drawn: %s: %s</p>' % (esc(type(exc).__name__), esc(exc))
                self.problems.append('chart %s could not be drawn: %s' % (chart_id, exc))
        self.add('<figure %s>%s<figcaption>%s</figcaption></figure>' % (attrs, body, caption))


def _verdict_card(name, rec, kind):
    status = str(rec.get('status', '?'))
    symbol, word = STATUS_WORDS.get(status, ('\u2022', status.upper()))
    lines = []
    if kind == 'phase':
        shares = rec.get('shares') or {}
        if shares:
            lines.append('traffic: %s' % ', '.join('%s %s%%' % (k, fmt(round(float(v) * 100, 3)))
                                                   for k, v in sorted(shares.items()) if _num(v) is not None))
        start = _epoch(rec.get('phase_started_at') or rec.get('started_at'))
        end = _epoch(rec.get('phase_ended_at') or rec.get('ended_at'))
        if start and end:
            lines.append('took %.0f s' % (end - start))
        if rec.get('rolled_back'):
            lines.append('rolled back')
        if rec.get('forced'):
            lines.append('FORCED')
    else:
        lines.append('trigger: %s' % rec.get('trigger', '?'))
        if rec.get('phase'):
            lines.append('phase: %s' % rec['phase'])
        durations = rec.get('durations') or {}
        if _num(durations.get('trip_to_shares_reverted_s')) is not None:
            lines.append('traffic back in %.2f s' % durations['trip_to_shares_reverted_s'])
        if _num(durations.get('trip_to_complete_s')) is not None:
            lines.append('complete in %.1f s' % durations['trip_to_complete_s'])
    return ('<div class="verdict s-%s" data-phase="%s" data-status="%s"><div>%s</div>'
            '<div class="word">%s %s</div><div class="meta">%s</div></div>'
            % (esc(status), esc(name), esc(status), esc(name), esc(symbol), esc(word), '<br>'.join(esc(x) for x in lines)))


def _reasons(rec):
    verdict = rec.get('verdict') if isinstance(rec.get('verdict'), dict) else {}
    reasons = verdict.get('reasons') or []
    if not isinstance(reasons, list):
        reasons = [reasons]
    return reasons


def _table(rows, header=None, cls=''):
    out = ['<table class="%s">' % esc(cls)]
    if header:
        out.append('<tr>%s</tr>' % ''.join('<th>%s</th>' % esc(h) for h in header))
    for row in rows:
        out.append('<tr>%s</tr>' % ''.join('<td>%s</td>' % esc(c) for c in row))
    out.append('</table>')
    return ''.join(out)


def _candidate(phases, rollback):
    for _name, rec in phases:
        shares = rec.get('shares') or {}
        if isinstance(shares, dict) and 'ultra_fast' in shares:
            return 'ultra_fast'
    for _name, rec in phases:
        shares = rec.get('shares') or {}
        numeric = [(v, k) for k, v in shares.items() if _num(v) is not None] if isinstance(shares, dict) else []
        if numeric:
            return min(numeric)[1]
    if rollback and isinstance(rollback.get('shares'), dict):
        numeric = [(v, k) for k, v in rollback['shares'].items() if _num(v) is not None]
        if numeric:
            return min(numeric)[1]
    return 'ultra_fast'


def timeline_data(phases, rollback, candidate):
    """(steps [(epoch, share)], marks [(epoch, kind, text)], end epoch) of the candidate's share."""
    steps, marks = [], []
    for name, rec in phases:
        start = _epoch(rec.get('phase_started_at')) or _epoch(rec.get('started_at'))
        shifted = _epoch(rec.get('started_at')) or start
        end = _epoch(rec.get('phase_ended_at')) or _epoch(rec.get('ended_at'))
        before = rec.get('shares_before') if isinstance(rec.get('shares_before'), dict) else {}
        shares = rec.get('shares') if isinstance(rec.get('shares'), dict) else {}
        if start is not None:
            marks.append((start, 'start', '%s starts' % name))
            if _num(before.get(candidate)) is not None:
                steps.append((start, float(before[candidate])))
        if shifted is not None and _num(shares.get(candidate)) is not None:
            steps.append((shifted, float(shares[candidate])))
        if end is not None:
            marks.append((end, 'end', '%s %s' % (name, rec.get('status', 'ended'))))
    if rollback:
        trip = _epoch(rollback.get('trip_at')) or _epoch(rollback.get('started_at'))
        durations = rollback.get('durations') if isinstance(rollback.get('durations'), dict) else {}
        if trip is not None:
            marks.append((trip, 'trip', 'trip (%s)' % rollback.get('trigger', 'rollback')))
            reverted = _num(durations.get('trip_to_shares_reverted_s'))
            if reverted is not None:
                marks.append((trip + reverted, 'revert', 'shares reverted'))
                shares = rollback.get('shares') if isinstance(rollback.get('shares'), dict) else {}
                if _num(shares.get(candidate)) is not None:
                    steps.append((trip + reverted, float(shares[candidate])))
        done = _epoch(rollback.get('ended_at'))
        if done is not None:
            marks.append((done, 'complete', 'rollback complete'))
    steps.sort()
    ends = [m[0] for m in marks] + [s[0] for s in steps]
    end = max(ends) if ends else None
    if steps and end is not None and end > steps[-1][0]:
        steps.append((end, steps[-1][1]))
    return steps, marks, end


def _judgements(judge):
    """A list of judgement dicts (the judge may record one or several)."""
    if isinstance(judge, list):
        return [j for j in judge if isinstance(j, dict)]
    if isinstance(judge, dict):
        if isinstance(judge.get('judgements'), list):
            return [j for j in judge['judgements'] if isinstance(j, dict)] or [judge]
        return [judge]
    return []


def _judge_section(page, name, judge):
    judgements = _judgements(judge)
    if not judgements:
        page.problems.append('phase %s: judge record in a format this page does not know; not shown' % name)
        return
    last = judgements[-1]
    page.add('<section class="judge" data-phase="%s"><h3>%s: judgement against the baseline</h3>' % (esc(name), esc(name)))
    summary = []
    for key in ('verdict', 'result', 'score', 'pass_score', 'marginal_score', 'at', 'window', 'confidence'):
        value = last.get(key)
        if isinstance(value, dict):
            value = value.get('result', json.dumps(value, sort_keys=True))
        if value is not None:
            summary.append((key, fmt(value) if not isinstance(value, str) else value))
    if summary:
        page.add(_table(summary, ['', 'latest judgement']))
    metrics = last.get('metrics')
    rows = []
    if isinstance(metrics, dict):
        rows = [(k, v) for k, v in sorted(metrics.items()) if isinstance(v, dict)]
    elif isinstance(metrics, list):
        rows = [(m.get('name', m.get('metric', '?')), m) for m in metrics if isinstance(m, dict)]
    if rows:
        preferred = ['classification', 'baseline_median', 'canary_median', 'effect', 'allowed_effect', 'direction',
                     'u', 'p_value', 'baseline_points', 'canary_points', 'weight', 'critical']
        keys = [k for k in preferred if any(k in m for _n, m in rows)]
        keys += sorted(set(k for _n, m in rows for k, v in m.items()
                           if k not in keys and k not in ('name', 'metric') and not isinstance(v, (dict, list))))
        page.add(_table([[n] + [fmt(m.get(k)) if not isinstance(m.get(k), str) else m.get(k) for k in keys]
                         for n, m in rows], ['metric'] + keys, 'judge-metrics'))
    scored = [(_epoch(j.get('at')), _num(j.get('score'))) for j in judgements]
    scored = [(t, s) for t, s in scored if t is not None and s is not None]
    if len(scored) >= 2:
        page.chart('judge', 'judge-%s' % name, '%s: judge score per judgement' % esc(name), page.charts.judge_scores,
                   scored, _num(last.get('pass_score')), _num(last.get('marginal_score')))
    page.add('</section>')


def render(json_path, doc, raw, problems, notifications_path=None, now=None):
    """(the whole page as text, what could not be read). ``doc`` None: a page of what could not be read."""
    now = time.time() if now is None else now
    charts = Charts()
    page = Page(json_path, charts)
    page.problems.extend(problems)
    title = 'Rollout report: %s' % os.path.basename(json_path)
    digest = _digest(raw) if raw is not None else ''
    body_start = len(page.parts)
    if doc is not None:
        phases, rollback, others, more = normalise(doc)
        page.problems.extend(more)
        _body(page, json_path, phases, rollback, others, notifications_path)
        if not phases and rollback is None:
            page.problems.append('report file %s has no phase and no rollback yet' % json_path)
    body = page.parts[body_start:]
    head = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="cohort.rollout report_html">',
        '<meta name="report-sha256" content="%s">' % esc(digest),
        '<title>%s</title><style>%s</style></head><body>' % (esc(title), CSS),
        '<h1>%s</h1>' % esc(title),
        '<p class="meta">From <code>%s</code> (sha256 %s), page written %s. Rewritten after every write of the '
        'report: reload to see new samples.</p>' % (esc(json_path), esc(digest[:12] or 'n/a'), esc(fmt_time(now))),
    ]
    if page.problems:
        head.append('<div class="problems" id="problems"><strong>Could not read everything:</strong><ul>%s</ul></div>'
                    % ''.join('<li>%s</li>' % esc(p) for p in page.problems))
    if charts.error:
        head.append('<p class="problems" id="no-charts">%s</p>' % esc(charts.error))
    return ''.join(head + body + ['</body></html>\n']), page.problems


def _body(page, json_path, phases, rollback, others, notifications_path):
    page.add('<section id="verdicts"><h2>Verdicts</h2><div class="verdicts">')
    for name, rec in phases:
        page.add(_verdict_card(name, rec, 'phase'))
    if rollback:
        page.add(_verdict_card('rollback', rollback, 'rollback'))
    page.add('</div>')
    for name, rec in phases:
        reasons = _reasons(rec)
        if reasons:
            page.add('<p><strong>%s</strong>:</p><ul class="reasons">%s</ul>'
                     % (esc(name), ''.join('<li>%s</li>' % esc(r) for r in reasons)))
    page.add('</section>')

    candidate = _candidate(phases, rollback)
    steps, marks, end = timeline_data(phases, rollback, candidate)
    page.add('<section id="timeline"><h2>Traffic</h2>')
    if steps or marks:
        if not steps:
            steps = [(marks[0][0], 0.0), (marks[-1][0], 0.0)] if marks else []
        page.chart('timeline', 'timeline', 'Share of traffic to %s over time, with phase starts/ends, the trip and '
                   'the rollback marked (times UTC).' % esc(candidate), page.charts.timeline, steps, marks, candidate)
    else:
        page.add('<p>No time in the report to draw a timeline from.</p>')
    page.add('</section>')

    page.add('<section id="gates"><h2>Gates</h2><p>Every sample of every gate against its threshold: '
             'circles pass, crosses FAIL, hollow triangles on the bottom edge have no data (never a pass).</p>')
    any_gate = False
    for name, rec in phases:
        series = gate_series(name, rec, page.problems)
        gates = rec.get('gates') if isinstance(rec.get('gates'), dict) else {}
        if rec.get('samples') is not None and 'gates' not in rec:
            page.problems.append('phase %s: samples without a gates record (older report format?): thresholds '
                                 'not shown' % name)
        trip_gate, trip_at = _trip(rec, series)
        times = [p[0] for pts in series.values() for p in pts]
        first = _epoch(rec.get('started_at')) or (min(times) if times else None)
        last = max([t for t in [_epoch(rec.get('ended_at'))] + times if t is not None] or [0]) or None
        span = (first, last) if first is not None and last is not None and last >= first else None
        names = sorted(set(gates) | set(series))
        if names:
            page.add('<h3 class="gate-phase">%s: %d gate(s)</h3><div class="gate-grid">' % (esc(name), len(names)))
        for gate in names:
            info = gates.get(gate) if isinstance(gates.get(gate), dict) else {}
            points = series.get(gate, [])
            counts = dict((s, sum(1 for p in points if p[2] == s)) for s in ('pass', 'fail', 'inconclusive'))
            caption = ('<span class="gate-name">%s</span> in %s: %d pass, %d FAIL, %d no data%s'
                       % (esc(gate), esc(name), counts['pass'], counts['fail'], counts['inconclusive'],
                          ('; worst %s' % esc(fmt(info.get('worst')))) if 'worst' in info else ''))
            page.chart('gate', 'gate-%s-%s' % (name, gate), caption, page.charts.gate, name, gate, points,
                       info.get('op'), _num(info.get('threshold')), trip_at if gate == trip_gate else None, span)
            any_gate = True
        if names:
            page.add('</div>')
        if isinstance(rec.get('judge'), (dict, list)):
            _judge_section(page, name, rec['judge'])
        elif 'judge' in rec:
            page.problems.append('phase %s: judge record is a %s; not shown' % (name, type(rec['judge']).__name__))
    if not any_gate:
        page.add('<p>No gate has been sampled yet.</p>')
    page.add('</section>')

    page.add('<section id="rollback"><h2>Rollback</h2>')
    if rollback:
        durations = rollback.get('durations') if isinstance(rollback.get('durations'), dict) else {}
        rows = [(k, fmt(rollback.get(k))) for k in ('status', 'trigger', 'phase', 'reason', 'started_at', 'trip_at',
                                                    'ended_at') if k in rollback]
        for key in ('shares', 'candidate_stopped', 'baseline_restarted', 'logs_archived', 'verified_requests',
                    'lock_broken'):
            if key in rollback:
                value = rollback[key]
                rows.append((key, json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else fmt(value)))
        page.add(_table(rows, ['', 'rollback'], 'rollback-facts'))
        items = [(k.replace('trip_to_', 'trip \u2192 ').replace('_s', '').replace('_', ' '), float(v))
                 for k, v in sorted(durations.items(), key=lambda kv: (_num(kv[1]) or 0)) if _num(v) is not None]
        if items:
            page.add(_table([(label, '%.3f s' % value) for label, value in items], ['timing', 'seconds'],
                            'rollback-timings'))
            page.chart('durations', 'rollback-durations', 'Rollback timings, seconds after the trip.',
                       page.charts.durations, items)
        else:
            page.add('<p>No timings recorded for this rollback.</p>')
    else:
        page.add('<p class="no-rollback">No rollback in this report.</p>')
    page.add('</section>')

    starts = [_epoch(r.get('phase_started_at') or r.get('started_at')) for _n, r in phases]
    if rollback:
        starts.append(_epoch(rollback.get('started_at')))
    starts = [s for s in starts if s is not None]
    running = any(r.get('status') == 'running' for _n, r in phases)
    found, where = notifications_for(json_path, min(starts) if starts else None,
                                     None if running or end is None else end, notifications_path)
    page.add('<section id="notifications"><h2>Notifications sent</h2>')
    if found is None:
        page.add('<p>%s.</p>' % esc(where))
    elif not found:
        page.add('<p>None during this report (from <code>%s</code>).</p>' % esc(where))
    else:
        page.add('<p>From <code>%s</code>.</p>' % esc(where))
        page.add(_table([(fmt_time(n['at']), n['source'], n['level'], n['event'], n['phase'], n['text'])
                         for n in sorted(found, key=lambda n: n['at'])],
                        ['time', 'source', 'level', 'event', 'phase', 'message'], 'notifications'))
    page.add('</section>')

    if others:
        page.add('<section id="other"><h2>Other records</h2>')
        for key in sorted(others):
            page.add('<details><summary>%s</summary><pre>%s</pre></details>'
                     % (esc(key), esc(json.dumps(others[key], indent=2, sort_keys=True, default=str))))
        page.add('</section>')


def _trip(rec, series):
    """(gate, epoch) of the sample that tripped the phase, from its verdict reasons."""
    for reason in _reasons(rec):
        match = re.match(r'gate (\S+) tripped in phase \S+: .* sampled at (\S+) ', str(reason))
        if match and match.group(1) in series:
            return match.group(1), _epoch(match.group(2))
    return None, None


# -- writing ------------------------------------------------------------------------------------------------
def _write_atomic(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _error_path(json_path):
    return html_path(json_path) + '.err'


def _record_error(json_path, message):
    try:
        with open(_error_path(json_path), 'w', encoding='utf-8') as handle:
            handle.write('%s %s\n' % (fmt_time(time.time()), message))
    except OSError:
        pass


def write_html(json_path, notifications_path=None):
    """Render the page of ``json_path`` now and write it atomically; return (ok, message). Never raises."""
    out = html_path(json_path)
    started = time.monotonic()
    try:
        doc, raw, problems = read_source(json_path)
        text, problems = render(json_path, doc, raw, problems, notifications_path)
        _write_atomic(out, text)
    except Exception as exc:  # pylint: disable=broad-except
        message = 'HTML report %s not written: %s: %s' % (out, type(exc).__name__, exc)
        _record_error(json_path, message)
        return False, message
    try:
        os.unlink(_error_path(json_path))
    except OSError:
        pass
    took = time.monotonic() - started
    if doc is None:
        return False, 'HTML report %s written, but %s (%.2f s)' % (out, '; '.join(problems), took)
    if problems:
        return True, 'HTML report %s written in %.2f s; it could not show everything: %s' % (
            out, took, '; '.join(problems))
    return True, 'HTML report %s written in %.2f s' % (out, took)


def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def render_loop(json_path, notifications_path=None, max_seconds=RENDERER_TIMEOUT):
    """Background renderer: render while the report keeps changing, one renderer at a time (see module doc).

    The lock is held while rendering and while waiting between renders, so that a writer that finds it
    held starts no renderer (this one will see its write); the report is checked once more after the
    lock is released, for a write made between the last check and the release.
    """
    lock_path = html_path(json_path) + '.lock'
    deadline = time.monotonic() + max_seconds
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            _record_error(json_path, 'cannot create %s: %s' % (lock_path, exc))
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # the renderer holding it renders again after it sees this change
            while True:
                before = _stamp(json_path)
                started = time.monotonic()
                write_html(json_path, notifications_path)
                took = time.monotonic() - started
                if _stamp(json_path) == before or time.monotonic() > deadline:
                    break
                # A bounded rate: as long a pause as the render took (at most half a core).
                time.sleep(min(took, 10.0))
        finally:
            os.close(fd)
        if _stamp(json_path) == before or time.monotonic() > deadline:
            return


def _renderer_busy(json_path):
    """True when a renderer holds the page's lock (it will render this write too)."""
    try:
        fd = os.open(html_path(json_path) + '.lock', os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def enabled():
    """False when the environment turns the page off (COHORT_ROLLOUT_HTML=off)."""
    return os.environ.get(ENV_OFF, '').lower() not in ('off', '0', 'false', 'no')


def schedule(json_path):
    """Start a detached background render of ``json_path``'s page; never raises, returns at once."""
    if not enabled():
        return False
    try:
        if _renderer_busy(json_path):
            return True
        name = __name__
        if name.startswith('ansible_collections.'):
            root = os.path.abspath(__file__)
            for _part in name.split('.'):
                root = os.path.dirname(root)
            env = dict(os.environ)
            env['PYTHONPATH'] = root + ((os.pathsep + env['PYTHONPATH']) if env.get('PYTHONPATH') else '')
            command = [sys.executable, '-m', name, '--background', json_path]
        else:
            env = None
            command = [sys.executable, os.path.abspath(__file__), '--background', json_path]
        subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        return True
    except Exception as exc:  # pylint: disable=broad-except
        _record_error(json_path, 'background render not started: %s: %s' % (type(exc).__name__, exc))
        return False


def page_digest(path):
    """The report-sha256 the page at ``path`` was rendered from, or None."""
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            head = handle.read(4096)
    except OSError:
        return None
    match = re.search(r'<meta name="report-sha256" content="([0-9a-f]*)">', head)
    return match.group(1) if match else None


def is_current(json_path):
    """True when the page was rendered from the report as it is now."""
    try:
        with open(json_path, 'rb') as handle:
            digest = _digest(handle.read())
    except OSError:
        digest = ''
    return page_digest(html_path(json_path)) == digest


def wait_current(json_path, timeout=15.0, poll=0.1):
    """Wait (bounded) until the page matches the report; True if it does. Never raises.

    Returns False at once when the page is turned off, or when its last render failed after the report's
    last write (``<report>.html.err``): there is nothing to wait for then.
    """
    if not enabled():
        return False
    deadline = time.monotonic() + timeout
    while True:
        try:
            if is_current(json_path):
                return True
            failed = _stamp(_error_path(json_path))
            written = _stamp(json_path)
            if failed and written and failed[2] >= written[2]:
                return False
        except Exception:  # pylint: disable=broad-except
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def main(argv=None):
    """CLI: render the page of a report now (default), or --background (the writer's detached renderer)."""
    args = list(sys.argv[1:] if argv is None else argv)
    background = '--background' in args
    args = [a for a in args if a != '--background']
    notifications = None
    if '--notifications' in args:
        index = args.index('--notifications')
        if index + 1 >= len(args):
            sys.stderr.write('--notifications needs a path\n')
            return 2
        notifications = args[index + 1]
        del args[index:index + 2]
    if len(args) != 1:
        sys.stderr.write('usage: report_html.py [--notifications NOTIFICATIONS.jsonl] REPORT.json\n')
        return 2
    if background:
        render_loop(args[0], notifications)
        return 0
    ok, message = write_html(args[0], notifications)
    (sys.stdout if ok else sys.stderr).write(message + '\n')
    return 0 if ok else 2


if __name__ == '__main__':
    raise SystemExit(main())
