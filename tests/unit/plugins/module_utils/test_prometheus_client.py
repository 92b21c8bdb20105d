"""The Prometheus client (module_utils/prometheus.py) against a fake transport."""

import base64
import json
import math
import socket
from urllib.parse import parse_qs

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import prometheus as prom


class FakeTransport(object):
    """Answers by query expression; records every request."""

    def __init__(self, answers):
        self.answers = answers
        self.requests = []

    def __call__(self, method, url, headers, data, timeout, validate_certs, ca_path):
        form = parse_qs(data.decode()) if data else {}
        self.requests.append(dict(method=method, url=url, headers=headers, form=form, timeout=timeout,
                                  validate_certs=validate_certs, ca_path=ca_path))
        answer = self.answers(url, form) if callable(self.answers) else self.answers
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return status, body if isinstance(body, bytes) else json.dumps(body).encode()


def vector(*values):
    return {'status': 'success', 'data': {'resultType': 'vector', 'result': [
        {'metric': {'i': str(i)}, 'value': [1800000000.0, v]} for i, v in enumerate(values)]}}


def client(answers, **kw):
    fake = FakeTransport(answers)
    return prom.PrometheusClient('http://127.0.0.1:28499/prom/', transport=fake, timeout=3, **kw), fake


def test_instant_query_posts_form_to_api():
    c, fake = client((200, vector('0.25')))
    data = c.query('rate(x[1m])', at=1800000000)
    assert prom.single_value(data) == (0.25, '')
    req = fake.requests[0]
    assert req['method'] == 'POST' and req['url'] == 'http://127.0.0.1:28499/prom/api/v1/query'
    assert req['form'] == {'query': ['rate(x[1m])'], 'time': ['1800000000.000']}
    assert req['timeout'] == 3 and req['validate_certs'] is True
    assert 'Authorization' not in req['headers']


def test_range_query_params():
    c, fake = client((200, {'status': 'success', 'data': {'resultType': 'matrix', 'result': []}}))
    c.query_range('up', 100, 160, 10)
    assert fake.requests[0]['url'].endswith('/api/v1/query_range')
    assert fake.requests[0]['form'] == {'query': ['up'], 'start': ['100.000'], 'end': ['160.000'], 'step': ['10s']}


def test_basic_and_bearer_auth_and_tls_options():
    c, fake = client((200, vector('1')), username='u', password='p', validate_certs=False, ca_path='/ca.pem')
    c.query('up')
    auth = fake.requests[0]['headers']['Authorization']
    assert auth == 'Basic ' + base64.b64encode(b'u:p').decode()
    assert fake.requests[0]['validate_certs'] is False and fake.requests[0]['ca_path'] == '/ca.pem'
    c, fake = client((200, vector('1')), token='s3cret')
    c.query('up')
    assert fake.requests[0]['headers']['Authorization'] == 'Bearer s3cret'
    with pytest.raises(ValueError):
        prom.PrometheusClient('http://x', token='t', username='u')


@pytest.mark.parametrize('url', ['', '127.0.0.1:9090', 'ftp://x', None])
def test_bad_url(url):
    with pytest.raises(ValueError):
        prom.PrometheusClient(url)


def test_bad_data_error_text_is_prometheus_own():
    text = '1:6: parse error: unexpected right parenthesis \')\''
    c, unused_1 = client((400, {'status': 'error', 'errorType': 'bad_data', 'error': text}))
    with pytest.raises(prom.PrometheusError) as err:
        c.query('rate(x))')
    assert err.value.error_type == 'bad_data' and err.value.is_bad_query
    assert err.value.message == text and err.value.status == 400


def test_http_error_without_json():
    c, unused_1 = client((503, b'<html>Service   Unavailable</html>'))
    with pytest.raises(prom.PrometheusError) as err:
        c.query('up')
    assert err.value.error_type == 'http' and err.value.status == 503
    assert 'Service Unavailable' in err.value.message and err.value.short() == 'HTTP 503'


def test_200_but_not_json():
    c, unused_1 = client((200, b'hello'))
    with pytest.raises(prom.PrometheusError) as err:
        c.query('up')
    assert err.value.error_type == 'invalid_response'


@pytest.mark.parametrize('kind', ['timeout', 'connection', 'tls'])
def test_transport_errors_become_prometheus_errors(kind):
    c, unused_1 = client(prom.TransportError(kind, 'boom'))
    with pytest.raises(prom.PrometheusError) as err:
        c.query('up')
    assert err.value.error_type == kind and err.value.short() == kind
    assert 'boom' in err.value.message


def test_real_urllib_transport_connection_refused():
    # a closed port on loopback: a real refused connection through open_url
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    c = prom.PrometheusClient('http://127.0.0.1:%d' % port, timeout=2)
    with pytest.raises(prom.PrometheusError) as err:
        c.query('up')
    assert err.value.error_type == 'connection'


def test_real_urllib_transport_timeout():
    # a listening socket that never answers: the request times out
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    try:
        c = prom.PrometheusClient('http://127.0.0.1:%d' % server.getsockname()[1], timeout=0.3)
        with pytest.raises(prom.PrometheusError) as err:
            c.query('up')
        assert err.value.error_type == 'timeout'
    finally:
        server.close()


def test_single_value_rules():
    assert prom.single_value(vector('0.5')['data']) == (0.5, '')
    assert prom.single_value(vector()['data']) == (None, 'no data')
    assert prom.single_value(vector('1', '2')['data']) == (None, 'ambiguous: 2 series')
    assert math.isnan(prom.single_value(vector('NaN')['data'])[0])
    assert prom.single_value(vector('+Inf')['data'])[0] == float('inf')
    assert prom.single_value({'resultType': 'scalar', 'result': [1, '3']}) == (3.0, '')
    assert prom.single_value({'resultType': 'matrix', 'result': []})[0] is None
    assert prom.single_value({'resultType': 'vector', 'result': [{'value': [1, 'abc']}]}) == (None, 'invalid value')


def test_range_values_per_step():
    data = {'resultType': 'matrix', 'result': [
        {'metric': {'a': '1'}, 'values': [[100, '0.1'], [110, '0.2'], [130, 'NaN']]},
        {'metric': {'a': '2'}, 'values': [[110, '0.3']]},
    ]}
    out = prom.range_values(data, [100, 110, 120, 130])
    assert out[100] == (0.1, '')
    assert out[110] == (None, 'ambiguous: 2 series')
    assert out[120] == (None, 'no data')
    assert math.isnan(out[130][0])


def test_get_json_and_errors():
    g = prom.HttpGetter(token='t', headers={'X-A': 'b'}, transport=FakeTransport((200, {'errorRate': 0.01})))
    assert g.get_json('http://127.0.0.1:1/metrics') == {'errorRate': 0.01}
    assert g.transport.requests[0]['headers']['Authorization'] == 'Bearer t'
    assert g.transport.requests[0]['headers']['X-A'] == 'b'
    g = prom.HttpGetter(transport=FakeTransport((401, b'{"error": "bad token"}')))
    with pytest.raises(prom.PrometheusError) as err:
        g.get_json('http://user:pw@127.0.0.1:1/metrics?x=1')
    assert 'HTTP 401' in err.value.message and 'bad token' in err.value.message
    assert 'pw' not in err.value.message and 'x=1' not in err.value.message


@pytest.fixture
def https_prometheus(tmp_path):
    """A loopback HTTPS server with a self-signed certificate for 127.0.0.1 answering like Prometheus."""
    import http.server
    import shutil
    import ssl
    import subprocess
    import threading
    if not shutil.which('openssl'):
        pytest.fail('openssl is needed to make a test certificate')
    cert, key = str(tmp_path / 'cert.pem'), str(tmp_path / 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
                    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
                   check=True, capture_output=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get('Content-Length', 0)))
            body = json.dumps(vector('7')).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(('127.0.0.1', 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'https://127.0.0.1:%d' % server.server_address[1], cert
    finally:
        server.shutdown()
        server.server_close()


def test_tls_verified_by_default(https_prometheus):
    url, cert = https_prometheus
    with pytest.raises(prom.PrometheusError) as err:
        prom.PrometheusClient(url, timeout=5).query('up')
    assert err.value.error_type == 'tls'
    assert prom.single_value(prom.PrometheusClient(url, timeout=5, ca_path=cert).query('up')) == (7.0, '')
    assert prom.single_value(prom.PrometheusClient(url, timeout=5, validate_certs=False).query('up')) == (7.0, '')
