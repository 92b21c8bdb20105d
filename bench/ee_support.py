"""Jobs run the way AWX runs them: ansible-runner with process isolation in the execution environment.

The harness of bench/ee_bench.py and of tests/ee (make ee-test, scripts/ee-test.sh), kept in bench/
(bench imports nothing from tests/). The EE tier has a fleet of
its own (name `ee`, directory .fleet/ee, addresses 127.0.0.200-230), so it runs beside the main
fleet (127.0.0.10-32), Molecule's hosts (127.0.0.40-79) and the benches (127.0.0.100+).

    python bench/ee_support.py inventory   write the fleet's inventory (scripts/ee-test.sh)
"""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import jinja2
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, '.venv', 'bin')
FLEET_NAME = 'ee'
FLEET_DIR = os.environ.get('COHORT_FLEET_DIR', os.path.join(ROOT, '.fleet', 'ee'))
INVENTORY = os.environ.get('COHORT_FLEET_INVENTORY', os.path.join(FLEET_DIR, 'inventory'))
EE_DIR = os.environ.get('COHORT_EE_DIR', os.path.join(ROOT, '.ee'))
CA_BUNDLE = os.environ.get('COHORT_EE_CA_BUNDLE', '/etc/ssl/certs/ca-certificates.crt')
LOAD_RATE = os.environ.get('EE_LOAD_RATE', '60')
FLEET_INVENTORY = os.path.join(ROOT, 'inventories', 'fleet')
# Only the hosts the jobs need: one analyzer per pool, the load balancer, Redis, monitoring.
HOSTS = (
    ('analyzers_original', 'analyzer-a1', '127.0.0.200'),
    ('analyzers_ultra_fast', 'analyzer-b1', '127.0.0.201'),
    ('loadbalancers', 'lb-1', '127.0.0.202'),
    ('redis', 'redis-1', '127.0.0.203'),
    ('monitoring', 'monitoring-1', '127.0.0.204'),
)
# A short canary: one bake of 10 s in 5 s samples (the fleet's spec otherwise).
CANARY = {'bake': '10s', 'interval': '5s', 'initial_delay': '0s', 'min_requests': 1}
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
           ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_FORCE_COLOR='0', ANSIBLE_NOCOLOR='1',
           COHORT_FLEET_NAME=FLEET_NAME, COHORT_FLEET_DIR=FLEET_DIR, COHORT_FLEET_INVENTORY=INVENTORY,
           # podman's settings of `make ee` (runc, cgroupfs, ulimits), for the runner's podman too
           CONTAINERS_CONF=os.path.join(EE_DIR, 'containers.conf'))


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's !unsafe tag."""


_Loader.add_constructor('!unsafe', lambda loader, node: loader.construct_scalar(node))


def load_yaml(*parts):
    with open(os.path.join(*parts), encoding='utf-8') as handle:
        return yaml.load(handle, Loader=_Loader)  # SafeLoader subclass


def ee_image(tag='latest'):
    """The EE's name as `make ee` tags it (scripts/ee.sh name prints <repository>:<version>)."""
    name = subprocess.run([os.path.join(ROOT, 'scripts', 'ee.sh'), 'name'], capture_output=True, text=True,
                          check=True).stdout.strip()
    return name if tag is None else name.rsplit(':', 1)[0] + ':' + tag


def write_inventory(directory=INVENTORY):
    """The fleet's inventory (inventories/fleet's variables) for HOSTS. Paths are relative to the
    inventory, so the same directory serves ansible-playbook on the host and, copied into a job's
    private data directory, the job in the EE. No SSH key in it: the job gets the key as AWX's
    machine credential supplies it (env/ssh_key), the host-side playbooks as --private-key."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(os.path.join(directory, 'group_vars', 'all'))
    groups = {}
    for group, host, address in HOSTS:
        groups.setdefault(group, {})[host] = {'ansible_host': address}
    hosts = {'all': {'vars': {'ansible_user': 'deploy', 'ansible_python_interpreter': '/usr/bin/python3'},
                     'children': {
                         'analyzers': {'vars': {'analyzer_port': 8080}, 'children': {
                             'analyzers_original': {'hosts': groups['analyzers_original']},
                             'analyzers_ultra_fast': {'hosts': groups['analyzers_ultra_fast']}}},
                         'loadbalancers': {'hosts': groups['loadbalancers']},
                         'redis': {'hosts': groups['redis']},
                         'monitoring': {'hosts': groups['monitoring']}}}}
    with open(os.path.join(directory, 'hosts.yml'), 'w', encoding='utf-8') as handle:
        handle.write('---\n# Written by bench/ee_support.py: the EE tier\'s own fleet.\n')
        yaml.safe_dump(hosts, handle, sort_keys=False)
    src = os.path.join(FLEET_INVENTORY, 'group_vars', 'all')
    dst = os.path.join(directory, 'group_vars', 'all')
    shutil.copy(os.path.realpath(os.path.join(src, 'main.yml')), os.path.join(dst, 'main.yml'))
    rollout = load_yaml(src, 'rollout.yml')
    canary = rollout['rollout_spec_overrides']['phases']['canary']
    canary.update(CANARY)
    canary['judge'] = None  # two samples are too few to judge (it would be inconclusive by design)
    with open(os.path.join(dst, 'rollout.yml'), 'w', encoding='utf-8') as handle:
        handle.write('---\n')
        yaml.safe_dump(rollout, handle, sort_keys=False)
    with open(os.path.join(src, 'overrides.yml'), encoding='utf-8') as handle:
        lines = handle.read().splitlines()
    # The key is the machine credential's; the rest stays beside the inventory.
    text = '\n'.join(line for line in lines if not line.startswith('ansible_ssh_private_key_file:'))
    text = text.replace('/../../.fleet', '/..')
    with open(os.path.join(dst, 'overrides.yml'), 'w', encoding='utf-8') as handle:
        handle.write(text + '\n')


def fleet(action):
    return subprocess.run([os.path.join(ROOT, 'scripts', 'fleet.sh'), action], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=900, check=False)


def playbook(name, *args, timeout=1800):
    """A playbook run from the host (outside the EE) against the EE tier's fleet."""
    argv = [os.path.join(BIN, 'ansible-playbook'), '-i', INVENTORY,
            '--private-key', os.path.join(FLEET_DIR, 'id_ed25519'), 'playbooks/' + name] + list(args)
    return subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout, check=False)


def resolved(*names):
    """Variables of lb-1 as Ansible templates them (the inventory templates its URLs)."""
    expr = '{{ {%s} | to_json }}' % ', '.join("'%s': %s" % (n, n) for n in names)
    proc = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible'), 'lb-1', '-i', INVENTORY, '-c', 'local',
                           '-m', 'ansible.builtin.debug', '-a', 'msg=' + expr], cwd=ROOT,
                          env=dict(ENV, ANSIBLE_LOAD_CALLBACK_PLUGINS='1', ANSIBLE_STDOUT_CALLBACK='ansible.posix.json'),
                          capture_output=True, text=True, check=True)
    msg = json.loads(proc.stdout)['plays'][0]['tasks'][0]['hosts']['lb-1']['msg']
    return json.loads(msg) if isinstance(msg, str) else msg


URLS = {}


def url(name):
    if not URLS:
        URLS.update(resolved('lb_api_url', 'prometheus_url'))
    return URLS[name]


def shares():
    """The live split, from the fleet's weights API, as an operator reads it."""
    req = urllib.request.Request(url('lb_api_url') + '/config/traffic-weights',
                                 headers={'Authorization': 'Bearer ' + secrets()['lb_api_token']})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)['shares']


def load(action):
    """Steady traffic through the fleet's load balancer (scripts/load.sh), as production has."""
    args = [LOAD_RATE, '1800'] if action == 'start' else []
    subprocess.run([os.path.join(ROOT, 'scripts', 'load.sh'), action] + args, cwd=ROOT,
                   env=dict(ENV, LOAD_INVENTORY=INVENTORY, LOAD_STATE_DIR=os.path.join(FLEET_DIR, 'load')),
                   check=True, capture_output=True, text=True)


def prometheus_has(query):
    q = url('prometheus_url') + '/api/v1/query?' + urllib.parse.urlencode({'query': query})
    with urllib.request.urlopen(q, timeout=10) as resp:
        result = json.load(resp)['data']['result']
    return any(item['value'][1] not in ('NaN', '+Inf', '-Inf') for item in result)


def wait_for_traffic(timeout=180):
    """Until Prometheus has seen the load: preflight's checklist reads the baseline's database p99,
    and no data is a failed item."""
    deadline = time.monotonic() + timeout
    query = 'max(db_query_latency_p99{variant="original"})'
    while not prometheus_has(query):
        if time.monotonic() > deadline:
            raise AssertionError('no %s in Prometheus %d s after the load started' % (query, timeout))
        time.sleep(3)


# --- AWX's side: job templates, survey answers, the credential type's injectors -------------------------

AWX = {}
for _name in ('job_templates.yml', 'credential_type.yml', 'main.yml'):
    AWX.update(load_yaml(ROOT, 'awx', 'vars', _name))


def survey_defaults(template):
    """What AWX passes when the operator accepts every default of the survey."""
    answers = {}
    for question in AWX['awx_job_templates'][template]['survey']:
        if question['required'] or question['default'] != '':
            answers[question['variable']] = question['default']
    return answers


def secrets():
    """The secrets of the fleet's inventory (its test values), as the AWX credential would hold them."""
    overrides = load_yaml(FLEET_INVENTORY, 'group_vars', 'all', 'overrides.yml')
    return {'lb_api_token': overrides['vault_lb_api_token'], 'redis_password': overrides['vault_redis_password']}


def injected_secrets():
    """The credential type's injectors rendered as AWX does at launch (missing optional inputs: '')."""
    env = jinja2.Environment()
    return {name: env.from_string(template).render(**secrets())
            for name, template in AWX['awx_credential_type_injectors']['extra_vars'].items()}


def project_files():
    """The checkout's files as a project sync would have them (tracked and not ignored)."""
    out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=ROOT, capture_output=True,
                         check=True).stdout
    return [name for name in out.decode().split('\0') if name]


def copy_project(dest):
    """AWX copies the synced project into the job's private data directory (project/)."""
    for name in project_files():
        src = os.path.join(ROOT, name)
        if not os.path.lexists(src):
            continue  # deleted in the work tree, not yet committed
        target = os.path.join(dest, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), target)
        else:
            shutil.copy2(src, target)


class Job(object):
    """One finished runner job: status, rc, stdout, events, wall seconds."""

    def __init__(self, pdd, ident, seconds, proc):
        self.pdd, self.seconds, self.proc = pdd, seconds, proc
        artifacts = os.path.join(pdd, 'artifacts', ident)
        self.status = _read(os.path.join(artifacts, 'status')).strip()
        self.rc = _read(os.path.join(artifacts, 'rc')).strip()
        # What AWX shows, without the terminal's colours.
        self.stdout = re.sub(r'\x1b\[[0-9;]*m', '', _read(os.path.join(artifacts, 'stdout')))
        # The command ansible-runner ran: podman run ... <image> ... ansible-playbook ...
        try:
            with open(os.path.join(artifacts, 'command'), encoding='utf-8') as handle:
                self.command = json.load(handle).get('command') or []
        except (OSError, ValueError):
            self.command = []
        self.events = []
        events_dir = os.path.join(artifacts, 'job_events')
        for name in sorted(os.listdir(events_dir)) if os.path.isdir(events_dir) else []:
            if name.endswith('.json'):
                with open(os.path.join(events_dir, name), encoding='utf-8') as handle:
                    self.events.append(json.load(handle))

    def tail(self, lines=80):
        """The job's stdout (what AWX shows), its last lines, for an assertion message."""
        text = '\n'.join(self.stdout.splitlines()[-lines:])
        return 'job status=%s rc=%s after %.0f s; stdout:\n%s\nrunner stderr:\n%s' % (
            self.status, self.rc, self.seconds, text, self.proc.stderr[-3000:])


def _read(path):
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return handle.read()
    except FileNotFoundError:
        return ''


def runner_argv(pdd, playbook_path, ident, image=None):
    """ansible-runner's command line for a job in the EE, as AWX's launch would have it."""
    argv = [os.path.join(BIN, 'ansible-runner'), 'run', pdd, '--ident', ident, '-p', playbook_path,
            '--process-isolation', '--process-isolation-executable', 'podman',
            '--container-image', image or ee_image(),
            # The host's network (podman's default bridge is a private range, not used here), and
            # root in the container: root podman's bind mount of the private data dir is root's.
            '--container-option=--network=host', '--container-option=--user=0']
    if CA_BUNDLE:
        # The job's controller downloads the hosts' wheelhouse from the package index through a
        # network that intercepts TLS: the host's CA bundle over the image's, read-only, for this
        # job only (AWX: "Paths to expose to isolated jobs"). The image keeps Debian's bundle.
        argv.append('--container-volume-mount=%s:/etc/ssl/certs/ca-certificates.crt:ro' % CA_BUNDLE)
    return argv


def run_job(workdir, template=None, playbook_path=None, extravars=None, image=None, timeout=1500):
    """Run a job template's playbook (or playbook_path of the project) in the EE as AWX would:
    a private data directory with the project copied in, the inventory, the survey defaults plus
    what the secrets credential injects (env/extravars), the machine credential's key (env/ssh_key),
    AWX's idle and job timeouts (env/settings)."""
    ident = template or os.path.basename(playbook_path).split('.')[0]
    pdd = os.path.join(workdir, 'job-%s-%d' % (ident, int(time.time() * 1000)))
    os.makedirs(os.path.join(pdd, 'env'))
    os.makedirs(os.path.join(pdd, 'cp'), mode=0o700)
    copy_project(os.path.join(pdd, 'project'))
    shutil.copytree(INVENTORY, os.path.join(pdd, 'inventory'))
    shutil.copy(os.path.join(FLEET_DIR, 'known_hosts'), os.path.join(pdd, 'known_hosts'))
    variables = dict(survey_defaults(template)) if template else {}
    variables.update(injected_secrets())
    variables.update(extravars or {})
    _write(os.path.join(pdd, 'env', 'extravars'), yaml.safe_dump(variables))
    _write(os.path.join(pdd, 'env', 'ssh_key'), _read(os.path.join(FLEET_DIR, 'id_ed25519')))
    _write(os.path.join(pdd, 'env', 'envvars'), yaml.safe_dump({'ANSIBLE_FORCE_COLOR': 'false'}))
    _write(os.path.join(pdd, 'env', 'settings'), yaml.safe_dump({'idle_timeout': 600, 'job_timeout': timeout}))
    path = playbook_path or AWX['awx_job_templates'][template]['playbook']
    start = time.monotonic()
    proc = subprocess.run(runner_argv(pdd, path, ident, image), cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout + 120, check=False)
    return Job(pdd, ident, time.monotonic() - start, proc)


def _write(path, text):
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def in_ee(script, *args, image=None, timeout=300):
    """Run a Python script inside the EE (its own Python: the one that runs ansible-playbook)."""
    argv = ['podman', 'run', '--rm', '--network', 'host', '--user', '0', '-v', ROOT + ':/runner/project:ro',
            '--workdir', '/runner/project', image or ee_image(), 'python3', '-c', script] + list(args)
    return subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=timeout, check=False)


# --- What the EE must hold, derived from the code -----------------------------------------------------------

def plugin_names():
    """{'module': [...], 'action': [...], 'filter': [...]} of the collection, from plugins/."""
    found = {}
    for kind, folder in (('module', 'modules'), ('action', 'action')):
        directory = os.path.join(ROOT, 'plugins', folder)
        found[kind] = sorted(n[:-3] for n in os.listdir(directory) if n.endswith('.py') and not n.startswith('_'))
    filters = []
    directory = os.path.join(ROOT, 'plugins', 'filter')
    for name in sorted(os.listdir(directory)):
        if not name.endswith('.py'):
            continue
        with open(os.path.join(directory, name), encoding='utf-8') as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == 'filters':
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict):
                        filters += [key.value for key in ret.value.keys]
    found['filter'] = sorted(filters)
    return found


def own_packages():
    """Python packages this repository ships itself (apps/*/): installed on the hosts, not in the EE."""
    names = set()
    for app in os.listdir(os.path.join(ROOT, 'apps')):
        for layout in (os.path.join(ROOT, 'apps', app, 'src'), os.path.join(ROOT, 'apps', app)):
            if os.path.isdir(layout):
                names.update(n for n in os.listdir(layout) if os.path.isfile(os.path.join(layout, n, '__init__.py')))
    return names


def plugin_imports():
    """Top-level names of every library the collection's plugins import (at module level or inside a
    function), less the standard library, Ansible itself and this repository's own packages."""
    names = set()
    for folder, _dirs, files in os.walk(os.path.join(ROOT, 'plugins')):
        for name in files:
            if not name.endswith('.py'):
                continue
            with open(os.path.join(folder, name), encoding='utf-8') as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split('.')[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split('.')[0])
    skip = set(sys.stdlib_module_names) | {'__future__', 'ansible', 'ansible_collections'} | own_packages()
    return sorted(names - skip)


if __name__ == '__main__':
    if sys.argv[1:] == ['inventory']:
        write_inventory()
        print(INVENTORY)
    else:
        sys.exit('usage: ee_support.py inventory')
