"""The one small repository layer: learners in SQLite (default) or PostgreSQL, behind a connection pool.

``--db`` is a filesystem path (SQLite) or a ``postgresql://`` / ``postgres://`` DSN (needs psycopg).
Both variants read learners only through :class:`Repository`: ``fetch_learner`` (one query per learner,
used by ``original``), ``fetch_packed`` (SQLite: one query per batch of ids returning one packed integer per
learner, used by ``ultra_fast``) and ``fetch_learners`` (one query per batch of ids returning the columns, used by
``ultra_fast`` on PostgreSQL and as its fallback).
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from cohort_analyzer import dataset

try:  # PostgreSQL is optional: only needed when a DSN is given.
    import psycopg
except ImportError:  # pragma: no cover - depends on the environment
    psycopg = None

LOG = logging.getLogger("cohort_analyzer.repository")
SQLITE_MAX_BATCH = 30_000  # below SQLite's default limit of 32766 bound parameters
_COLS = ", ".join(dataset.DISCOVERY_COLUMNS)

# ultra_fast's read on SQLite. SQLite itself reduces each learner to ONE integer holding exactly what discovery
# needs, and returns the whole batch as ONE comma-separated string (group_concat), parsed by NumPy in C: no
# Python tuple or int per row. The ids go in as ONE JSON array parameter read by json_each, joined to the
# INTEGER PRIMARY KEY (one rowid seek per id, as with IN (...), without thousands of bound parameters).
# Bit layout of a packed learner, low to high (decoded by engine.aggregate_packed), chosen so that
# ``packed >> 30`` is already the cohort code without its month (course << 16 | segment):
#   bits 0-9 progress_permille | bit 10 active_7d (minutes_7d > 0) | bits 13-29 signup_day
#   | bits 30-31 segment index (dataset.SEGMENTS) | bits 46-57 course_id
# A learner whose values do not fit (course_id > 4095, progress outside 0..1023, signup_day outside
# 0..PACK_MAX_DAY) packs to -1; the engine then reads that batch through fetch_learners instead.
PACK_DAY_SHIFT, PACK_SEGMENT_SHIFT, PACK_COURSE_SHIFT = 13, 30, 46
PACK_MAX_DAY = (1 << 17) - 1  # 2328-11-09
_PACK_SEGMENT = (f"CASE WHEN l.minutes_30d = 0 THEN 0 WHEN l.minutes_7d < {dataset.CASUAL_MAX_7D} THEN 1 "
                 f"WHEN l.minutes_7d < {dataset.ENGAGED_MAX_7D} THEN 2 ELSE 3 END")
_PACKED_SQL = (
    "SELECT group_concat(CASE WHEN l.course_id BETWEEN 0 AND 4095 AND l.progress_permille BETWEEN 0 AND 1023 "
    f"AND l.signup_day BETWEEN 0 AND {PACK_MAX_DAY} THEN (l.course_id << {PACK_COURSE_SHIFT}) "
    f"| (({_PACK_SEGMENT}) << {PACK_SEGMENT_SHIFT}) | (l.signup_day << {PACK_DAY_SHIFT}) "
    "| ((l.minutes_7d > 0) << 10) | l.progress_permille ELSE -1 END) "
    "FROM json_each(?) AS j JOIN learners AS l ON l.learner_id = j.value"
)


class RepositoryError(RuntimeError):
    """The database is missing, unreachable or does not hold the expected data set."""


def is_dsn(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


class ConnectionPool:
    """A bounded pool: at most ``size`` connections, created on demand, reused LIFO."""

    def __init__(self, connect: Callable[[], Any], size: int, acquire_timeout: float = 10.0):
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self._connect = connect
        self.size = size
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()
        self._in_use = 0
        self._timeout = acquire_timeout

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        conn = self._acquire()
        with self._lock:
            self._in_use += 1
        broken = False
        try:
            yield conn
        except Exception:
            broken = _is_connection_error(conn)
            raise
        finally:
            with self._lock:
                self._in_use -= 1
            if broken:
                with contextlib.suppress(Exception):
                    conn.close()
                with self._lock:
                    self._created -= 1
            else:
                self._idle.put(conn)

    def _acquire(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            create = self._created < self.size
            if create:
                self._created += 1
        if create:
            try:
                return self._connect()
            except Exception:
                with self._lock:
                    self._created -= 1
                raise
        try:
            return self._idle.get(timeout=self._timeout)
        except queue.Empty:
            raise RepositoryError(f"no database connection free within {self._timeout}s (pool size {self.size})") from None

    def close(self) -> None:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                break
            with contextlib.suppress(Exception):
                conn.close()
            with self._lock:
                self._created -= 1


def _is_connection_error(conn: Any) -> bool:
    closed = getattr(conn, "closed", False)  # psycopg: a dead connection reports closed/broken
    return bool(closed) or bool(getattr(conn, "broken", False))


class Repository:
    """Reads learners. ``on_query(seconds)`` is called after every database query (metrics)."""

    def __init__(self, db: str, pool_size: int = 4, on_query: Callable[[float], None] | None = None):
        self.db = db
        self.backend = "postgresql" if is_dsn(db) else "sqlite"
        self.on_query = on_query or (lambda seconds: None)
        if self.backend == "sqlite":
            if not os.path.isfile(db):
                raise RepositoryError(f"SQLite database {db!r} does not exist (create it with `cohort-analyzer init-db`)")
            self._param = "?"
            self._max_batch = SQLITE_MAX_BATCH
            self.packs = True
            self.pool = ConnectionPool(self._connect_sqlite, pool_size)
        else:
            _require_psycopg()
            self._param = "%s"
            self._max_batch = 100_000
            self.packs = False
            self.pool = ConnectionPool(lambda: psycopg.connect(db, autocommit=True, connect_timeout=5), pool_size)
        self._one_sql = f"SELECT {_COLS} FROM learners WHERE learner_id = {self._param}"

    def _connect_sqlite(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA cache_size = -32768")  # 32 MiB page cache: the default data set fits
        return conn

    def _timed(self, cur: Any, sql: str, params: Sequence[Any]) -> Any:
        start = time.perf_counter()
        cur.execute(sql, params)
        rows = cur.fetchall()
        self.on_query(time.perf_counter() - start)
        return rows

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """One pooled connection for a unit of work (e.g. one request of the original variant)."""
        with self.pool.connection() as conn:
            yield conn

    def fetch_learner(self, conn: Any, learner_id: int) -> tuple | None:
        """One learner (DISCOVERY_COLUMNS order) by one query, or None."""
        cur = conn.cursor()
        try:
            rows = self._timed(cur, self._one_sql, (learner_id,))
        finally:
            cur.close()
        return tuple(rows[0]) if rows else None

    def fetch_packed(self, conn: Any, learner_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """SQLite only: the packed learners (layout above, any order) of DISTINCT ids, by one query.

        Unknown ids are simply absent (the caller compares lengths); -1 marks a learner that does not pack.
        """
        if not self.packs:
            raise RepositoryError(f"packed reads are not supported on {self.backend}")
        cur = conn.cursor()
        try:
            # str() of a list of Python ints is a JSON array (and cheaper than json.dumps); no copy for an int64 array
            rows = self._timed(cur, _PACKED_SQL, (str(np.asarray(learner_ids, dtype=np.int64).tolist()),))
        finally:
            cur.close()
        text = rows[0][0] if rows else None
        if not text:
            return np.empty(0, dtype=np.int64)
        return np.fromstring(text, dtype=np.int64, sep=",")

    def fetch_learners(self, conn: Any, learner_ids: Sequence[int]) -> list[tuple]:
        """Many learners by one query per batch (DISCOVERY_COLUMNS order, any row order)."""
        out: list[tuple] = []
        cur = conn.cursor()
        try:
            for start in range(0, len(learner_ids), self._max_batch):
                chunk = list(learner_ids[start:start + self._max_batch])
                if self.backend == "sqlite":
                    sql = f"SELECT {_COLS} FROM learners WHERE learner_id IN ({','.join('?' * len(chunk))})"
                    out.extend(self._timed(cur, sql, chunk))
                else:
                    out.extend(self._timed(cur, f"SELECT {_COLS} FROM learners WHERE learner_id = ANY(%s)", (chunk,)))
        finally:
            cur.close()
        return out

    def metadata(self) -> dict[str, int]:
        with self.connection() as conn:
            cur = conn.cursor()
            try:
                rows = self._timed(cur, "SELECT key, value FROM metadata", ())
            finally:
                cur.close()
        meta = {str(k): int(v) for k, v in rows}
        for key in ("schema_version", "learners", "seed"):
            if key not in meta:
                raise RepositoryError(f"database {self.describe()} has no {key!r} in its metadata table")
        return meta

    def ping(self) -> None:
        with self.connection() as conn:
            cur = conn.cursor()
            try:
                self._timed(cur, "SELECT 1", ())
            finally:
                cur.close()

    def describe(self) -> str:
        if self.backend == "sqlite":
            return self.db
        return "postgresql DSN (redacted)"

    def close(self) -> None:
        self.pool.close()


def _require_psycopg() -> None:
    if psycopg is None:
        raise RepositoryError("a PostgreSQL DSN was given but psycopg is not installed "
                              "(pip install 'cohort-analyzer[postgres]')")


_SCHEMA = (
    "CREATE TABLE learners (learner_id INTEGER PRIMARY KEY, course_id INTEGER NOT NULL, signup_day INTEGER NOT NULL, "
    "region_id INTEGER NOT NULL, progress_permille INTEGER NOT NULL, minutes_7d INTEGER NOT NULL, "
    "minutes_30d INTEGER NOT NULL, last_active_day INTEGER NOT NULL)",
    "CREATE TABLE metadata (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
)


def _rows(columns: dict) -> list[tuple]:
    return list(zip(*(columns[name].tolist() for name in dataset.COLUMNS)))


def _meta_rows(n_learners: int, seed: int) -> list[tuple]:
    return [("schema_version", dataset.SCHEMA_VERSION), ("learners", n_learners), ("seed", seed)]


def ensure_database(db: str, n_learners: int | None = None, seed: int | None = None) -> dict[str, int]:
    """Create the data set in ``db`` if it is missing; return its metadata.

    ``n_learners``/``seed`` None means "whatever the database holds" (defaults when creating). If given and
    the existing database holds a different data set, raise RepositoryError (never serve the wrong data).
    """
    if is_dsn(db):
        meta = _ensure_postgres(db, n_learners, seed)
    else:
        meta = _ensure_sqlite(db, n_learners, seed)
    for key, wanted in (("learners", n_learners), ("seed", seed)):
        if wanted is not None and meta[key] != wanted:
            raise RepositoryError(f"database {db if not is_dsn(db) else '(DSN)'} holds {key}={meta[key]}, "
                                  f"but {key}={wanted} was requested; remove it or use the same settings")
    return meta


def _read_meta(db: str) -> dict[str, int]:
    repo = Repository(db, pool_size=1)
    try:
        return repo.metadata()
    except (sqlite3.Error, RepositoryError) as exc:
        raise RepositoryError(f"{db!r} is not a cohort-analyzer database: {exc}") from exc
    finally:
        repo.close()


def _ensure_sqlite(path: str, n_learners: int | None, seed: int | None) -> dict[str, int]:
    if os.path.exists(path):
        return _read_meta(path)
    n = dataset.DEFAULT_LEARNERS if n_learners is None else n_learners
    s = dataset.DEFAULT_SEED if seed is None else seed
    if n < 1:
        raise RepositoryError(f"learners must be >= 1, got {n}")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Build into a temp file in the same directory, then publish it with link() (fails if another process
    # published first: theirs is identical, ours is dropped) so readers never see a half-built file.
    fd, tmp = tempfile.mkstemp(prefix=".cohort-analyzer-", suffix=".db.tmp", dir=directory)
    os.close(fd)
    try:
        start = time.perf_counter()
        conn = sqlite3.connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            for stmt in _SCHEMA:
                conn.execute(stmt)
            conn.executemany("INSERT INTO learners VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _rows(dataset.generate(n, s)))
            conn.executemany("INSERT INTO metadata VALUES (?, ?)", _meta_rows(n, s))
            conn.commit()
        finally:
            conn.close()
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            LOG.info("another process created %s first; using it", path)
        LOG.info("created SQLite data set %s (%d learners, seed %d) in %.2fs", path, n, s, time.perf_counter() - start)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return _read_meta(path)


def _ensure_postgres(dsn: str, n_learners: int | None, seed: int | None) -> dict[str, int]:
    _require_psycopg()
    try:
        return _create_postgres(dsn, n_learners, seed)
    except psycopg.Error as exc:
        # psycopg messages name host/port/database, never the password
        raise RepositoryError(f"PostgreSQL: cannot connect or initialise: {exc}".strip()) from exc


def _create_postgres(dsn: str, n_learners: int | None, seed: int | None) -> dict[str, int]:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        with conn.transaction():
            # One creator at a time across processes; the others wait, then see the finished data set.
            conn.execute("SELECT pg_advisory_xact_lock(7301560)")
            exists = conn.execute("SELECT to_regclass('metadata') IS NOT NULL").fetchone()[0]
            if not exists:
                n = dataset.DEFAULT_LEARNERS if n_learners is None else n_learners
                s = dataset.DEFAULT_SEED if seed is None else seed
                if n < 1:
                    raise RepositoryError(f"learners must be >= 1, got {n}")
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                with conn.cursor().copy(f"COPY learners ({', '.join(dataset.COLUMNS)}) FROM STDIN") as copy:
                    for row in _rows(dataset.generate(n, s)):
                        copy.write_row(row)
                conn.cursor().executemany("INSERT INTO metadata VALUES (%s, %s)", _meta_rows(n, s))
                LOG.info("created PostgreSQL data set (%d learners, seed %d)", n, s)
            rows = conn.execute("SELECT key, value FROM metadata").fetchall()
    return {str(k): int(v) for k, v in rows}
