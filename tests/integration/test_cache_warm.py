"""cohort.rollout.cache_warm through ansible against a real redis-server (and a real analyzer for hits).

Servers on 286xx, started here from a conf file (the password is in the file, not argv) and stopped by
their Popen handles.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
PASSWORD = 'integration-redis-not-secret'
PORT, OOM_PORT, DOWN_PORT, ANALYZER_PORT = 28620, 28621, 28622, 28630
N_LEARNERS = 2000

# make setup installs cohort-analyzer into the venv: its absence is a broken setup, a failure, not a skip.
from cohort_analyzer import cache  # noqa: E402


def _wait_port(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError('server on %d exited with %s' % (port, proc.returncode))
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError('nothing listens on %d after %ss' % (port, timeout))


def _start_redis(tmp, port, extra=''):
    conf = tmp / ('redis-%d.conf' % port)
    conf.write_text('port %d\nbind 127.0.0.1\nsave ""\nappendonly no\ndir %s\nrequirepass "%s"\n%s\n'
                    % (port, tmp, PASSWORD, extra))
    conf.chmod(0o600)
    proc = subprocess.Popen([shutil.which('redis-server'), str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_port(port, proc)
    return proc


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp('cache_warm')


@pytest.fixture(scope='module')
def db(workdir):
    from cohort_analyzer.repository import ensure_database
    path = str(workdir / 'learners.db')
    ensure_database(path, N_LEARNERS)
    return path


@pytest.fixture(scope='module')
def redis_server(workdir):
    proc = _start_redis(workdir, PORT)
    yield redis.Redis(host='127.0.0.1', port=PORT, password=PASSWORD)
    _stop(proc)


@pytest.fixture
def r(redis_server):
    redis_server.flushall()
    return redis_server


def run_module(args, check=False):
    """Run the module as an ad-hoc ansible task on localhost; return its result dict."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.posix.json', PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    cmd = [os.path.join(BIN, 'ansible'), 'localhost', '-m', 'cohort.rollout.cache_warm', '-a', json.dumps(args)]
    if check:
        cmd.append('--check')
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = json.loads(proc.stdout)
    return out['plays'][0]['tasks'][0]['hosts']['localhost']


def args_for(db, **extra):
    args = dict(redis_url='redis://127.0.0.1:%d/0' % PORT, redis_password=PASSWORD, db=db, n_learners=N_LEARNERS,
                pool_size=40, min_set_size=5, max_set_size=60, ttl=600, batch_size=16)
    args.update(extra)
    return args


def warmed_keys(client):
    return list(client.scan_iter(match=cache.KEY_PREFIX + '*', count=1000))


def test_warm_writes_every_key_with_a_ttl_then_skips_then_force(r, db):
    from cohort_analyzer import loadpattern
    sets = loadpattern.learner_sets(pool_size=40, n_learners=N_LEARNERS, min_size=5, max_size=60)
    expected = {cache.cache_key(s).encode() for s in sets}

    first = run_module(args_for(db))
    assert first.get('failed') is not True, first
    assert first['changed'] is True and first['keys_written'] == len(expected) and first['keys_skipped'] == 0
    keys = warmed_keys(r)
    assert set(keys) == expected
    ttls = [r.ttl(k) for k in keys]
    assert all(0 < t <= 600 for t in ttls), ttls
    assert first['bytes'] == sum(len(r.get(k)) for k in keys)
    assert all(isinstance(cache.decode_result(r.get(k)), list) for k in keys)

    second = run_module(args_for(db))
    assert second['changed'] is False and second['keys_written'] == 0 and second['keys_skipped'] == len(expected)

    r.expire(keys[0], 10)  # about to expire: below fresh_ttl (300), so rewritten
    r.persist(keys[1])     # no TTL: rewritten so that it gets one
    third = run_module(args_for(db))
    assert third['keys_written'] == 2 and third['keys_skipped'] == len(expected) - 2
    assert r.ttl(keys[0]) > 300 and r.ttl(keys[1]) > 300

    forced = run_module(args_for(db, force=True, ttl=1200))
    assert forced['changed'] is True and forced['keys_written'] == len(expected)
    assert all(600 < r.ttl(k) <= 1200 for k in warmed_keys(r))


def test_check_mode_counts_and_writes_nothing(r, db):
    result = run_module(args_for(db), check=True)
    assert result.get('failed') is not True, result
    assert result['changed'] is True and result['keys_written'] == 40 and result['bytes'] > 0
    assert r.dbsize() == 0


def test_list_and_file_sources(r, db, workdir):
    result = run_module(args_for(db, source='list', learner_sets=[[1, 2, 3], [3, 2, 1], [10, 20]], pool_size=None,
                                 n_learners=None, min_set_size=None, max_set_size=None))
    assert result['keys_written'] == 2 and result['keys_skipped'] == 1  # [3,2,1] is the same set as [1,2,3]
    assert r.exists(cache.cache_key([1, 2, 3]), cache.cache_key([10, 20])) == 2
    path = workdir / 'sets.jsonl'
    path.write_text(''.join(json.dumps([i, i + 1, i + 2]) + '\n' for i in range(1, 101)))
    result = run_module(dict(redis_url='redis://127.0.0.1:%d/0' % PORT, redis_password=PASSWORD, db=db,
                             source='file', path=str(path), batch_size=7))
    # [1, 2, 3] is in the file too; its key (TTL <= 600) is below this run's fresh_ttl (1800): rewritten
    assert result['keys_written'] == 100 and result['keys_skipped'] == 0
    assert len(warmed_keys(r)) == 101
    path.write_text('[1, 2]\n[3, 4]\n[5, "x"]\n')
    r.flushall()
    bad = run_module(dict(redis_url='redis://127.0.0.1:%d/0' % PORT, redis_password=PASSWORD, db=db,
                          source='file', path=str(path)))
    assert bad['failed'] is True and 'line 3' in bad['msg'] and r.dbsize() == 0


def test_wrong_password_is_an_authentication_error(r, db):
    result = run_module(args_for(db, redis_password='wrong-password'))
    assert result['failed'] is True
    assert 'authentication failed' in result['msg'] and 'redis_password' in result['msg']
    assert 'wrong-password' not in json.dumps(result)
    assert r.dbsize() == 0
    nopass = run_module(args_for(db, redis_password=None))
    assert nopass['failed'] is True and 'requires a password' in nopass['msg']


def test_redis_down_is_a_clear_error(db):
    result = run_module(args_for(db, redis_url='redis://127.0.0.1:%d/0' % DOWN_PORT, timeout=2))
    assert result['failed'] is True
    assert 'cannot reach Redis at 127.0.0.1:%d db 0' % DOWN_PORT in result['msg']
    assert result['keys_written'] == 0


@pytest.mark.parametrize('bad', [dict(ttl=0), dict(ttl=-10), dict(batch_size=0), dict(batch_size=-1)])
def test_bad_ttl_or_batch_refused_before_writing(r, db, bad):
    result = run_module(args_for(db, **bad))
    assert result['failed'] is True and ('ttl must be' in result['msg'] or 'batch_size must be' in result['msg'])
    assert r.dbsize() == 0


def test_missing_db_fails_before_writing(r, workdir):
    result = run_module(args_for(str(workdir / 'nope.db')))
    assert result['failed'] is True and 'does not exist' in result['msg'] and r.dbsize() == 0


def test_partial_warm_up_is_a_failure_with_counts(workdir, db):
    """Redis refuses writes half way (maxmemory reached, noeviction): failed, with what was written."""
    proc = _start_redis(workdir, OOM_PORT, 'maxmemory 2mb\nmaxmemory-policy noeviction')
    try:
        client = redis.Redis(host='127.0.0.1', port=OOM_PORT, password=PASSWORD)
        result = run_module(args_for(db, redis_url='redis://127.0.0.1:%d/0' % OOM_PORT, pool_size=400,
                                     min_set_size=100, max_set_size=200))
        assert result['failed'] is True, result
        assert "used memory > 'maxmemory'" in result['msg']
        assert 0 < result['keys_written'] < 400
        assert result['keys_written'] == len(warmed_keys(client))
        assert result['changed'] is True
    finally:
        _stop(proc)


def _metric(port, name):
    body = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=10).read().decode()
    match = re.search(r'^%s\{[^}]*variant="ultra_fast"[^}]*\} ([0-9.e+]+)$' % name, body, re.M)
    return float(match.group(1)) if match else 0.0


def test_analyzer_reads_warmed_keys_as_hits(r, db, workdir):
    from cohort_analyzer import loadpattern
    result = run_module(args_for(db))
    assert result['keys_written'] == 40
    log = open(workdir / 'analyzer.log', 'wb')
    env = dict(os.environ, COHORT_REDIS_PASSWORD=PASSWORD)
    proc = subprocess.Popen([os.path.join(BIN, 'cohort-analyzer'), 'serve', '--variant', 'ultra_fast', '--host',
                             '127.0.0.1', '--port', str(ANALYZER_PORT), '--db', db, '--learners', str(N_LEARNERS),
                             '--redis-url', 'redis://127.0.0.1:%d/0' % PORT], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        _wait_port(ANALYZER_PORT, proc, timeout=60)
        hits, misses = _metric(ANALYZER_PORT, 'cache_hits_total'), _metric(ANALYZER_PORT, 'cache_misses_total')
        learner_set = loadpattern.learner_sets(pool_size=40, n_learners=N_LEARNERS, min_size=5, max_size=60)[3]
        request = urllib.request.Request(
            'http://127.0.0.1:%d/v1/cohorts/discover' % ANALYZER_PORT, method='POST',
            data=json.dumps({'learner_ids': learner_set}).encode(), headers={'Content-Type': 'application/json'})
        body = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert body
        assert _metric(ANALYZER_PORT, 'cache_hits_total') == hits + 1
        assert _metric(ANALYZER_PORT, 'cache_misses_total') == misses
        # and the cached answer is the analyzer's own answer for that set
        warmed = cache.decode_result(r.get(cache.cache_key(learner_set)))
        assert json.dumps(warmed, sort_keys=True) in json.dumps(body, sort_keys=True)
    finally:
        _stop(proc)
        log.close()
