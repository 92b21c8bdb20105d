# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place cohort.rollout writes and reads times (the report, the lock, the gates, the pages).

Times are written as ISO-8601 UTC with a ``Z`` suffix, to the second (``2026-11-26T14:02:05Z``)
or, where two events of one second must keep their order, to the millisecond
(``2026-11-26T14:02:05.123Z``). They are read back from either form, from any ISO-8601 time
with an offset (none means UTC), or from epoch seconds (a number or a numeric string).
"""

from __future__ import annotations

import datetime
import math
import time


class TimeError(ValueError):
    """Not a time."""


def iso(epoch=None, millis=False):
    """ISO-8601 UTC with a Z suffix of ``epoch`` (now when None), to the second or to the millisecond."""
    moment = datetime.datetime.fromtimestamp(time.time() if epoch is None else epoch, datetime.timezone.utc)
    if millis:
        return moment.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (moment.microsecond // 1000)
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_time(value):
    """Epoch seconds from a number, a numeric string or an ISO-8601 time; None and '' stay None.

    TimeError for anything else, and for a negative, NaN or infinite time.
    """
    if value is None or value == '':
        return None
    if isinstance(value, bool):
        raise TimeError('not a time: %r' % (value,))
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            if text.endswith('Z'):
                text = text[:-1] + '+00:00'
            try:
                moment = datetime.datetime.fromisoformat(text)
            except ValueError:
                raise TimeError('not a time (epoch seconds or ISO-8601): %r' % (value,))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
            number = moment.timestamp()
    if math.isnan(number) or math.isinf(number) or number < 0:
        raise TimeError('not a time: %r' % (value,))
    return number


def epoch_or_none(value):
    """parse_time for reading what may be missing or damaged (a report, a page): None instead of an error."""
    try:
        return parse_time(value)
    except TimeError:
        return None
