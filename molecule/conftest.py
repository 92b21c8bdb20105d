"""Checks shared by the Molecule scenarios' testinfra tests (loaded by pytest for molecule/*/tests).

The hosts are fleet hosts (scripts/fleet.sh) on the machine's network namespace: /proc/net/tcp
on a host lists every socket of the machine, so a listener belongs to a host only when one of
the host's own processes holds it (its inode among the /proc/PID/fd links of that host).
"""
import json
import urllib.error
import urllib.request

import pytest

# Runs on the host (its own Python, standard library only, as root via --sudo): every
# listening TCP socket and every bound UDP socket held by a process of this host.
_LISTENERS = r'''
import json, os, socket, struct
def addr(hexaddr):
    ip, port = hexaddr.split(':')
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, struct.pack('<I', int(ip, 16))), int(port, 16)
    words = struct.unpack('<4I', raw)
    return socket.inet_ntop(socket.AF_INET6, struct.pack('>4I', *words)), int(port, 16)
socks = {}
for proto, listen_state in (('tcp', '0A'), ('tcp6', '0A'), ('udp', '07'), ('udp6', '07')):
    with open('/proc/net/' + proto) as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[3] == listen_state:
                host, port = addr(cols[1])
                socks[cols[9]] = {'proto': proto.rstrip('6'), 'address': host, 'port': port}
out, unreadable = [], []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        comm = open('/proc/%s/comm' % pid).read().strip()
        uid = int([l for l in open('/proc/%s/status' % pid) if l.startswith('Uid:')][0].split()[1])
    except (OSError, IndexError):
        continue  # gone meanwhile
    try:
        fds = os.listdir('/proc/%s/fd' % pid)
    except FileNotFoundError:
        continue
    except OSError:
        fds = None
    for fd in fds if fds is not None else []:
        try:
            link = os.readlink('/proc/%s/fd/%s' % (pid, fd))
        except FileNotFoundError:
            continue  # closed meanwhile
        except OSError:
            fds = None
            break
        if link.startswith('socket:[') and link[8:-1] in socks:
            out.append(dict(socks[link[8:-1]], pid=int(pid), comm=comm, uid=uid))
    if fds is None:
        unreadable.append('%s %s' % (pid, comm))
out = {'listeners': out, 'unreadable': unreadable}
print(json.dumps(out))
'''


@pytest.fixture()
def address(host):
    """The host's own address (its ansible_host): the only one its services may bind."""
    return host.ansible.get_variables()['ansible_host']


@pytest.fixture()
def listeners(host):
    """Every listening socket held by a process of this host: proto, address, port, pid, comm, uid."""
    result = host.run("/usr/bin/python3 -c %s", _LISTENERS)
    assert result.rc == 0, result.stderr
    found = json.loads(result.stdout)
    # A process whose descriptors root cannot read (a host without CAP_SYS_PTRACE, and a
    # service that changed its user is not dumpable) would be skipped silently: fail instead.
    assert not found['unreadable'], 'unreadable /proc/PID/fd: %s' % found['unreadable']
    return found['listeners']


@pytest.fixture()
def unit(host):
    """systemctl show for a unit, as a dict."""
    def show(name):
        out = host.check_output(
            "systemctl show %s -p ActiveState -p UnitFileState -p MainPID -p User -p LoadState", name)
        return dict(line.split('=', 1) for line in out.splitlines())
    return show


@pytest.fixture()
def uid_of(host):
    def uid(user):
        return host.user(user).uid
    return uid


@pytest.fixture()
def process_tree(host):
    """The pids of a unit's control group (the main process and every child)."""
    def pids(name):
        cgroup = host.check_output("systemctl show %s -p ControlGroup --value", name)
        assert cgroup, name + ' has no control group (not running?)'
        # cgroup v1 (systemd's own hierarchy) or v2 (unified)
        procs = host.check_output("cat /sys/fs/cgroup/systemd%s/cgroup.procs 2>/dev/null"
                                  " || cat /sys/fs/cgroup%s/cgroup.procs", cgroup, cgroup)
        return {int(p) for p in procs.split()}
    return pids


@pytest.fixture()
def absent_from_logs(host):
    """Assert no secret appears in the journal (everything, every unit) nor in the given files."""
    def check(secrets, files=()):
        journal = host.run("journalctl --no-pager -o cat")
        assert journal.rc == 0, journal.stderr
        assert journal.stdout.strip(), 'empty journal: nothing was checked'
        for secret in secrets:
            assert secret not in journal.stdout, 'secret found in the journal'
        for path in files:
            content = host.file(path).content_string
            assert content.strip(), path + ' is empty: nothing was checked'
            for secret in secrets:
                assert secret not in content, 'secret found in ' + path
    return check


@pytest.fixture()
def http():
    """An HTTP request from the controller, over the network as every client of the host makes it
    (the hosts share the machine's network). Not through the host's shell: a token in a command line
    run with sudo would land in the host's journal, which the tests check for secrets."""
    def request(url, method='GET', token='', body='', content_type='application/x-www-form-urlencoded'):
        req = urllib.request.Request(url, data=body.encode() if body else None, method=method)
        if token:
            req.add_header('Authorization', 'Bearer ' + token)
        if body:
            req.add_header('Content-Type', content_type)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
    return request
