# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One JSON-over-HTTP request, as the clients of this collection's own APIs make it.

The weights API client (``weights_api``) and the rollout guard client (``guard_api``) share it; each
turns these errors into its own (what was refused, what could not be reached) with its own words.
"""

from __future__ import annotations

import json

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url


class Refused(Exception):
    """The server answered an HTTP error; ``detail`` is its JSON ``error`` text when it sent one."""

    def __init__(self, status, detail):
        super().__init__('%s: %s' % (status, detail))
        self.status = status
        self.detail = detail


class Unreachable(Exception):
    """No answer: connection refused, timeout, TLS failure, DNS."""


class NotJSON(Exception):
    """An answer that is not JSON; ``raw`` holds its first bytes."""

    def __init__(self, raw):
        super().__init__('not JSON: %r' % raw[:200])
        self.raw = raw[:200]


def request(url, body=None, token=None, headers=None, validate_certs=True, timeout=10.0):
    """POST ``body`` as JSON (GET when None) to ``url`` with an optional bearer token; the decoded answer."""
    all_headers = {'Accept': 'application/json'}
    data = None
    if body is not None:
        all_headers['Content-Type'] = 'application/json'
        data = json.dumps(body)
    if token:
        all_headers['Authorization'] = 'Bearer ' + token
    all_headers.update(headers or {})
    try:
        resp = open_url(url, data=data, headers=all_headers, method='POST' if body is not None else 'GET',
                        validate_certs=validate_certs, timeout=timeout)
        raw = resp.read()
    except HTTPError as exc:
        detail = exc.read().decode('utf-8', 'replace')
        try:
            detail = json.loads(detail).get('error', detail)
        except (ValueError, AttributeError):
            pass
        raise Refused(exc.code, detail) from exc
    except (URLError, OSError) as exc:
        raise Unreachable(str(exc)) from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise NotJSON(raw) from exc
