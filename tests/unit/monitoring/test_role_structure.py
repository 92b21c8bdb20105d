"""The monitoring role's argument_specs match its defaults, and its templates use the datasource uid they provision."""
import os

import yaml

ROLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                    'roles', 'monitoring')


def _yaml(*parts):
    with open(os.path.join(ROLE, *parts)) as f:
        return yaml.safe_load(f)


def test_argument_specs_match_defaults():
    defaults = _yaml('defaults', 'main.yml')
    options = _yaml('meta', 'argument_specs.yml')['argument_specs']['main']['options']
    assert set(defaults) == set(options)
    for name, opt in options.items():
        assert name.startswith('monitoring_')
        if 'default' in opt:
            assert opt['default'] == defaults[name], name


def test_readme_lists_every_variable():
    with open(os.path.join(ROLE, 'README.md')) as f:
        readme = f.read()
    missing = [name for name in _yaml('defaults', 'main.yml') if '`%s`' % name not in readme]
    assert not missing


def test_dashboard_and_datasource_share_the_uid_variable():
    with open(os.path.join(ROLE, 'templates', 'dashboard.json.j2')) as f:
        dash = f.read()
    with open(os.path.join(ROLE, 'templates', 'grafana_datasource.yml.j2')) as f:
        ds = f.read()
    assert 'datasource_uid=monitoring_grafana_datasource_uid' in dash
    assert 'uid: {{ monitoring_grafana_datasource_uid }}' in ds
