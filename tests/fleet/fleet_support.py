"""Helpers of the tests that run against the test fleet (`make fleet`): playbooks, SSH, the hosts' view."""

import json
import os
import re
import subprocess
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, '.venv', 'bin')
FLEET_DIR = os.environ.get('COHORT_FLEET_DIR', os.path.join(ROOT, '.fleet'))
INVENTORY = os.path.join(ROOT, 'inventories', 'fleet')
REPORT = os.path.join(FLEET_DIR, 'report.json')
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
           ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_FORCE_COLOR='0', ANSIBLE_NOCOLOR='1',
           CONTAINERS_CONF=os.path.join(FLEET_DIR, 'containers.conf'))
# Generous: two cores run eight hosts, the load and the controller.
PLAY_TIMEOUT = 1500


def ev(**variables):
    """-e with a JSON document (key=value splits on spaces)."""
    return ['-e', json.dumps(variables)]


def playbook(name, *args, inventory=None, timeout=PLAY_TIMEOUT):
    sources = []
    for source in inventory or [INVENTORY]:
        sources += ['-i', source]
    return subprocess.run([os.path.join(BIN, 'ansible-playbook')] + sources + ['playbooks/' + name] + list(args),
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout, check=False)


def recap(output):
    """PLAY RECAP counters per host (summed over plays)."""
    hosts = {}
    for host, counters in re.findall(r'^(\S+)\s+:\s+(ok=.*)$', output, re.M):
        entry = hosts.setdefault(host, {})
        for key, value in re.findall(r'(\w+)=(\d+)', counters):
            entry[key] = entry.get(key, 0) + int(value)
    return hosts


def hosts():
    """{name: {'address': ..., 'groups': [...]}} for every host of the fleet inventory."""
    out = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', INVENTORY, '--list'], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    found = {}
    for group, body in data.items():
        for host in body.get('hosts', []) if isinstance(body, dict) else []:
            found.setdefault(host, {'groups': []})['groups'].append(group)
    for host, hv in data['_meta']['hostvars'].items():
        found.setdefault(host, {'groups': []})['address'] = hv['ansible_host']
    return found


def resolved(host, *names):
    """Variables of a host as Ansible templates them (the inventories template their URLs)."""
    expr = '{{ {%s} | to_json }}' % ', '.join("'%s': %s" % (n, n) for n in names)
    proc = subprocess.run([os.path.join(BIN, 'ansible'), host, '-i', INVENTORY, '-c', 'local', '-m',
                           'ansible.builtin.debug', '-a', 'msg=' + expr],
                          cwd=ROOT, env=dict(ENV, ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
                                             ANSIBLE_STDOUT_CALLBACK='ansible.posix.json'),
                          capture_output=True, text=True, check=True)
    msg = json.loads(proc.stdout)['plays'][0]['tasks'][0]['hosts'][host]['msg']
    return json.loads(msg) if isinstance(msg, str) else msg


def ssh(address, command, check=True, timeout=60):
    """Run a shell command on a fleet host as `deploy`, as Ansible reaches it."""
    argv = ['ssh', '-F', '/dev/null', '-i', os.path.join(FLEET_DIR, 'id_ed25519'), '-o', 'BatchMode=yes',
            '-o', 'UserKnownHostsFile=' + os.path.join(FLEET_DIR, 'known_hosts'), '-o', 'StrictHostKeyChecking=yes',
            'deploy@' + address, command]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError('ssh %s %r: rc=%s\n%s%s' % (address, command, proc.returncode, proc.stdout, proc.stderr))
    return proc


def podman_exec(host, command):
    """Root inside a fleet host, as its console would be (for drills that break sudo or apt)."""
    return subprocess.run(['podman', 'exec', 'cohort-fleet-' + host, 'sh', '-c', command], env=ENV,
                          capture_output=True, text=True, timeout=60, check=True)


# Every listening TCP socket of the host's own processes: (address, port, process name).
# Hosts share the machine's network namespace but not its process table, so the
# sockets are matched to this host's processes through /proc/<pid>/fd.
LISTENERS = r'''
import os, socket, struct
inodes = {}
for table in ('/proc/net/tcp', '/proc/net/tcp6'):
    with open(table) as handle:
        for line in list(handle)[1:]:
            f = line.split()
            if f[3] != '0A':
                continue
            addr, port = f[1].split(':')
            if len(addr) == 8:
                ip = socket.inet_ntoa(struct.pack('<I', int(addr, 16)))
            else:
                ip = socket.inet_ntop(socket.AF_INET6, b''.join(
                    struct.pack('<I', int(addr[i:i + 8], 16)) for i in range(0, 32, 8)))
            inodes[f[9]] = (ip, int(port, 16))
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        name = open('/proc/%s/comm' % pid).read().strip()
    except OSError:
        continue  # gone meanwhile
    try:
        fds = os.listdir('/proc/%s/fd' % pid)
    except FileNotFoundError:
        continue
    except OSError:
        print('UNREADABLE 0 %s' % name)  # a process whose sockets cannot be seen fails the check
        continue
    for fd in fds:
        try:
            target = os.readlink('/proc/%s/fd/%s' % (pid, fd))
        except OSError:
            continue
        if target.startswith('socket:[') and target[8:-1] in inodes:
            ip, port = inodes[target[8:-1]]
            print('%s %d %s' % (ip, port, name))
'''


def listeners(address):
    proc = ssh(address, 'sudo -n python3 -c %s' % shell_quote(LISTENERS))
    return sorted(set(tuple(line.split(' ', 2)) for line in proc.stdout.splitlines() if line.strip()))


def shell_quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


class Fleet(object):
    """The fleet as the tests see it from outside: the weights API, systemd on each host, the report."""

    def __init__(self):
        self.hosts = hosts()
        lb = resolved('lb-1', 'lb_api_url', 'lb_api_token')
        self.api, self.token = lb['lb_api_url'], lb['lb_api_token']

    def group(self, name):
        return sorted(h for h, v in self.hosts.items() if name in v['groups'])

    def address(self, host):
        return self.hosts[host]['address']

    def shares(self):
        req = urllib.request.Request(self.api + '/config/traffic-weights',
                                     headers={'Authorization': 'Bearer ' + self.token})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)['shares']

    def unit_state(self, host, unit):
        out = ssh(self.address(host), 'systemctl show %s --property=ActiveState --property=UnitFileState '
                                      '--property=MainPID --property=User' % unit).stdout
        return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)

    def ultra_fast_stopped_everywhere(self):
        for host in self.group('analyzers_ultra_fast'):
            state = self.unit_state(host, 'cohort-analyzer-ultra-fast')
            if state.get('ActiveState') not in ('inactive', 'failed') or state.get('MainPID') != '0':
                return False
            names = [name for _ip, _port, name in listeners(self.address(host))]
            if 'cohort-analyzer' in names:
                return False
        return True

    def original_healthy_everywhere(self):
        for host in self.group('analyzers_original'):
            with urllib.request.urlopen('http://%s:8080/readyz' % self.address(host), timeout=10) as resp:
                if resp.status != 200:
                    return False
        return True


def read_report():
    with open(REPORT, encoding='utf-8') as handle:
        return json.load(handle)
