# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one writer of the rollout report (JSON, one key per phase).

``update_phase(path, phase, data)`` deep-merges ``data`` into ``report[phase]``
and keeps every other phase and every other key of that phase. Writes are
atomic (temp file in the same directory, fsync, rename), the file is mode 0600,
and an exclusive ``fcntl`` lock on ``<path>.lock`` serialises concurrent
writers (several gates, the phase role, the rollback) so no update is lost.

Dicts merge recursively; any other value (lists included, e.g. ``samples``)
replaces the old one. Values must be strict JSON: NaN and Infinity are refused
so that ``jq`` can always read the report.

The report is the controller's, and the fleet keeps a copy (on each load balancer host, beside the
rollout lock): a controller that runs the next phase may be another one (an AWX job's fresh
container, a colleague's laptop). ``adopt_newest`` takes the newest of the fleet's copies in place of
an older (or missing) controller copy; "newest" is the latest ``*_epoch`` stamp of any record.

Every write also schedules the HTML view of the report (``<report>.html``, module_utils/report_html.py)
in a detached background process: the writer never waits for it and never fails because of it.
"""

from __future__ import annotations

import base64
import binascii
import errno
import fcntl
import json
import math
import os

from ansible_collections.cohort.rollout.plugins.module_utils import process, report_html
from ansible_collections.cohort.rollout.plugins.module_utils.merge import deep_merge

FILE_MODE = 0o600


class ReportError(Exception):
    """The report cannot be read or written."""


def _load(path):
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            text = handle.read()
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return {}
        raise ReportError('cannot read report %s: %s' % (path, exc))
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ReportError('report %s is not valid JSON (%s); refusing to overwrite it' % (path, exc))
    if not isinstance(doc, dict):
        raise ReportError('report %s is not a JSON object; refusing to overwrite it' % path)
    return doc


def read_report(path):
    """The whole report as a dict ({} when the file does not exist yet)."""
    return _load(path)


class _Lock(object):
    def __init__(self, path):
        self.path = path + '.lock'
        self.handle = None

    def __enter__(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise ReportError('cannot create lock %s: %s' % (self.path, exc))
        self.handle = os.fdopen(fd, 'r+')
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()


def _write_atomic(path, doc):
    try:
        text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + '\n'
    except (TypeError, ValueError) as exc:
        raise ReportError('report data is not strict JSON: %s' % exc)
    try:
        process.write_atomic(path, text.encode('utf-8'), FILE_MODE)
    except OSError as exc:
        raise ReportError('cannot write report %s: %s' % (path, exc))


def update_report(path, update, html=True):
    """Deep-merge ``update`` ({phase: {...}, ...}) into the report; return the new report.

    With ``html`` (the default) the HTML view is scheduled after the write (never raises, never waits).
    """
    if not isinstance(update, dict):
        raise ReportError('a report update must be a dict')
    directory = os.path.dirname(os.path.abspath(path))
    try:
        # The report's first write on a fresh controller makes its directory.
        os.makedirs(directory, 0o750, exist_ok=True)
    except OSError as exc:
        raise ReportError('cannot create the directory of report %s: %s' % (path, exc))
    with _Lock(path):
        doc = deep_merge(_load(path), update)
        _write_atomic(path, doc)
    if html:
        report_html.schedule(path)
    return doc


def update_phase(path, phase, data, html=True):
    """Deep-merge ``data`` into ``report[phase]``; other phases and keys are kept."""
    if not phase or not isinstance(phase, str):
        raise ReportError('phase must be a non-empty string')
    if not isinstance(data, dict):
        raise ReportError('phase data must be a dict')
    return update_report(path, {phase: data}, html=html)


def last_activity(report):
    """The latest ``*_epoch`` stamp of any record of ``report`` (0.0 for none): which copy is newer."""
    latest = 0.0
    for record in (report or {}).values():
        if not isinstance(record, dict):
            continue
        for key, value in record.items():
            if (key.endswith('_epoch') and isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value)):
                latest = max(latest, float(value))
    return latest


def parse_copy(content_b64):
    """A fleet copy (base64 of the file, as ``ansible.builtin.slurp`` returns it) as a dict."""
    try:
        text = base64.b64decode(content_b64, validate=True).decode('utf-8')
        doc = json.loads(text)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ReportError('not a JSON report: %s' % exc)
    if not isinstance(doc, dict):
        raise ReportError('not a JSON object')
    return doc


def read_copies(results):
    """The fleet's copies from ``ansible.builtin.slurp`` loop results: ({host: report}, {host: state}).

    State is ``read``, ``absent`` (no copy yet: normal), ``skipped``, or why the copy cannot be used
    (``unreachable: ...``, ``unreadable: ...``); only read copies are returned as reports.
    """
    reports, states = {}, {}
    for entry in results:
        host = str(entry.get('item', '?'))
        if entry.get('unreachable'):
            states[host] = 'unreachable: %s' % entry.get('msg', '')
        elif entry.get('skipped'):
            states[host] = 'skipped'
        elif entry.get('failed') or 'content' not in entry:
            msg = str(entry.get('msg', ''))
            states[host] = 'absent' if 'not found' in msg else 'unreadable: %s' % msg
        else:
            try:
                reports[host] = parse_copy(entry['content'])
                states[host] = 'read'
            except ReportError as exc:
                states[host] = 'unreadable: %s' % exc
    return reports, states


def unusable(states):
    """The copies that exist but cannot be used (each worth a warning), from ``read_copies``' states."""
    return dict((host, state) for host, state in sorted(states.items()) if state not in ('read', 'absent', 'skipped'))


def newest(local, copies):
    """(source, report): the newest of ``copies`` when it is newer than ``local``, else (None, local)."""
    if copies:
        source, best = max(copies.items(), key=lambda item: (last_activity(item[1]), item[0]))
        if last_activity(best) > last_activity(local if isinstance(local, dict) else {}) and best != local:
            return source, best
    return None, local


def adopt_newest(path, copies, archive_to):
    """Replace the report at ``path`` by the newest of ``copies`` ({source: dict}) when that one is newer.

    Returns (source adopted or None, the report now at ``path``, where the replaced one went or None).
    The controller's own copy wins ties and is kept when newer (a run that died before its copy reached
    the fleet). A replaced controller copy that held anything is moved to ``archive_to`` first:
    nothing recorded is lost.
    """
    if not copies:
        return None, read_report(path), None
    os.makedirs(os.path.dirname(os.path.abspath(path)), 0o750, exist_ok=True)
    target = None
    with _Lock(path):
        local = _load(path)
        source, best = newest(local, copies)
        if source is None:
            return None, local, None
        if local:
            target = archive_to
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
            os.rename(path, target)
        _write_atomic(path, best)
    report_html.schedule(path)
    return source, best, target
