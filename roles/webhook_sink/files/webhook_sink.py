# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A sandbox webhook receiver: every POST body is appended as one JSON line to a file.

Stands in for Slack / a pager in the sandbox and in tests. Stdlib only.
Usage: webhook_sink.py --listen 127.0.0.1 --port 19095 --out notifications.jsonl
Each line: {"received_at": <epoch>, "path": "/rollout", "body": <the JSON posted, or the text>}.
"""
import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    out = None

    def do_POST(self):  # noqa: N802 (http.server naming)
        length = int(self.headers.get('Content-Length') or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        raw = self.rfile.read(length).decode('utf-8', 'replace')
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        line = json.dumps({'received_at': time.time(), 'path': self.path, 'body': body}, sort_keys=True)
        with LOCK, open(self.out, 'a', encoding='utf-8') as handle:
            handle.write(line + '\n')
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def do_GET(self):  # noqa: N802
        if self.path != '/healthz':
            self.send_error(404)
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'ok\n')

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--listen', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=19095)
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    Handler.out = args.out
    server = ThreadingHTTPServer((args.listen, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    sys.stdout.write('webhook sink on %s:%d -> %s\n' % (args.listen, args.port, args.out))
    sys.stdout.flush()
    server.serve_forever()


if __name__ == '__main__':
    main()
