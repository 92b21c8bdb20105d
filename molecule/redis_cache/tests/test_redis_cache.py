"""The redis_cache role on a fleet host: the role's unit as the redis user, Debian's own
redis-server masked, bound to the host's address only, password required and only in a 0600 file."""
import pytest
import redis

testinfra_hosts = ['ansible://redis-1']

BASE = '/var/lib/redis-cache'
PORT = 6379
PASSWORD = 'molecule-redis-not-secret'


@pytest.fixture()
def client(address):
    """A Redis client on the controller (the analyzers' view over the network). The password never
    goes through the host's shell: a sudo command line would put it in the journal."""
    def connect(password=PASSWORD):
        return redis.Redis(host=address, port=PORT, password=password, socket_timeout=5)
    return connect


def test_unit_active_enabled_as_redis(unit, uid_of, host):
    state = unit('redis-cache')
    assert (state['ActiveState'], state['UnitFileState'], state['User']) == ('active', 'enabled', 'redis')
    assert 'Uid:\t%d\t' % uid_of('redis') in host.file('/proc/%s/status' % state['MainPID']).content_string


def test_packaged_unit_masked_and_inactive(unit):
    state = unit('redis-server')
    assert (state['UnitFileState'], state['ActiveState']) == ('masked', 'inactive')


def test_listens_only_on_the_host_address(listeners, address, process_tree):
    pids = process_tree('redis-cache')
    assert [(s['address'], s['port']) for s in listeners if s['pid'] in pids] == [(address, PORT)]
    assert {s['address'] for s in listeners} == {address}, listeners


def test_config_private_and_password_not_in_argv(host, unit):
    conf = host.file(BASE + '/redis.conf')
    assert (conf.user, conf.group, conf.mode) == ('redis', 'redis', 0o600)
    assert 'requirepass' in conf.content_string
    cmdline = host.file('/proc/%s/cmdline' % unit('redis-cache')['MainPID']).content_string
    assert PASSWORD not in cmdline and BASE + '/redis.conf' in cmdline
    for path in ('', '/data', '/log', '/run'):
        assert host.file(BASE + path).mode == 0o750, path


def test_password_required(client):
    with pytest.raises(redis.AuthenticationError):
        client(password=None).ping()
    with pytest.raises(redis.AuthenticationError):
        client(password='wrong-password').ping()
    assert client().ping()


def test_settings_applied(client, address):
    config = client().config_get('*')
    assert config['maxmemory'] == str(64 * 1024 * 1024)
    assert config['maxmemory-policy'] == 'allkeys-lru'
    assert config['dir'] == BASE + '/data'
    assert config['save'] == '3600 1 300 100 60 10000'
    assert config['bind'] == address
    assert config['protected-mode'] == 'yes'


def test_secret_absent_from_journal_and_log(absent_from_logs):
    # logfile "": under systemd Redis logs to the journal only.
    absent_from_logs([PASSWORD])
