"""Verify the redis_cache role: Redis on loopback, password required, not in argv, bounded memory."""
import stat

import pytest
import redis

BASE = '/tmp/molecule-redis_cache/redis_cache'
PORT = 28610
PASSWORD = 'molecule-redis-not-secret'


def _pid(host):
    return int(host.file(f'{BASE}/run/redis.pid').content_string.strip())


def test_process_from_pidfile_is_redis_on_our_config(host):
    argv = host.file(f'/proc/{_pid(host)}/cmdline').content_string.split('\0')
    assert argv[0].endswith('redis-server') or argv[0].startswith('/usr/bin/redis-server')
    assert f'{BASE}/redis.conf' in argv


def test_password_not_in_argv(host):
    cmdline = host.file(f'/proc/{_pid(host)}/cmdline').content_string
    assert PASSWORD not in cmdline


def test_config_file_is_private(host):
    conf = host.file(f'{BASE}/redis.conf')
    assert conf.exists
    assert stat.S_IMODE(conf.mode) == 0o600
    assert 'requirepass' in conf.content_string


def test_listens_on_loopback_only(host):
    assert host.socket(f'tcp://127.0.0.1:{PORT}').is_listening
    assert not host.socket(f'tcp://0.0.0.0:{PORT}').is_listening


def test_password_required():
    client = redis.Redis(host='127.0.0.1', port=PORT, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        client.ping()
    wrong = redis.Redis(host='127.0.0.1', port=PORT, password='wrong', socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()


def test_settings_applied():
    client = redis.Redis(host='127.0.0.1', port=PORT, password=PASSWORD, socket_timeout=5)
    assert client.ping()
    config = client.config_get('*')
    assert config['maxmemory'] == str(64 * 1024 * 1024)
    assert config['maxmemory-policy'] == 'allkeys-lru'
    assert config['dir'] == f'{BASE}/data'
    assert config['save'] == '3600 1 300 100 60 10000'
    assert config['appendonly'] == 'no'
