"""The AWX configuration as data (awx/vars/*.yml), checked without an AWX server.

The workflow graph must never let a rolled-back deployment look green: every failure
edge leads to the rollback job, and both outcomes of the rollback lead to a node that
fails on purpose. The checker is itself tested on broken copies of the graph.
"""
import copy
import glob
import os
import re
import subprocess
import sys

import jinja2
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AWX_DIR = os.path.join(ROOT, 'awx')
BIN = os.path.dirname(sys.executable)
PHASES = ('preflight', 'canary', 'ramp', 'rollout')
SURVEY_TYPES = {'text', 'textarea', 'password', 'integer', 'float', 'multiplechoice', 'multiselect'}


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's !unsafe tag (kept as a plain string)."""


_Loader.add_constructor('!unsafe', lambda loader, node: loader.construct_scalar(node))


def load_yaml(path):
    with open(path, encoding='utf-8') as handle:
        return yaml.load(handle, Loader=_Loader)  # SafeLoader subclass


def load_awx_vars():
    merged = {}
    for path in sorted(glob.glob(os.path.join(AWX_DIR, 'vars', '*.yml'))):
        data = load_yaml(path) or {}
        clash = set(data) & set(merged)
        assert not clash, '%s redefines %s' % (path, sorted(clash))
        merged.update(data)
    return merged


def render(value, variables):
    if isinstance(value, str) and '{{' in value:
        return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(**variables)
    return value


# -- the graph checker ----------------------------------------------------------
EDGE_KINDS = ('success_nodes', 'failure_nodes', 'always_nodes')


def graph_of(nodes, variables):
    """{identifier: {'kind': 'job'|'approval', 'template': <job template key>, 'edges': {kind: [ids]}}}."""
    by_name = {jt['name']: key for key, jt in variables['awx_job_templates'].items()}
    graph = {}
    for node in nodes:
        ujt = node['unified_job_template']
        if ujt['type'] == 'workflow_approval':
            kind, template = 'approval', None
        else:
            kind, template = 'job', by_name.get(render(ujt['name'], variables), '?' + str(ujt['name']))
        related = node.get('related') or {}
        graph[node['identifier']] = dict(
            kind=kind, template=template,
            edges={k: [e['identifier'] for e in related.get(k) or []] for k in EDGE_KINDS})
    return graph


def successors(graph, ident):
    edges = graph[ident]['edges']
    return edges['success_nodes'] + edges['failure_nodes'] + edges['always_nodes']


def leaves_from(graph, start):
    seen, stack, leaves = set(), [start], set()
    while stack:
        ident = stack.pop()
        if ident in seen:
            continue
        seen.add(ident)
        nxt = successors(graph, ident)
        if not nxt:
            leaves.add(ident)
        stack.extend(nxt)
    return leaves


def is_fail_node(graph, ident):
    return graph[ident]['kind'] == 'job' and graph[ident]['template'] == 'fail_workflow'


def is_rollback(graph, ident):
    return graph[ident]['kind'] == 'job' and graph[ident]['template'] == 'rollback'


def problems_of(graph):
    """Everything wrong with the workflow graph (empty = good)."""
    problems = []
    for ident, node in graph.items():
        for kind, targets in node['edges'].items():
            for target in targets:
                if target not in graph:
                    problems.append('%s: %s points to unknown node %s' % (ident, kind, target))
    if problems:
        return problems
    # Acyclic, one root.
    state = {}

    def visit(ident, path):
        if state.get(ident) == 'open':
            problems.append('cycle through %s' % ' -> '.join(path + [ident]))
            return
        if state.get(ident) == 'done':
            return
        state[ident] = 'open'
        for nxt in successors(graph, ident):
            visit(nxt, path + [ident])
        state[ident] = 'done'

    for ident in graph:
        visit(ident, [])
    targets = {t for ident in graph for t in successors(graph, ident)}
    roots = [ident for ident in graph if ident not in targets]
    if [graph[r]['template'] for r in roots] != ['preflight']:
        problems.append('the workflow must start at preflight alone, roots: %s' % roots)

    # The happy path: preflight -> canary -> approval -> ramp -> approval -> rollout, by success edges.
    expected = ['preflight', 'canary', None, 'ramp', None, 'rollout']
    current = roots[0] if roots else None
    for step, want in enumerate(expected):
        if current is None:
            problems.append('the success path stops before %s' % (want or 'an approval'))
            break
        node = graph[current]
        if want is None and node['kind'] != 'approval':
            problems.append('step %d of the success path must be an approval, not %s' % (step + 1, current))
        if want is not None and node['template'] != want:
            problems.append('step %d of the success path must be %s, not %s' % (step + 1, want, current))
        nxt = node['edges']['success_nodes']
        if step < len(expected) - 1:
            if len(nxt) != 1:
                problems.append('%s must have exactly one success edge, has %s' % (current, nxt))
                current = None
            else:
                current = nxt[0]
        elif nxt:
            problems.append('the last phase %s must end the workflow on success, has %s' % (current, nxt))

    # No "always" edge anywhere: it would run the next phase after a failure.
    for ident, node in graph.items():
        if node['edges']['always_nodes']:
            problems.append('%s has an always edge: a failure must never continue the rollout' % ident)

    # Every phase and approval: its failure goes to the rollback job.
    for ident, node in graph.items():
        if is_rollback(graph, ident) or is_fail_node(graph, ident):
            continue
        fail = node['edges']['failure_nodes']
        if len(fail) != 1 or not is_rollback(graph, fail[0]):
            problems.append('%s: its failure must lead to the rollback job, leads to %s' % (ident, fail))

    # The rollback: success AND failure lead to a node that fails on purpose, which ends the workflow.
    for ident in graph:
        if not is_rollback(graph, ident):
            continue
        for kind in ('success_nodes', 'failure_nodes'):
            targets = graph[ident]['edges'][kind]
            if len(targets) != 1 or not is_fail_node(graph, targets[0]):
                problems.append('rollback %s: its %s must be one failing node, are %s' % (ident, kind, targets))
    for ident in graph:
        if is_fail_node(graph, ident) and successors(graph, ident):
            problems.append('failing node %s must end the workflow, continues to %s' % (ident, successors(graph, ident)))

    # The invariant itself: after any failure edge, every way the workflow can end is a failing node.
    for ident, node in graph.items():
        for target in node['edges']['failure_nodes']:
            bad = sorted(leaf for leaf in leaves_from(graph, target) if not is_fail_node(graph, leaf))
            if bad:
                problems.append('failure of %s can end green at %s' % (ident, bad))
    return problems


@pytest.fixture(scope='module')
def awx_vars():
    return load_awx_vars()


@pytest.fixture(scope='module')
def graph(awx_vars):
    return graph_of(awx_vars['awx_workflow_nodes'], awx_vars)


def test_workflow_graph_has_no_problem(graph):
    assert problems_of(graph) == []


def test_workflow_runs_every_phase_template(graph):
    used = {node['template'] for node in graph.values() if node['kind'] == 'job'}
    assert used == set(PHASES) | {'rollback', 'fail_workflow'}
    assert sum(1 for node in graph.values() if node['kind'] == 'approval') == 2


def test_each_phase_failure_reaches_rollback_then_a_failing_node(graph):
    for phase in PHASES:
        ident = next(i for i, n in graph.items() if n['template'] == phase)
        rollback = graph[ident]['edges']['failure_nodes']
        assert len(rollback) == 1 and is_rollback(graph, rollback[0]), phase
        ends = leaves_from(graph, rollback[0])
        assert ends and all(is_fail_node(graph, end) for end in ends), (phase, ends)


def test_fail_nodes_carry_distinct_reasons(awx_vars):
    reasons = {n['identifier']: n['extra_data']['fail_workflow_reason']
               for n in awx_vars['awx_workflow_nodes']
               if render(n['unified_job_template']['name'], awx_vars) == awx_vars['awx_job_templates']['fail_workflow']['name']}
    assert set(reasons) == {'rolled_back', 'rollback_failed'}
    assert 'ROLLBACK FAILED' in reasons['rollback_failed']
    assert 'rolled back' in reasons['rolled_back']


def _mutate(graph, ident, kind, targets):
    broken = copy.deepcopy(graph)
    broken[ident]['edges'][kind] = targets
    return broken


@pytest.mark.parametrize('ident, kind, targets, expected', [
    ('rollback', 'failure_nodes', [], 'its failure_nodes must be one failing node'),
    ('rollback', 'success_nodes', [], 'its success_nodes must be one failing node'),
    ('ramp', 'failure_nodes', [], 'ramp: its failure must lead to the rollback job'),
    ('approve_ramp', 'failure_nodes', [], 'approve_ramp: its failure must lead to the rollback job'),
    ('canary', 'success_nodes', ['ramp'], 'must be an approval'),
    ('canary', 'always_nodes', ['approve_ramp'], 'has an always edge'),
    ('rolled_back', 'success_nodes', ['canary'], 'must end the workflow'),
    ('canary', 'failure_nodes', ['nowhere'], 'unknown node'),
    ('rollout', 'success_nodes', ['preflight'], 'cycle'),
])
def test_checker_finds_broken_graphs(graph, ident, kind, targets, expected):
    problems = problems_of(_mutate(graph, ident, kind, targets))
    assert any(expected in p for p in problems), problems


def test_checker_finds_a_failure_branch_that_ends_green(graph):
    broken = copy.deepcopy(graph)
    # The rollback leads to a harmless job instead of the failing one.
    broken['rolled_back']['template'] = 'preflight'
    problems = problems_of(broken)
    assert any('can end green at' in p for p in problems), problems


# -- job templates and surveys ------------------------------------------------------
def _survey_questions(awx_vars):
    for key, jt in awx_vars['awx_job_templates'].items():
        for question in jt['survey']:
            yield key, question


def test_job_templates_cover_every_phase_playbook(awx_vars):
    jts = awx_vars['awx_job_templates']
    for phase in PHASES + ('rollback',):
        assert jts[phase]['playbook'] == 'playbooks/%s.yml' % phase
    assert jts['fail_workflow']['playbook'] == 'awx/playbooks/fail_workflow.yml'
    names = [jt['name'] for jt in jts.values()]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize('key', list(PHASES) + ['rollback', 'fail_workflow'])
def test_job_template_playbook_exists(awx_vars, key):
    path = os.path.join(ROOT, awx_vars['awx_job_templates'][key]['playbook'])
    assert os.path.isfile(path), 'missing playbook %s' % path


def test_surveys_are_well_formed_and_validated(awx_vars):
    for key, q in _survey_questions(awx_vars):
        where = '%s/%s' % (key, q.get('variable'))
        for field in ('question_name', 'question_description', 'variable', 'type', 'required'):
            assert field in q, '%s lacks %s' % (where, field)
        assert q['type'] in SURVEY_TYPES, where
        assert 'default' in q, '%s needs a default (ansible-runner jobs use it)' % where
        if q['type'] in ('integer', 'float'):
            assert q['min'] <= q['default'] <= q['max'], where
        elif q['type'] in ('text', 'textarea', 'password'):
            assert 0 <= q['min'] <= len(q['default']) <= q['max'], where
            # An optional empty answer means "keep the playbook's default"; a required one must not be empty.
            assert q['min'] > 0 if q['required'] else q['default'] == '', where
        elif q['type'] == 'multiplechoice':
            assert isinstance(q['choices'], list) and q['default'] in q['choices'], where
    for key, jt in awx_vars['awx_job_templates'].items():
        variables = [q['variable'] for q in jt['survey']]
        assert len(variables) == len(set(variables)), key


def test_fault_drills_are_never_in_a_survey(awx_vars):
    offered = {q['variable'] for _key, q in _survey_questions(awx_vars)}
    assert not [v for v in offered if v.startswith('analyzer_fault_')]
    with open(os.path.join(AWX_DIR, 'configure.yml'), encoding='utf-8') as handle:
        text = handle.read()
    # No free-form extra vars either, on job templates and on the workflow.
    assert 'ask_variables_on_launch: true' not in text
    assert text.count('ask_variables_on_launch: false') == 2


def _roles_of_playbook(path):
    """Role names a playbook applies: roles:, include_role and import_role (FQCN or short)."""
    names = set()

    def walk(obj):
        if isinstance(obj, dict):
            for key, value in obj.items():
                if key == 'roles' and isinstance(value, list):
                    for role in value:
                        names.add(role['role'] if isinstance(role, dict) else role)
                elif key in ('ansible.builtin.include_role', 'ansible.builtin.import_role', 'include_role',
                             'import_role') and isinstance(value, dict):
                    names.add(value['name'])
                else:
                    walk(value)
        elif isinstance(obj, list):
            for item in obj:
                walk(item)

    walk(load_yaml(path))
    return {name.split('.')[-1] for name in names}


def _variables_read_by(playbook_path):
    """Play vars, and every option of the argument specs / defaults of the roles the playbook applies."""
    known = set()
    plays = load_yaml(playbook_path) or []
    for play in plays:
        if isinstance(play, dict):
            known.update((play.get('vars') or {}).keys())
            if play.get('ansible.builtin.import_playbook') or play.get('import_playbook'):
                inner = play.get('ansible.builtin.import_playbook') or play.get('import_playbook')
                known |= _variables_read_by(os.path.join(os.path.dirname(playbook_path), inner))
    for role in _roles_of_playbook(playbook_path):
        specs = os.path.join(ROOT, 'roles', role, 'meta', 'argument_specs.yml')
        if os.path.isfile(specs):
            for entry in (load_yaml(specs) or {}).get('argument_specs', {}).values():
                known.update((entry.get('options') or {}).keys())
        defaults = os.path.join(ROOT, 'roles', role, 'defaults', 'main.yml')
        if os.path.isfile(defaults):
            values = load_yaml(defaults) or {}
            known.update(values.keys())
            # A default may read an outside name (phase_force: "{{ force_phase | default(false) }}").
            for value in values.values():
                for expr in re.findall(r'{{(.*?)}}', str(value)):
                    known.update(re.findall(r'[A-Za-z_][A-Za-z0-9_]*', expr))
    return known


def _role_defaults_of(playbook_path):
    merged = {}
    for role in _roles_of_playbook(playbook_path):
        defaults = os.path.join(ROOT, 'roles', role, 'defaults', 'main.yml')
        if os.path.isfile(defaults):
            merged.update(load_yaml(defaults) or {})
    return merged


@pytest.mark.parametrize('key', list(PHASES) + ['rollback', 'fail_workflow'])
def test_survey_variables_are_read_by_the_playbook(awx_vars, key):
    jt = awx_vars['awx_job_templates'][key]
    path = os.path.join(ROOT, jt['playbook'])
    assert os.path.isfile(path), 'missing playbook %s' % path
    known = _variables_read_by(path)
    missing = [q['variable'] for q in jt['survey'] if q['variable'] not in known]
    assert not missing, '%s: survey variables %s are in no argument spec, defaults or play vars of %s' % (
        key, missing, jt['playbook'])


# -- the credential type --------------------------------------------------------------
def test_credential_type_injects_every_secret_as_secret(awx_vars):
    inputs = awx_vars['awx_credential_type_inputs']
    fields = {f['id']: f for f in inputs['fields']}
    assert {'lb_api_token', 'redis_password'} <= set(inputs['required'])
    for ident, field in fields.items():
        assert field.get('secret', False) == (ident != 'prometheus_username'), ident
    injected = awx_vars['awx_credential_type_injectors']['extra_vars']
    assert set(injected) == set(fields)
    for ident, template in injected.items():
        assert template == '{{ %s }}' % ident


def test_credential_inputs_are_never_logged():
    plays = load_yaml(os.path.join(AWX_DIR, 'configure.yml'))
    tasks = [t for play in plays for t in play['tasks']]
    handling = [t for t in tasks if 'awx_secrets_credential_inputs' in yaml.safe_dump(t)
                and 'awx.awx.credential' in t]
    assert handling, 'no task creates the secrets credential'
    assert all(t.get('no_log') is True for t in handling)


def test_configure_playbook_syntax():
    run = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '--syntax-check', 'awx/configure.yml'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_fail_workflow_playbook_fails_with_the_reason():
    reason = 'drill: rolled back in a unit test'
    run = subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'awx/playbooks/fail_workflow.yml',
                          '-e', 'fail_workflow_reason=%r' % reason],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert reason in run.stdout


def test_numeric_survey_defaults_are_the_roles_defaults(awx_vars):
    """A number the survey pre-fills must be what the playbook does anyway."""
    checked = 0
    for key, jt in awx_vars['awx_job_templates'].items():
        path = os.path.join(ROOT, jt['playbook'])
        if not os.path.isfile(path):
            continue
        defaults = _role_defaults_of(path)
        for q in jt['survey']:
            if q['type'] in ('integer', 'float') and q['variable'] in defaults:
                assert q['default'] == defaults[q['variable']], (key, q['variable'])
                checked += 1
    assert checked >= 1
