"""module_utils/http_json: the one JSON request of the weights API and guard clients, against a real local server."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import http_json

ANSWERS = {
    '/ok': (200, b'{"changed": true}'),
    '/refused': (409, b'{"error": "generation 3 is fenced off"}'),
    '/broken': (500, b'<html>oops</html>'),
    '/text': (200, b'not json at all'),
}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, body):
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        status, data = ANSWERS[self.path]
        self.send_response(status)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._answer(None)

    def do_POST(self):  # noqa: N802
        self._answer(json.loads(self.rfile.read(int(self.headers['Content-Length']))))


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    srv.seen = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, 'http://127.0.0.1:%d' % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_post_with_token_and_headers(server):
    srv, url = server
    assert http_json.request(url + '/ok', {'a': 1}, token='s3cret', headers={'X-Rollout-Generation': '4'}) == \
        {'changed': True}
    method, path, headers, body = srv.seen[0]
    assert (method, path, body) == ('POST', '/ok', {'a': 1})
    assert headers['Authorization'] == 'Bearer s3cret' and headers['X-Rollout-Generation'] == '4'
    assert headers['Content-Type'] == 'application/json'


def test_get_without_body_or_token(server):
    srv, url = server
    http_json.request(url + '/ok')
    method, _path, headers, _body = srv.seen[0]
    assert method == 'GET' and 'Authorization' not in headers


def test_refused_carries_the_status_and_the_json_error(server):
    _srv, url = server
    with pytest.raises(http_json.Refused) as err:
        http_json.request(url + '/refused', {})
    assert err.value.status == 409 and err.value.detail == 'generation 3 is fenced off'


def test_refused_without_json_keeps_the_text(server):
    _srv, url = server
    with pytest.raises(http_json.Refused) as err:
        http_json.request(url + '/broken')
    assert err.value.status == 500 and '<html>oops</html>' in err.value.detail


def test_an_answer_that_is_not_json(server):
    _srv, url = server
    with pytest.raises(http_json.NotJSON) as err:
        http_json.request(url + '/text')
    assert err.value.raw == b'not json at all'


def test_unreachable():
    with pytest.raises(http_json.Unreachable):
        http_json.request('http://127.0.0.1:9/ok', timeout=2)
