# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run HAProxy's master (``haproxy -W -db ...``) as a child with a stable command line.

On a reload HAProxy's master re-executes itself with ``-sf <old workers> -x
sockpair@N`` inserted into its argv, so a pidfile manager that checks the
command line of the pid it started (cohort.rollout.daemon) no longer recognises
it. This supervisor keeps the pid and command line the manager knows: it passes
SIGUSR2 and SIGHUP on to the master as SIGUSR2 (reload), SIGTERM/SIGINT/SIGQUIT
as they are (stop), and exits with the master's exit status.

    haproxy_supervisor.py /usr/sbin/haproxy -W -db -f /path/haproxy.cfg
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv):
    if len(argv) < 2:
        sys.stderr.write('usage: haproxy_supervisor.py HAPROXY [ARGS...]\n')
        return 2
    child = subprocess.Popen(argv[1:])

    def forward(signum, _frame):
        target = signal.SIGUSR2 if signum in (signal.SIGUSR2, signal.SIGHUP) else signum
        try:
            os.kill(child.pid, target)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, forward)
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:
            continue
    return code if code >= 0 else 128 - code


if __name__ == '__main__':
    sys.exit(main(sys.argv))
