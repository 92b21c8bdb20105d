"""A real, throw-away Prometheus (the Debian binary) scraping a tiny exporter whose gauges we set.

Used by tests/integration/test_metric_gate*.py and bench/gate_bench.py. Everything binds to
127.0.0.1; Prometheus is stopped by its Popen handle, never by pattern.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

PROMETHEUS_BIN = shutil.which('prometheus') or '/usr/bin/prometheus'


class Exporter(object):
    """prometheus_client HTTP server on 127.0.0.1:port with gauges the caller controls."""

    def __init__(self, port):
        self.port = port
        self.registry = CollectorRegistry()
        self.error_rate = Gauge('gate_itest_error_rate', 'error rate under test', registry=self.registry)
        self.latency_p99 = Gauge('gate_itest_latency_p99_ms', 'p99 under test', registry=self.registry)
        self.cache_hit = Gauge('gate_itest_cache_hit_rate', 'cache hit rate under test', registry=self.registry)
        self.memory = Gauge('gate_itest_memory_bytes', 'memory under test', registry=self.registry)
        self.multi = Gauge('gate_itest_multi', 'two series: ambiguous', ['i'], registry=self.registry)
        self.requests = Counter('gate_itest_requests', 'requests under test', registry=self.registry)
        self.error_rate.set(0.001)
        self.latency_p99.set(120)
        self.cache_hit.set(0.9)
        self.memory.set(512 * 1024 * 1024)
        self.multi.labels(i='a').set(1)
        self.multi.labels(i='b').set(2)
        self.server, self.thread = start_http_server(port, addr='127.0.0.1', registry=self.registry)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: gate_itest
    static_configs:
      - targets: ['127.0.0.1:{exporter_port}']
"""


class Prometheus(object):
    """prometheus on 127.0.0.1:port with a temp storage dir, scraping the exporter every second."""

    def __init__(self, port, exporter_port):
        self.port = port
        self.url = 'http://127.0.0.1:%d' % port
        self.dir = tempfile.mkdtemp(prefix='gate-prom-%d-' % port)
        self.config = os.path.join(self.dir, 'prometheus.yml')
        with open(self.config, 'w') as handle:
            handle.write(CONFIG.format(exporter_port=exporter_port))
        self.log = open(os.path.join(self.dir, 'prometheus.log'), 'wb')
        self.proc = subprocess.Popen(
            [PROMETHEUS_BIN, '--config.file=' + self.config, '--storage.tsdb.path=' + os.path.join(self.dir, 'data'),
             '--web.listen-address=127.0.0.1:%d' % port, '--log.level=warn',
             '--storage.tsdb.retention.time=1h'],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('prometheus exited: %s' % self.logtext())
            try:
                with urllib.request.urlopen(self.url + '/-/ready', timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError('prometheus not ready after %ss: %s' % (timeout, self.logtext()))

    def logtext(self):
        self.log.flush()
        with open(os.path.join(self.dir, 'prometheus.log'), 'rb') as handle:
            return handle.read().decode('utf-8', 'replace')[-2000:]

    def query(self, expr):
        """Value of a one-series instant query, or None."""
        url = self.url + '/api/v1/query?' + urllib.parse.urlencode({'query': expr})
        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.loads(resp.read())['data']['result']
        return float(data[0]['value'][1]) if len(data) == 1 else None

    def wait_value(self, expr, predicate, timeout=20):
        """Poll until the query's value satisfies predicate; return (value, epoch when seen)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = self.query(expr)
            except OSError:
                value = None
            if value is not None and predicate(value):
                return value, time.time()
            time.sleep(0.1)
        raise AssertionError('%s did not reach the expected value within %ss' % (expr, timeout))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
