# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one duration grammar of cohort.rollout (the rollout spec, metric_gate, the judge).

A duration is a number of seconds (``30``, ``2.5``, ``'30'``) or a Prometheus-style
string of one or more ``<number><unit>`` parts with units ``ms s m h d w y``
(``'250ms'``, ``'5m'``, ``'1h30m'``, ``'1.5h'``); surrounding blanks are ignored. It is
never negative, NaN or infinite. ``prometheus_duration`` writes seconds back in the
form Prometheus accepts in rule files (integer parts only).
"""

from __future__ import annotations

import math
import re

UNIT_SECONDS = {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800, 'y': 31536000}
_PART = r'(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)'
_DURATION_RE = re.compile(r'^(?:%s\s*)+$' % _PART)
_DURATION_PART_RE = re.compile(_PART)


class DurationError(ValueError):
    """A value that is not a duration; the message names the option. ``negative``: it was below zero."""

    def __init__(self, message, negative=False):
        super().__init__(message)
        self.negative = negative


def parse_duration(value, name='duration'):
    """Seconds (float) in a number or a duration string; DurationError naming ``name`` otherwise."""
    hint = '%s must be a number of seconds or a duration like 30s, 5m, 2h, 7d; got %r' % (name, value)
    if isinstance(value, bool) or value is None:
        raise DurationError(hint)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not _DURATION_RE.match(text):
                raise DurationError(hint)
            seconds = float(sum(float(n) * UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text)))
    else:
        raise DurationError(hint)
    if math.isnan(seconds) or math.isinf(seconds):
        raise DurationError('%s must be a finite duration, got %r' % (name, value))
    if seconds < 0:
        raise DurationError('%s must be zero or more, got %r' % (name, value), negative=True)
    return seconds


def prometheus_duration(seconds):
    """The shortest Prometheus duration string for a number of seconds ('1h30m', '250ms', '0s')."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return '0s'
    parts = []
    for unit, size in (('d', 86400000), ('h', 3600000), ('m', 60000), ('s', 1000), ('ms', 1)):
        if ms >= size:
            parts.append('%d%s' % (ms // size, unit))
            ms %= size
    return ''.join(parts)


def format_duration(seconds):
    """For people: 7560 -> '2h6m', 90 -> '1m30s', 2.5 -> '2.5s', 0 -> '0s'."""
    if seconds != int(seconds) or seconds < 60:
        return '%gs' % seconds
    rest = int(seconds)
    out = ''
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60), ('s', 1)):
        if rest >= size:
            out += '%d%s' % (rest // size, unit)
            rest %= size
    return out
