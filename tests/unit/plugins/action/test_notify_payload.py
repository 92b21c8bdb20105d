"""Unit tests of the notification payload and of the sandbox webhook receiver (real loopback HTTP, port 28790)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

from ansible_collections.cohort.rollout.plugins.action.notify import ACTIONS, build_payload

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SINK = os.path.join(ROOT, 'roles', 'webhook_sink', 'files', 'webhook_sink.py')
PORT = 28790


def test_payload_is_slack_shaped_with_the_event():
    params = dict(event='rollback', phase='canary', text='gate error_rate tripped', error_rate=0.05,
                  details={'reason': 'x'})
    payload = build_payload(params, 'critical', 'error rate 0.05 > 1%', now=1795701725)
    assert payload['text'].startswith('[CRITICAL] cohort rollout canary:')
    attachment = payload['attachments'][0]
    assert attachment['color'] == '#a30200' and attachment['ts'] == 1795701725
    titles = [f['title'] for f in attachment['fields']]
    assert titles == ['Phase', 'Event', 'Level', 'Error rate', 'Escalation']
    event = payload['cohort_rollout']
    assert event['level'] == 'critical' and event['action'] == ACTIONS['critical'] and event['error_rate'] == 0.05
    assert event['at'] == '2026-11-26T14:02:05.000Z' and event['details'] == {'reason': 'x'}
    json.dumps(payload)  # strict JSON


def test_sink_appends_every_post(tmp_path):
    out = tmp_path / 'n.jsonl'
    proc = subprocess.Popen([sys.executable, SINK, '--port', str(PORT), '--out', str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _attempt in range(50):
            try:
                urllib.request.urlopen('http://127.0.0.1:%d/healthz' % PORT, timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        for body in (b'{"a": 1}', b'not json'):
            req = urllib.request.Request('http://127.0.0.1:%d/rollout' % PORT, data=body, method='POST')
            assert urllib.request.urlopen(req, timeout=5).status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line['body'] for line in lines] == [{'a': 1}, 'not json']
    assert all(line['path'] == '/rollout' for line in lines)
