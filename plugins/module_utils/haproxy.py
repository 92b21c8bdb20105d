# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client for the HAProxy admin (stats) socket.

One connection per command line (HAProxy's non-interactive mode): the command
is sent, the answer read until HAProxy closes the connection. Several
commands joined by ``;`` run in one session, one after the other.

This file is shipped next to the load balancer API program on the LB host, so
it must only import the standard library.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import tempfile

_NAME = re.compile(r'^[A-Za-z0-9_.:-]+$')


class HAProxyError(RuntimeError):
    """The admin socket could not be reached or refused a command."""


class HAProxySocket:
    """Talk to ``stats socket ... level admin``."""

    def __init__(self, path, timeout=5.0):
        self.path = path
        self.timeout = timeout

    def command(self, line):
        """Send one command line, return HAProxy's whole answer as text."""
        if '\n' in line:
            raise HAProxyError('a command line must not contain a newline')
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.path)
            except OSError as exc:
                raise HAProxyError('cannot connect to the HAProxy admin socket %s: %s' % (self.path, exc)) from exc
            sock.sendall(line.encode('ascii') + b'\n')
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout as exc:
            raise HAProxyError('no answer from the HAProxy admin socket %s within %ss' % (self.path, self.timeout)) from exc
        finally:
            sock.close()
        return b''.join(chunks).decode('utf-8', 'replace')

    # -- reading -------------------------------------------------------------

    def servers_state(self, backend=None):
        """Rows of ``show servers state [backend]`` as dicts (column names from its header)."""
        if backend is not None:
            _check_name(backend)
        out = self.command('show servers state' + (' ' + backend if backend else ''))
        lines = [ln for ln in out.splitlines() if ln.strip()]
        if not lines or not lines[0].strip().isdigit():
            raise HAProxyError('unexpected answer to "show servers state": %s' % out.strip()[:200])
        header = None
        rows = []
        for ln in lines[1:]:
            if ln.startswith('#'):
                header = ln.lstrip('#').split()
                continue
            if header is None:
                raise HAProxyError('unexpected answer to "show servers state": %s' % out.strip()[:200])
            rows.append(dict(zip(header, ln.split())))
        return rows

    def get_weights(self, backend):
        """``{server: current (user) weight}`` of every server of ``backend``."""
        rows = self.servers_state(backend)
        weights = {}
        for row in rows:
            if row.get('be_name') != backend:
                continue
            weights[row['srv_name']] = int(row['srv_uweight'])
        if not weights:
            known = self.backends()
            if backend not in known:
                raise HAProxyError('HAProxy has no backend %r (it has: %s)' % (backend, ', '.join(known) or 'none'))
        return weights

    def stat(self):
        """Rows of ``show stat`` (CSV) as dicts."""
        out = self.command('show stat')
        if not out.startswith('# '):
            raise HAProxyError('unexpected answer to "show stat": %s' % out.strip()[:200])
        reader = csv.DictReader(io.StringIO(out[2:]))
        return [{k: v for k, v in row.items() if k} for row in reader if row.get('pxname')]

    def backends(self):
        """Names of the backends HAProxy runs."""
        return sorted({row['pxname'] for row in self.stat() if row.get('svname') == 'BACKEND'})

    # -- changing ------------------------------------------------------------

    def set_weights(self, backend, updates):
        """Set ``[(server, weight), ...]`` in one admin session; raise on any refusal."""
        _check_name(backend)
        cmds = []
        for server, weight in updates:
            _check_name(server)
            weight = int(weight)
            if not 0 <= weight <= 256:
                raise HAProxyError('weight %r of %s/%s is outside 0..256' % (weight, backend, server))
            cmds.append('set server %s/%s weight %d' % (backend, server, weight))
        if not cmds:
            return
        out = self.command('; '.join(cmds))
        if out.strip():
            raise HAProxyError('HAProxy refused a weight change: %s' % out.strip()[:500])

    def save_state(self, path):
        """Write ``show servers state`` to ``path`` atomically (the server-state-file format)."""
        out = self.command('show servers state')
        if not out.strip() or not out.lstrip().split('\n', 1)[0].strip().isdigit():
            raise HAProxyError('unexpected answer to "show servers state": %s' % out.strip()[:200])
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix='.server-state.', dir=directory)
        try:
            with os.fdopen(fd, 'w') as handle:
                handle.write(out)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _check_name(name):
    if not isinstance(name, str) or not _NAME.match(name):
        raise HAProxyError('invalid HAProxy proxy/server name %r' % (name,))
