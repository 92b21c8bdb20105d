"""Every code file the collection ships carries the collection's licence, and no other.

galaxy.yml says GPL-3.0-or-later; a file under plugins/ or roles/ that says anything else (a
copied header naming Apache 2.0, no header at all) makes the built tarball's licence a lie.
"""
import pathlib
import re
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
GPL_HEADER = '# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)'
OTHER_LICENCES = re.compile(r'apache|\bMIT\b|\bBSD\b|mozilla|\bMPL\b|\bLGPL\b|unlicense|public domain', re.I)


def _tracked(*dirs):
    out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '--', *dirs], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def _is_code(path):
    if path.suffix in ('.py', '.sh'):
        return True
    # scripts without an extension (roles/*/files/redis-config-check)
    with open(path, 'rb') as handle:
        return handle.read(2) == b'#!'


SHIPPED_CODE = sorted(p for p in _tracked('plugins', 'roles') if _is_code(p))


def test_the_collection_is_gpl3_or_later():
    galaxy = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
    assert galaxy['license'] == ['GPL-3.0-or-later']
    assert 'GNU GENERAL PUBLIC LICENSE' in (ROOT / 'COPYING').read_text()[:200]
    assert re.search(r'^license = "GPL-3.0-or-later"$', (ROOT / 'apps/cohort_analyzer/pyproject.toml').read_text(), re.M)


def test_code_files_found():
    names = {p.name for p in SHIPPED_CODE}
    # the files this test was written for: a supervisor that said Apache 2.0, a sink without a header
    assert {'haproxy_supervisor.py', 'webhook_sink.py', 'redis-config-check', 'cache_warm.py'} <= names


@pytest.mark.parametrize('path', SHIPPED_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_code_carries_the_collection_licence(path):
    head = path.read_text(encoding='utf-8').splitlines()[:6]
    assert GPL_HEADER in head, '%s: no GPL-3.0-or-later header in its first lines' % path.relative_to(ROOT)
    others = [line for line in head if OTHER_LICENCES.search(line)]
    assert not others, '%s names another licence: %s' % (path.relative_to(ROOT), others)
