"""module_utils/times.py: the one writer and reader of times (report, lock, gates, status)."""
from __future__ import annotations

import math
import os
import re

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import times

PLUGINS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))), 'plugins')


def test_iso_to_the_second_and_to_the_millisecond():
    assert times.iso(0) == '1970-01-01T00:00:00Z'
    assert times.iso(1795701725.1239) == '2026-11-26T14:02:05Z'
    assert times.iso(1795701725.1239, millis=True) == '2026-11-26T14:02:05.123Z'
    assert re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$', times.iso())


@pytest.mark.parametrize('text', ['2026-11-26T14:02:05Z', '2026-11-26T14:02:05.000Z', '2026-11-26T15:02:05+01:00',
                                  '2026-11-26T14:02:05', 1795701725, 1795701725.0, '1795701725', ' 1795701725 '])
def test_every_form_written_or_accepted_reads_back(text):
    assert times.parse_time(text) == 1795701725.0


def test_what_it_writes_it_reads():
    for epoch in (0, 1795701725, 1795701725.5):
        assert times.parse_time(times.iso(epoch, millis=True)) == epoch
        assert times.parse_time(times.iso(epoch)) == math.floor(epoch)


@pytest.mark.parametrize('bad', [True, 'yesterday', '2026-13-01T00:00:00Z', -1, float('nan'), float('inf'), 'nan'])
def test_not_a_time(bad):
    with pytest.raises(times.TimeError):
        times.parse_time(bad)
    assert times.epoch_or_none(bad) is None


def test_missing_stays_missing():
    assert times.parse_time(None) is None and times.parse_time('') is None
    assert times.epoch_or_none(None) is None


def test_no_other_iso_writer_or_reader_in_plugins():
    """One place: no plugin formats or parses ISO times itself (report_html runs by path, so it keeps its own)."""
    offenders = []
    for folder, unused, files in os.walk(PLUGINS):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith('.py') or path.endswith(os.path.join('module_utils', 'times.py')) \
                    or path.endswith(os.path.join('module_utils', 'report_html.py')):
                continue
            with open(path, encoding='utf-8') as handle:
                text = handle.read()
            for needle in ("%Y-%m-%dT%H:%M:%S", 'fromisoformat('):
                if needle in text:
                    offenders.append((os.path.relpath(path, PLUGINS), needle))
    assert offenders == []
