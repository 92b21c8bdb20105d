"""Verify the analyzer role: both variants run, answer, and expose the runbook metrics."""
import json
import urllib.request

PORTS = {'molecule-analyzer-original': ('original', 28001),
         'molecule-analyzer-ultra-fast': ('ultra_fast', 28002)}


def _get(port, path):
    with urllib.request.urlopen(f'http://127.0.0.1:{port}{path}', timeout=10) as resp:
        return resp.status, resp.read().decode()


def _variant(host):
    return PORTS[host.backend.get_hostname()]


def test_venv_and_wheel_installed(host):
    name = host.backend.get_hostname()
    venv = host.file(f'/tmp/molecule-analyzer/analyzer/{name}/venv/bin/cohort-analyzer')
    assert venv.exists and venv.mode & 0o111


def test_process_from_pidfile_is_the_analyzer(host):
    name = host.backend.get_hostname()
    pid = host.file(f'/tmp/molecule-analyzer/analyzer/{name}/run/analyzer.pid').content_string.strip()
    cmdline = host.file(f'/proc/{int(pid)}/cmdline').content_string
    assert 'cohort-analyzer' in cmdline and 'serve' in cmdline


def test_listens_on_loopback_only(host):
    port = _variant(host)[1]
    assert host.socket(f'tcp://127.0.0.1:{port}').is_listening
    assert not host.socket(f'tcp://0.0.0.0:{port}').is_listening


def test_ready_and_metrics_labelled_by_variant(host):
    variant, port = _variant(host)
    status, _body = _get(port, '/readyz')
    assert status == 200
    metrics = _get(port, '/metrics')[1]
    for name in ('cohort_discovery_requests_total', 'cohort_discovery_latency_ms_bucket',
                 'cache_hits_total', 'process_resident_memory_bytes'):
        assert f'{name}{{' in metrics
    assert f'variant="{variant}"' in metrics


def test_discover_answers(host):
    port = _variant(host)[1]
    req = urllib.request.Request(f'http://127.0.0.1:{port}/v1/cohorts/discover',
                                 data=json.dumps({'learner_ids': [1, 2, 3, 4, 5]}).encode(),
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = json.loads(resp.read())
    assert sum(c['size'] for c in body['cohorts']) == 5
