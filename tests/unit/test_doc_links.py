"""Every link in the README and the docs resolves inside this repository.

A reader of the collection (from Galaxy, a tarball or a clone) has the repository and nothing else: a
relative link must name a file (or directory) of the repository, an anchor must name a heading of the
target, and no document may point at a path of the machine it was written on (``/work/...``).
"""
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINK = re.compile(r'(?<!\!)\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
IMAGE = re.compile(r'!\[[^\]]*\]\(\s*([^)\s]+)')
REFERENCE = re.compile(r'^\s*\[[^\]]+\]:\s*(\S+)', re.M)
FENCE = re.compile(r'^```.*?^```', re.M | re.S)
# Absolute paths of a development machine: never valid for a reader.
MACHINE_PATH = re.compile(r'(?:^|[\s(\'"`<])(/work/|/home/|/root/|/Users/)[^\s`)>]*', re.M)


def _documents():
    out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '--', '*.md'], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    docs = [ROOT / line for line in out.splitlines()
            if not line.startswith(('collections/ansible_collections/', '.venv/', '.sandbox/'))]
    return sorted(p for p in docs if p.is_file())


DOCUMENTS = _documents()


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'[`*_]', '', heading.strip().lower())
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def _anchors(path):
    text = FENCE.sub('', path.read_text(encoding='utf-8'))
    return {_slug(m.group(1)) for m in re.finditer(r'^#{1,6}\s+(.+?)\s*#*\s*$', text, re.M)}


def _targets(text):
    text = FENCE.sub('', text)
    for pattern in (LINK, IMAGE, REFERENCE):
        for match in pattern.finditer(text):
            yield match.group(1)


def test_documents_found():
    names = {str(p.relative_to(ROOT)) for p in DOCUMENTS}
    assert {'README.md', 'docs/runbook.md', 'docs/performance.md', 'roles/monitoring/README.md'} <= names


@pytest.mark.parametrize('doc', DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(doc):
    bad = []
    for target in _targets(doc.read_text(encoding='utf-8')):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):  # http:, https:, mailto:
            continue
        path_part, _sep, anchor = target.partition('#')
        if path_part.startswith('/'):
            bad.append('%s: absolute path' % target)
            continue
        resolved = (doc.parent / path_part).resolve() if path_part else doc
        if ROOT != resolved and ROOT not in resolved.parents:
            bad.append('%s: outside the repository' % target)
        elif not resolved.exists():
            bad.append('%s: no such file' % target)
        elif anchor and resolved.suffix == '.md' and anchor not in _anchors(resolved):
            bad.append('%s: no heading #%s in %s' % (target, anchor, resolved.relative_to(ROOT)))
    assert not bad, '%s: %s' % (doc.relative_to(ROOT), bad)


@pytest.mark.parametrize('doc', DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_path_of_the_development_machine(doc):
    text = doc.read_text(encoding='utf-8')
    found = [m.group(0).strip() for m in MACHINE_PATH.finditer(text)]
    assert not found, '%s points outside the repository: %s' % (doc.relative_to(ROOT), found)


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The link pattern finds the links a broken document would have."""
    text = ('see [a](docs/a.md), [b](../../outside.md "t"), ![img](x.png), [c](#here)\n'
            '[ref]: ../x.md\n```\n[not a link](in/a/fence.md)\n```\n')
    assert list(_targets(text)) == ['docs/a.md', '../../outside.md', '#here', 'x.png', '../x.md']
    assert MACHINE_PATH.search('from `/work/shared/seed/runbook.md`')
    assert _slug('Defaults (the runbook)') == 'defaults-the-runbook'
