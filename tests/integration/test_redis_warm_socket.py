"""The one private detail of redis-py the cache warm-up relies on, checked against a real Redis.

plugins/module_utils/redis_warm.py streams its pipelined batches over the socket of a redis-py connection
(``Connection._sock``). These tests start a redis-server on a free port of 127.0.0.1 (password in its
config file, not argv) and check, with the redis-py installed here (requirements.txt pins it; the analyzer
package and the EE accept redis>=5.0,<9):

* the attribute is there and is the live socket of the connection (a PING sent through redis-py is answered
  on it), so an upgrade of redis-py that moves it fails this test, not a production warm-up;
* when it is not there, the warm-up stops with a clear message naming the attribute and the tested range,
  writes nothing, and leaves the client usable;
* the pins in the analyzer package and the EE requirements say the same range, and the installed redis-py
  lies in it.
"""
from __future__ import annotations

import pathlib
import re
import shutil
import socket
import subprocess
import time

import pytest
import redis
from packaging.requirements import Requirement
from packaging.version import Version

from ansible_collections.cohort.rollout.plugins.module_utils import redis_warm

ROOT = pathlib.Path(__file__).resolve().parents[2]
PASSWORD = 'socket-test-redis-not-secret'


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    binary = shutil.which('redis-server')
    assert binary, 'redis-server is not installed (make setup installs it)'
    tmp = tmp_path_factory.mktemp('redis-socket')
    port = _free_port()
    conf = tmp / 'redis.conf'
    conf.write_text('port %d\nbind 127.0.0.1\nsave ""\nappendonly no\ndir %s\nrequirepass "%s"\n' % (port, tmp, PASSWORD))
    conf.chmod(0o600)
    proc = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, 'redis-server exited with %s' % proc.returncode
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, 'redis-server did not listen on %d' % port
            time.sleep(0.05)
    yield 'redis://127.0.0.1:%d/0' % port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def client(server):
    client = redis_warm.connect(redis, server, PASSWORD, timeout=5)
    client.flushall()
    yield client
    client.close()


def test_installed_redis_py_keeps_the_live_socket_where_the_warm_up_reads_it(client):
    conn = client.connection_pool.get_connection()
    try:
        conn.connect()
        sock = redis_warm.raw_socket(conn, redis)
        assert isinstance(sock, socket.socket)
        conn.send_packed_command([b'*1\r\n$4\r\nPING\r\n'], check_health=False)
        assert sock.recv(64) == b'+PONG\r\n'
    finally:
        client.connection_pool.release(conn)


def test_warm_up_writes_through_that_socket(client, server):
    warmer = redis_warm.Warmer(client, redis, server, ttl=60, batch_size=3)
    entries = [('cohort-test:%d' % i, b'value-%d' % i) for i in range(10)]
    stats = warmer.write(iter(entries))
    assert stats['keys_written'] == 10
    assert client.get('cohort-test:7') == b'value-7' and 0 < client.ttl('cohort-test:7') <= 60


def test_without_the_attribute_the_warm_up_stops_with_a_clear_message(client, server, monkeypatch):
    # What a redis-py that moved its socket elsewhere looks like to this code.
    monkeypatch.setattr(redis_warm, 'SOCKET_ATTRIBUTE', '_socket_moved_in_a_future_redis_py')
    warmer = redis_warm.Warmer(client, redis, server, ttl=60, batch_size=3)
    with pytest.raises(redis_warm.WarmError) as info:
        warmer.write(iter([('cohort-test:1', b'x')]))
    message = str(info.value)
    assert "'_socket_moved_in_a_future_redis_py'" in message and redis_warm.REDIS_PY_RANGE in message
    assert redis.__version__ in message and 'Nothing was written' in message
    assert warmer.stats()['keys_written'] == 0 and client.dbsize() == 0
    with pytest.raises(redis_warm.WarmError):
        list(warmer.stale_sets([[1, 2]], lambda ids: 'cohort-test:%s' % ids))
    # the borrowed connection went back to the pool: the client still works
    assert client.ping() is True


def test_pins_agree_and_hold_the_installed_redis_py():
    pyproject = (ROOT / 'apps' / 'cohort_analyzer' / 'pyproject.toml').read_text()
    analyzer = [Requirement(r) for r in re.findall(r'"(redis[^"]*)"', pyproject)]
    ee = [Requirement(line) for line in (ROOT / 'meta' / 'ee-requirements.txt').read_text().splitlines()
          if line.startswith('redis')]
    assert len(analyzer) == 1 and len(ee) == 1
    assert analyzer[0].specifier == ee[0].specifier
    assert analyzer[0].specifier == Requirement(redis_warm.REDIS_PY_RANGE).specifier
    # the exact version the analyzer role installs on hosts (its wheelhouse lock) lies in the range too
    lock = re.search(r'^redis==(\S+)$', (ROOT / 'apps' / 'cohort_analyzer' / 'requirements.lock').read_text(), re.M)
    assert lock and analyzer[0].specifier.contains(Version(lock.group(1))), lock
    installed = Version(redis.__version__)
    assert analyzer[0].specifier.contains(installed), (installed, analyzer[0].specifier)
    # an upper bound: a major redis-py release must be tested before it is allowed
    assert any(spec.operator == '<' for spec in analyzer[0].specifier)
