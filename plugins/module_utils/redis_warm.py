# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pipelined Redis cache warm-up, shared by the cache_warm module and bench/cache_warm_bench.py.

The key and value format is not defined here: keys come from ``cohort_analyzer.cache.cache_key`` and
values from ``cohort_analyzer.warm.iter_entries`` (the analyzer package is the one definition). This file
only moves (key, value) pairs into Redis, fast and honestly counted:

* ``Warmer.stale_sets`` streams learner sets and drops those whose key is already fresh (remaining TTL at
  least ``fresh_ttl``), checking each batch with one pipelined round trip of ``TTL`` commands, so fresh
  keys cost neither a database read nor a write.
* ``Warmer.write`` streams (key, value) pairs into Redis as ``SET key value EX ttl``, ``batch_size``
  commands per round trip, one batch in flight while the next one is packed.

Commands are packed as RESP here and sent over a connection of the redis-py client
(``send_packed_command`` / ``read_response``): redis-py's ``Pipeline`` object builds several Python
objects per command and is 3-4x slower than the server for this workload (docs/performance.md).
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit


class WarmError(Exception):
    """A warm-up that did not complete; ``stats`` says what was written before it stopped."""

    def __init__(self, message, stats=None):
        super().__init__(message)
        self.stats = stats or {}


def server_name(url):
    """The server a Redis URL names, as ``host:port db N``: never the URL itself.

    cache_warm's ``redis_url`` is no_log (it may carry a password), so Ansible masks every copy of the URL in
    the module's output; messages name the server in this other form, which stays readable.
    """
    try:
        parts = urlsplit(url)
        if parts.scheme == 'unix':
            return 'unix socket %s' % parts.path
        host = parts.hostname or '?'
        port = parts.port or 6379
    except ValueError:
        return '<unparsable redis URL>'
    database = parts.path.strip('/') or '0'
    return '%s:%d db %s%s' % (host, port, database, ' (TLS)' if parts.scheme == 'rediss' else '')


def check_settings(ttl, batch_size, fresh_ttl):
    """Refuse settings that would write keys without a TTL or never write; return the fresh threshold."""
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
        raise ValueError('ttl must be an integer number of seconds > 0, got %r' % (ttl,))
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError('batch_size must be an integer > 0, got %r' % (batch_size,))
    if fresh_ttl is None:
        fresh_ttl = max(1, ttl // 2)
    if not isinstance(fresh_ttl, int) or isinstance(fresh_ttl, bool) or not 0 < fresh_ttl <= ttl:
        raise ValueError('fresh_ttl must be an integer within 1..ttl (%d), got %r' % (ttl, fresh_ttl))
    return fresh_ttl


def describe_error(exc, url, redis_module, password_given=True):
    """A clear, password-free sentence for a Redis client exception."""
    where = server_name(url)
    if isinstance(exc, redis_module.AuthenticationError):
        text = str(exc)
        if not password_given or 'authentication required' in text.lower():
            return 'Redis at %s requires a password (NOAUTH): set redis_password' % where
        return 'Redis at %s refused the credentials (authentication failed: %s); check redis_password' % (where, text)
    if isinstance(exc, (redis_module.ConnectionError, redis_module.TimeoutError, OSError)):
        return 'cannot reach Redis at %s: %s' % (where, exc)
    if isinstance(exc, redis_module.ResponseError):
        return 'Redis at %s answered with an error: %s' % (where, exc)
    return 'Redis at %s failed: %s: %s' % (where, type(exc).__name__, exc)


def connect(redis_module, url, password=None, timeout=10.0):
    """A redis-py client for ``url`` that has answered PING (so a wrong password or a dead server fails here)."""
    try:
        client = redis_module.Redis.from_url(
            url, password=password or None, socket_timeout=timeout, socket_connect_timeout=timeout,
            health_check_interval=0)
        client.ping()
    except ValueError as exc:  # a malformed URL
        raise WarmError('invalid redis_url (%s): %s' % (server_name(url), exc))
    except (redis_module.RedisError, OSError) as exc:
        raise WarmError(describe_error(exc, url, redis_module, bool(password) or '@' in url))
    return client


def chunks(iterable, size):
    """Lists of up to ``size`` consecutive items, without materialising the input."""
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _bulk(data):
    return b'$%d\r\n%b\r\n' % (len(data), data)


def pack_ttl(key):
    return b'*2\r\n$3\r\nTTL\r\n' + _bulk(key)


def set_ex_packer(ttl):
    """A function (key, value) -> the RESP bytes of ``SET key value EX ttl``."""
    tail = b'$2\r\nEX\r\n' + _bulk(b'%d' % ttl)

    def pack(key, value):
        return b'*5\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b' % (len(key), key, len(value), value, tail)
    return pack


def _as_bytes(key):
    return key if isinstance(key, bytes) else key.encode('utf-8')


# The one private attribute of redis-py this file relies on: a connected redis-py Connection keeps its socket
# in ``_sock`` (redis-py 5.0 to 8.x; the analyzer package and meta/ee-requirements.txt pin REDIS_PY_RANGE, and
# tests/integration/test_redis_warm_socket.py checks it against a real Redis with the installed redis-py).
SOCKET_ATTRIBUTE = '_sock'
REDIS_PY_RANGE = 'redis>=5.0,<9'


def raw_socket(conn, redis_module=None):
    """The socket of a connected redis-py connection; WarmError with a clear message if redis-py hides it."""
    sock = getattr(conn, SOCKET_ATTRIBUTE, None)
    if sock is None or not callable(getattr(sock, 'recv', None)):
        version = getattr(redis_module, '__version__', None) or 'of unknown version'
        raise WarmError(
            'redis-py %s: a connected %s has no socket in its private attribute %r, which the cache warm-up reads '
            'to stream its pipelined batches. Install a redis-py within the range cohort.rollout is tested with '
            '(%s) in the Python that runs the module. Nothing was written.'
            % (version, type(conn).__name__, SOCKET_ATTRIBUTE, REDIS_PY_RANGE))
    return sock


class _Conn(object):
    """One connection borrowed from the client's pool, used raw: packed commands out, reply lines in.

    redis-py connects, authenticates, selects the database and sets up TLS; the bulk traffic then goes
    over the connection's socket directly, and replies are split into lines in C (``bytes.split``)
    instead of one ``read_response`` call per reply (which costs more than Redis takes to run a SET).
    Only commands whose every reply is one line are sent this way (``SET`` without ``GET`` -> ``+OK`` or
    an error, ``TTL`` -> an integer or an error). The connection goes back to the pool only when every
    reply was read; otherwise it is dropped, so that no later user reads our replies.
    """

    def __init__(self, client, redis_module=None):
        self.pool = client.connection_pool
        self.conn = self.pool.get_connection()
        self.clean = True
        self.pending = b''
        try:
            self.conn.connect()
            self.sock = raw_socket(self.conn, redis_module)
        except BaseException:
            self.pool.release(self.conn)
            raise

    def send(self, payload):
        self.clean = False
        self.conn.send_packed_command([payload], check_health=False)

    def lines(self, count):
        """The next ``count`` reply lines (without CRLF); raises ConnectionError if Redis hangs up."""
        pending = self.pending
        found = pending.count(b'\r\n')
        while found < count:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise _ConnectionClosed('Redis closed the connection')
            # A CRLF may straddle two chunks: count from the last byte already held.
            scan = len(pending) - 1 if pending.endswith(b'\r') else len(pending)
            pending += chunk
            found += pending.count(b'\r\n', scan)
        parts = pending.split(b'\r\n', count)
        self.pending = parts.pop()
        return parts

    def close(self):
        if not self.clean or self.pending:
            self.conn.disconnect()
        self.pool.release(self.conn)


class _ConnectionClosed(OSError):
    pass


class Warmer(object):
    """Counts and moves; every Redis failure becomes a WarmError carrying the counts so far."""

    def __init__(self, client, redis_module, url, ttl, batch_size=500, fresh_ttl=None, force=False,
                 check_mode=False):
        self.fresh_ttl = check_settings(ttl, batch_size, fresh_ttl)
        self.client = client
        self.redis = redis_module
        self.url = url
        self.ttl = ttl
        self.batch_size = batch_size
        self.force = force
        self.check_mode = check_mode
        self.keys_written = 0
        self.keys_skipped = 0
        self.bytes = 0
        self.started = time.monotonic()

    def stats(self):
        seconds = time.monotonic() - self.started
        return {
            'keys_written': self.keys_written,
            'keys_skipped': self.keys_skipped,
            'bytes': self.bytes,
            'seconds': round(seconds, 3),
            'keys_per_second': round(self.keys_written / seconds, 1) if seconds > 0 else 0.0,
        }

    def _fail(self, action, exc):
        message = '%s: %s' % (action, describe_error(exc, self.url, self.redis))
        return WarmError(message, self.stats())

    def stale_sets(self, learner_sets, key_fn):
        """Yield the learner sets whose key is missing or expires within ``fresh_ttl`` seconds.

        With ``force`` every set is yielded unchecked. Duplicates within a batch are yielded once (the
        others count as skipped).
        """
        if self.force:
            yield from learner_sets
            return
        conn = _Conn(self.client, self.redis)
        try:
            for batch in chunks(learner_sets, self.batch_size):
                keys, unique = [], []
                seen = set()
                for ids in batch:
                    key = _as_bytes(key_fn(ids))
                    if key in seen:
                        self.keys_skipped += 1
                        continue
                    seen.add(key)
                    keys.append(key)
                    unique.append(ids)
                try:
                    conn.send(b''.join([pack_ttl(key) for key in keys]))
                    ttls = self._ttls(conn.lines(len(keys)))
                except (self.redis.RedisError, OSError) as exc:
                    raise self._fail('checking which keys are fresh', exc)
                conn.clean = True
                for ids, remaining in zip(unique, ttls):
                    # -2: missing, -1: no expiry (rewrite so that it gets one), else seconds left.
                    if remaining >= self.fresh_ttl:
                        self.keys_skipped += 1
                    else:
                        yield ids
        finally:
            conn.close()

    def write(self, entries):
        """Write (key, value) pairs with ``SET key value EX ttl``; in check mode only count them."""
        pack = set_ex_packer(self.ttl)
        if self.check_mode:
            for key, value in entries:
                self.keys_written += 1
                self.bytes += len(value)
            return self.stats()
        conn = _Conn(self.client, self.redis)
        in_flight = []  # value sizes of the batch whose replies are still unread
        try:
            batches = chunks(entries, self.batch_size)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except Exception:
                    # The source failed (bad ids, database error): count what Redis already acknowledged
                    # so that the caller reports it, then let the source's error through.
                    self._drain(conn, in_flight)
                    raise
                payload = b''.join([pack(_as_bytes(key), value) for key, value in batch])
                sizes = [len(value) for _key, value in batch]
                try:
                    conn.send(payload)
                    refused = self._collect(conn, in_flight)
                    if refused is not None:
                        # Count the batch just sent too, so that the counts match what Redis holds.
                        self._collect(conn, sizes)
                        conn.clean = True
                        raise refused
                except (self.redis.RedisError, OSError) as exc:
                    raise self._fail('writing keys', exc)
                in_flight = sizes
            try:
                refused = self._collect(conn, in_flight)
                conn.clean = True
                if refused is not None:
                    raise refused
            except (self.redis.RedisError, OSError) as exc:
                raise self._fail('writing keys', exc)
        finally:
            conn.close()
        return self.stats()

    def _drain(self, conn, sizes):
        try:
            self._collect(conn, sizes)
            conn.clean = True
        except (self.redis.RedisError, OSError):
            pass

    def _ttls(self, lines):
        """Remaining TTLs from ``TTL`` reply lines (``:<seconds>``); an error line raises ResponseError."""
        try:
            return [int(line[1:]) if line[:1] == b':' else self._refusal(line, 'TTL') for line in lines]
        except ValueError:
            raise self.redis.ResponseError('unexpected reply to TTL among %r' % (lines[:3],))

    def _refusal(self, line, command):
        if line[:1] == b'-':
            raise self.redis.ResponseError(line[1:].decode('utf-8', 'replace'))
        raise self.redis.ResponseError('unexpected reply to %s: %r' % (command, line[:80]))

    def _collect(self, conn, sizes):
        """Read every reply of one batch, counting each acknowledged SET; return the first refusal or None.

        All replies are read even after a refusal (out of memory, read-only replica ...): Redis goes on
        with the rest of the batch, and the counts must say what it holds.
        """
        if not sizes:
            return None
        lines = conn.lines(len(sizes))
        if lines.count(b'+OK') == len(lines):
            self.keys_written += len(sizes)
            self.bytes += sum(sizes)
            return None
        refused = None
        for size, line in zip(sizes, lines):
            if line == b'+OK':
                self.keys_written += 1
                self.bytes += size
                continue
            try:
                self._refusal(line, 'SET')
            except self.redis.ResponseError as exc:
                refused = refused or exc
        return refused
