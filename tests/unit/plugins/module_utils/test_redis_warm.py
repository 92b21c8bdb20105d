"""Unit tests of the warm-up core against a fake Redis that parses the RESP we send."""
from __future__ import annotations

import pytest
import redis

from ansible_collections.cohort.rollout.plugins.module_utils import redis_warm as rw


def parse_resp(data):
    """Commands (lists of bytes) from a RESP byte string."""
    commands, pos = [], 0
    while pos < len(data):
        assert data[pos:pos + 1] == b'*'
        end = data.index(b'\r\n', pos)
        count, pos = int(data[pos + 1:end]), end + 2
        args = []
        for _index in range(count):
            assert data[pos:pos + 1] == b'$'
            end = data.index(b'\r\n', pos)
            size, pos = int(data[pos + 1:end]), end + 2
            args.append(data[pos:pos + size])
            assert data[pos + size:pos + size + 2] == b'\r\n'
            pos += size + 2
        commands.append(args)
    return commands


class FakeServer:
    def __init__(self, fail_after=None, fail_with=None):
        self.data, self.ttl = {}, {}
        self.sent = []
        self.fail_after = fail_after  # number of SETs accepted before errors
        self.fail_with = fail_with or redis.ResponseError('OOM command not allowed when used memory > maxmemory')

    def execute(self, args):
        name = args[0].upper()
        if name == b'TTL':
            key = args[1]
            return self.ttl.get(key, -1) if key in self.data else -2
        if name == b'SET':
            if self.fail_after is not None and len(self.data) >= self.fail_after:
                return self.fail_with
            assert args[3].upper() == b'EX'
            self.data[args[1]], self.ttl[args[1]] = args[2], int(args[4])
            return b'OK'
        raise AssertionError('unexpected command %r' % args)


def encode_reply(reply):
    if isinstance(reply, int):
        return b':%d\r\n' % reply
    if isinstance(reply, Exception):
        return b'-%s\r\n' % str(reply).encode()
    return b'+%s\r\n' % reply


class FakeSocket:
    """Hands out the server's replies in small, uneven pieces (CRLFs split across reads)."""

    def __init__(self):
        self.data, self.closed_at, self.sizes = b'', None, [1, 7, 2, 13, 4]

    def recv(self, size):
        if not self.data:
            if self.closed_at is not None:
                return b''
            raise AssertionError('recv with no reply pending: the client would block forever')
        piece = self.sizes[0]
        self.sizes = self.sizes[1:] + self.sizes[:1]
        chunk, self.data = self.data[:min(size, piece)], self.data[min(size, piece):]
        return chunk


class FakeConnection:
    def __init__(self, server):
        self.server, self.disconnected = server, False
        self._sock = FakeSocket()

    def connect(self):
        pass

    def send_packed_command(self, chunks, check_health=True):
        for chunk in chunks:
            commands = parse_resp(chunk)
            self.server.sent.append(commands)
            for command in commands:
                if self._sock.closed_at is not None:
                    break
                reply = self.server.execute(command)
                if isinstance(reply, redis.ConnectionError):
                    self._sock.closed_at = len(self.server.sent)
                    break
                self._sock.data += encode_reply(reply)

    def disconnect(self):
        self.disconnected = True


class FakePool:
    def __init__(self, server):
        self.server, self.released = server, []

    def get_connection(self):
        return FakeConnection(self.server)

    def release(self, conn):
        self.released.append(conn)


class FakeClient:
    def __init__(self, server):
        self.connection_pool = FakePool(server)


def key_fn(ids):
    return 'k:' + ','.join(map(str, sorted(set(ids))))


def entries_for(sets):
    for ids in sets:
        yield key_fn(ids), ('v%d' % sum(ids)).encode()


def warm(server, sets, **kwargs):
    kwargs.setdefault('ttl', 100)
    kwargs.setdefault('batch_size', 3)
    warmer = rw.Warmer(FakeClient(server), redis, 'redis://:secret@127.0.0.1:1/0', **kwargs)
    return warmer.write(entries_for(warmer.stale_sets(sets, key_fn)))


SETS = [[i, i + 1] for i in range(1, 11)]


def test_writes_every_key_with_ttl_in_batches():
    server = FakeServer()
    stats = warm(server, SETS)
    assert stats['keys_written'] == 10 and stats['keys_skipped'] == 0
    assert stats['bytes'] == sum(len(('v%d' % sum(s)).encode()) for s in SETS)
    assert set(server.ttl.values()) == {100}
    assert len(server.data) == 10
    set_batches = [b for b in server.sent if b[0][0] == b'SET']
    assert [len(b) for b in set_batches] == [3, 3, 3, 1]


def test_fresh_keys_skipped_stale_and_ttl_less_rewritten():
    server = FakeServer()
    warm(server, SETS)
    server.ttl[b'k:1,2'] = 10      # below fresh_ttl (50): rewritten
    server.ttl[b'k:2,3'] = -1      # no TTL at all: rewritten so that it gets one
    stats = warm(server, SETS)
    assert stats['keys_written'] == 2 and stats['keys_skipped'] == 8
    assert server.ttl[b'k:1,2'] == 100 and server.ttl[b'k:2,3'] == 100


def test_force_rewrites_without_checking():
    server = FakeServer()
    warm(server, SETS)
    server.sent.clear()
    stats = warm(server, SETS, force=True)
    assert stats['keys_written'] == 10 and stats['keys_skipped'] == 0
    assert all(batch[0][0] == b'SET' for batch in server.sent)


def test_check_mode_counts_and_writes_nothing():
    server = FakeServer()
    stats = warm(server, SETS, check_mode=True)
    assert stats['keys_written'] == 10
    assert server.data == {}
    assert all(batch[0][0] == b'TTL' for batch in server.sent)


def test_duplicates_within_a_batch_written_once():
    server = FakeServer()
    stats = warm(server, [[1, 2], [2, 1], [1, 2, 2]], batch_size=10)
    assert stats['keys_written'] == 1 and stats['keys_skipped'] == 2


def test_redis_error_mid_way_fails_with_counts_and_no_password():
    server = FakeServer(fail_after=4)
    with pytest.raises(rw.WarmError) as info:
        warm(server, SETS)
    assert info.value.stats['keys_written'] == 4
    assert 'OOM' in str(info.value)
    assert 'secret' not in str(info.value)


def test_connection_lost_fails_with_counts():
    server = FakeServer(fail_after=3, fail_with=redis.ConnectionError('Connection closed by server.'))
    with pytest.raises(rw.WarmError) as info:
        warm(server, SETS)
    assert info.value.stats['keys_written'] == 3
    assert 'cannot reach Redis at 127.0.0.1:1 db 0' in str(info.value)


def test_source_error_counts_what_was_acknowledged():
    server = FakeServer()

    def entries():
        for n, entry in enumerate(entries_for(SETS)):
            if n == 7:
                raise ValueError('unknown learner ids')
            yield entry
    warmer = rw.Warmer(FakeClient(server), redis, 'redis://127.0.0.1:1/0', ttl=100, batch_size=3)
    with pytest.raises(ValueError):
        warmer.write(entries())
    # two batches of 3 were sent before the source failed on the 8th entry; both were acknowledged
    assert warmer.keys_written == 6 == len(server.data)


@pytest.mark.parametrize('ttl,batch,fresh', [(0, 1, None), (-5, 1, None), (10, 0, None), (10, -1, None),
                                             (10, 1, 11), (10, 1, 0), (True, 1, None)])
def test_bad_settings_refused(ttl, batch, fresh):
    with pytest.raises(ValueError):
        rw.check_settings(ttl, batch, fresh)


def test_fresh_ttl_defaults_to_half_ttl():
    assert rw.check_settings(3600, 500, None) == 1800
    assert rw.check_settings(1, 500, None) == 1


def test_packers_emit_valid_resp():
    pack = rw.set_ex_packer(3600)
    assert parse_resp(pack(b'a:b', b'\x00\r\nxyz')) == [[b'SET', b'a:b', b'\x00\r\nxyz', b'EX', b'3600']]
    assert parse_resp(rw.pack_ttl(b'key')) == [[b'TTL', b'key']]


def test_describe_error_distinguishes_auth_and_down():
    url = 'redis://127.0.0.1:1/0'
    assert 'requires a password' in rw.describe_error(redis.AuthenticationError('Authentication required.'), url, redis)
    assert 'refused the credentials' in rw.describe_error(
        redis.AuthenticationError('invalid username-password pair'), url, redis)
    assert 'cannot reach Redis' in rw.describe_error(redis.ConnectionError('refused'), url, redis)


def test_chunks_streams():
    def endless():
        n = 0
        while True:
            n += 1
            yield n
    gen = rw.chunks(endless(), 4)
    assert next(gen) == [1, 2, 3, 4]
    assert next(gen) == [5, 6, 7, 8]


def test_connections_go_back_clean_or_are_dropped():
    server = FakeServer()
    client = FakeClient(server)
    warmer = rw.Warmer(client, redis, 'redis://127.0.0.1:1/0', ttl=100, batch_size=3)
    warmer.write(entries_for(warmer.stale_sets(SETS, key_fn)))
    released = client.connection_pool.released
    assert len(released) == 2 and not any(conn.disconnected for conn in released)

    failing = FakeServer(fail_after=2, fail_with=redis.ConnectionError('gone'))
    client = FakeClient(failing)
    warmer = rw.Warmer(client, redis, 'redis://127.0.0.1:1/0', ttl=100, batch_size=3, force=True)
    with pytest.raises(rw.WarmError):
        warmer.write(entries_for(SETS))
    assert [conn.disconnected for conn in client.connection_pool.released] == [True]


def test_error_reply_to_ttl_fails_clearly():
    class NoTTL(FakeServer):
        def execute(self, args):
            if args[0] == b'TTL':
                return redis.ResponseError('NOPERM this user has no permissions to run the ttl command')
            return super().execute(args)
    with pytest.raises(rw.WarmError) as info:
        warm(NoTTL(), SETS)
    assert 'checking which keys are fresh' in str(info.value) and 'NOPERM' in str(info.value)
    assert info.value.stats['keys_written'] == 0


def test_server_name_never_repeats_the_url():
    """cache_warm's redis_url is no_log: Ansible masks every copy of it, so messages name the server otherwise."""
    for url, name in [('redis://127.0.0.1:6379/0', '127.0.0.1:6379 db 0'),
                      ('redis://:hunter2@10.0.0.5:6380/2', '10.0.0.5:6380 db 2'),
                      ('rediss://user:pw@cache.example/1', 'cache.example:6379 db 1 (TLS)'),
                      ('redis://host', 'host:6379 db 0'),
                      ('unix:///run/redis.sock', 'unix socket /run/redis.sock'),
                      ('redis://host:notaport/0', '<unparsable redis URL>')]:
        assert rw.server_name(url) == name
        assert url not in rw.server_name(url)
    assert 'cannot reach Redis at 127.0.0.1:1 db 0' in rw.describe_error(redis.ConnectionError('x'),
                                                                         'redis://127.0.0.1:1/0', redis)
