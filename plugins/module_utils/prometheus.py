# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Prometheus HTTP client of cohort.rollout.

Instant and range queries over the HTTP API, basic or bearer auth, TLS
verification on by default, bounded timeouts, and Prometheus's own error text
surfaced as is. Also a small JSON-over-HTTP getter (the LB's ``GET /metrics``)
that shares the same transport.

The transport is one function, ``urllib_transport``, built on
``ansible.module_utils.urls.open_url`` (no extra dependency). Tests replace it
with a fake: ``PrometheusClient(..., transport=fake)`` where ``fake(method, url,
headers, data, timeout, validate_certs, ca_path)`` returns ``(status, body)``
or raises ``TransportError``.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import ssl

from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, SSLValidationError, make_context

USER_AGENT = 'cohort.rollout-prometheus-client'
MAX_ERROR_TEXT = 500


class TransportError(Exception):
    """The request got no HTTP answer: timeout, refused connection, TLS failure."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind  # 'timeout', 'connection' or 'tls'
        self.message = message


class PrometheusError(Exception):
    """Prometheus (or the HTTP path to it) answered with an error.

    ``error_type`` is Prometheus's ``errorType`` (``bad_data``, ``timeout``,
    ``execution``, ...) when the answer was Prometheus JSON, else ``http``,
    ``invalid_response`` or the ``TransportError`` kind.
    """

    def __init__(self, error_type, message, status=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status

    @property
    def is_bad_query(self):
        return self.error_type == 'bad_data'

    def short(self):
        """A short text for one sample line: 'HTTP 503', 'timeout', ..."""
        if self.error_type in ('timeout', 'connection', 'tls'):
            return self.error_type
        if self.status and self.error_type == 'http':
            return 'HTTP %s' % self.status
        return self.error_type


_CONTEXTS = {}


def _tls_context(validate_certs, ca_path):
    """One SSL context per (validate_certs, ca_path): building one loads the CA store (~100 ms)."""
    key = (bool(validate_certs), ca_path)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = make_context(cafile=ca_path, validate_certs=validate_certs)
    return _CONTEXTS[key]


def urllib_transport(method, url, headers, data, timeout, validate_certs, ca_path):
    """Send one request with ansible.module_utils.urls; return (status, body bytes) for any HTTP answer."""
    try:
        context = _tls_context(validate_certs, ca_path)
        resp = Request().open(method, url, data=data, headers=headers, timeout=timeout,
                              validate_certs=validate_certs, ca_path=ca_path, http_agent=USER_AGENT,
                              follow_redirects='safe', use_proxy=True, use_netrc=False, context=context)
        return resp.getcode(), resp.read()
    except HTTPError as exc:
        try:
            body = exc.read()
        except Exception:  # pylint: disable=broad-except
            body = b''
        return exc.code, body or b''
    except SSLValidationError as exc:
        raise TransportError('tls', str(exc))
    except (socket.timeout, TimeoutError) as exc:
        raise TransportError('timeout', 'timed out after %ss' % timeout) from exc
    except URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise TransportError('timeout', 'timed out after %ss' % timeout)
        if isinstance(reason, ssl.SSLError):
            raise TransportError('tls', str(reason))
        raise TransportError('connection', str(reason))
    except UrlsConnectionError as exc:
        raise TransportError('connection', str(exc))
    except (OSError, ValueError) as exc:
        raise TransportError('connection', str(exc))


def error_text(body, limit=MAX_ERROR_TEXT):
    """The error text of an answer: Prometheus's ``error`` field, else the body."""
    if isinstance(body, bytes):
        body = body.decode('utf-8', 'replace')
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get('error'):
        return str(doc['error'])[:limit]
    text = ' '.join(body.split())
    return text[:limit]


def basic_auth_header(username, password):
    token = base64.b64encode(('%s:%s' % (username, password or '')).encode('utf-8'))
    return 'Basic ' + token.decode('ascii')


class HttpGetter(object):
    """Shared connection settings: auth, TLS, timeout, transport."""

    def __init__(self, username=None, password=None, token=None, validate_certs=True,
                 ca_path=None, timeout=10.0, transport=None, headers=None):
        if token and username:
            raise ValueError('use either a bearer token or a username/password, not both')
        self.headers = {'Accept': 'application/json'}
        self.headers.update(headers or {})
        if token:
            self.headers['Authorization'] = 'Bearer ' + token
        elif username:
            self.headers['Authorization'] = basic_auth_header(username, password)
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = float(timeout)
        self.transport = transport or urllib_transport

    def request(self, method, url, data=None, headers=None):
        all_headers = dict(self.headers)
        all_headers.update(headers or {})
        try:
            return self.transport(method, url, all_headers, data, self.timeout,
                                  self.validate_certs, self.ca_path)
        except TransportError as exc:
            raise PrometheusError(exc.kind, '%s: %s' % (redact_url(url), exc.message))

    def get_json(self, url):
        """GET a JSON document; PrometheusError on any non-2xx or non-JSON answer."""
        status, body = self.request('GET', url)
        if not 200 <= status < 300:
            raise PrometheusError('http', 'HTTP %s from %s: %s' % (status, redact_url(url), error_text(body)), status)
        try:
            return json.loads(body)
        except ValueError:
            raise PrometheusError('invalid_response', 'not JSON from %s: %s' % (redact_url(url), error_text(body, 120)), status)


def redact_url(url):
    """The URL without credentials or query string, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ''
    if parts.port:
        host = '%s:%s' % (host, parts.port)
    return '%s://%s%s' % (parts.scheme, host, parts.path)


class PrometheusClient(HttpGetter):
    """Query the Prometheus HTTP API (``/api/v1/query`` and ``/api/v1/query_range``)."""

    def __init__(self, url, **kwargs):
        super().__init__(**kwargs)
        parts = urlsplit(url or '')
        if parts.scheme not in ('http', 'https') or not parts.netloc:
            raise ValueError('prometheus_url must be an http(s) URL, got %r' % (url,))
        self.base_url = url.rstrip('/')

    def _api(self, endpoint, params):
        url = '%s/api/v1/%s' % (self.base_url, endpoint)
        data = urlencode(params).encode('ascii')
        status, body = self.request('POST', url, data=data,
                                    headers={'Content-Type': 'application/x-www-form-urlencoded'})
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            if 200 <= status < 300:
                raise PrometheusError('invalid_response', 'not a Prometheus answer from %s: %s'
                                      % (redact_url(url), error_text(body, 120)), status)
            raise PrometheusError('http', 'HTTP %s from %s: %s' % (status, redact_url(url), error_text(body)), status)
        if doc.get('status') != 'success':
            raise PrometheusError(doc.get('errorType') or 'http', str(doc.get('error') or 'HTTP %s' % status)[:MAX_ERROR_TEXT], status)
        data = doc.get('data')
        if not isinstance(data, dict) or 'resultType' not in data:
            raise PrometheusError('invalid_response', 'answer without data.resultType from %s' % redact_url(url), status)
        return data

    def query(self, expr, at=None):
        """Instant query; returns Prometheus's ``data`` ({resultType, result})."""
        params = {'query': expr}
        if at is not None:
            params['time'] = '%.3f' % at
        return self._api('query', params)

    def query_range(self, expr, start, end, step):
        """Range query; returns Prometheus's ``data`` (a matrix)."""
        params = {'query': expr, 'start': '%.3f' % start, 'end': '%.3f' % end, 'step': '%gs' % step}
        return self._api('query_range', params)


def to_float(text):
    """Prometheus sample value (a string such as '0.01', 'NaN', '+Inf') to float."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def single_value(data):
    """The value of an instant query result that must be exactly one number.

    Returns ``(value, note)``: ``value`` is a float (possibly NaN or Inf, which
    the caller treats as inconclusive) or None with ``note`` saying why
    ('no data', 'ambiguous: 3 series', ...).
    """
    kind = data.get('resultType')
    result = data.get('result')
    if kind == 'scalar':
        value = to_float(result[1]) if isinstance(result, list) and len(result) == 2 else None
        return (value, '') if value is not None else (None, 'invalid scalar')
    if kind != 'vector':
        return None, 'unsupported result type %s' % kind
    if not result:
        return None, 'no data'
    if len(result) > 1:
        return None, 'ambiguous: %d series' % len(result)
    pair = result[0].get('value') or []
    value = to_float(pair[1]) if len(pair) == 2 else None
    if value is None:
        return None, 'invalid value'
    return value, ''


def range_values(data, timestamps):
    """Map each expected timestamp of a range query to ``(value, note)``.

    A step where no series has a point is 'no data'; where several do,
    'ambiguous'. Timestamps are compared at millisecond precision, as
    Prometheus returns them.
    """
    per_ts = {}
    if data.get('resultType') != 'matrix':
        return dict((ts, (None, 'unsupported result type %s' % data.get('resultType'))) for ts in timestamps)
    for series in data.get('result') or []:
        for point in series.get('values') or []:
            key = int(round(float(point[0]) * 1000))
            per_ts.setdefault(key, []).append(to_float(point[1]))
    out = {}
    for ts in timestamps:
        values = per_ts.get(int(round(ts * 1000)), [])
        if not values:
            out[ts] = (None, 'no data')
        elif len(values) > 1:
            out[ts] = (None, 'ambiguous: %d series' % len(values))
        elif values[0] is None:
            out[ts] = (None, 'invalid value')
        else:
            out[ts] = (values[0], '')
    return out


def is_finite(value):
    return value is not None and not math.isnan(value) and not math.isinf(value)


def series_values(data):
    """The values of a range query that must select exactly one series: ``(values, note)``.

    ``values`` are floats (NaN/Inf kept, the caller drops them) in time order; with no series or
    several, ``values`` is empty and ``note`` says why ('no data', 'ambiguous: 3 series').
    """
    if data.get('resultType') != 'matrix':
        return [], 'unsupported result type %s' % data.get('resultType')
    result = data.get('result') or []
    if not result:
        return [], 'no data'
    if len(result) > 1:
        return [], 'ambiguous: %d series' % len(result)
    return [to_float(point[1]) for point in result[0].get('values') or []], ''


def series_count(data):
    """How many series an instant query selected (a scalar counts as one)."""
    if data.get('resultType') == 'scalar':
        return 1
    return len(data.get('result') or [])
