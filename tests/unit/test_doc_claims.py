"""Claims in the README and docs point at what backs them, and say what that asserts.

* Every "tested" in the README names the test (a tests/ file that exists) in the same bullet or paragraph.
* The README's first-minute cache hit rate is the threshold tests/integration/test_cache_first_minute.py
  asserts (the rollout gate of the spec), not a measured value passed off as tested.
* Every bench/ or tests/ path the README and docs/ mention exists (a speed claim names its benchmark).
"""
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / 'README.md').read_text()
DOCS = {p: p.read_text() for p in [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))}


def _blocks(text):
    """Paragraphs and list items (a bullet with its continuation lines)."""
    blocks, current = [], []
    for line in text.splitlines():
        if not line.strip() or re.match(r'^\s*([-*]|\d+\.)\s', line):
            if current:
                blocks.append(' '.join(current))
            current = [line.strip()] if line.strip() else []
        else:
            current.append(line.strip())
    if current:
        blocks.append(' '.join(current))
    return blocks


def test_every_tested_claim_names_its_test():
    claims = [b for b in _blocks(README) if re.search(r'\btested\b', b) and 'not tested' not in b
              and 'not exercised' not in b]
    assert claims, 'no "tested" claim found in README.md (the test reads the wrong file?)'
    for block in claims:
        tests = re.findall(r'tests/[\w/]+\.py', block)
        assert tests, 'README claims "tested" without naming the test: %s' % block
        for test in tests:
            assert (ROOT / test).is_file(), test


def test_cache_first_minute_claim_is_what_the_test_asserts():
    source = (ROOT / 'tests' / 'integration' / 'test_cache_first_minute.py').read_text()
    asserted = float(re.search(r'^ROLLOUT_GATE = ([0-9.]+)', source, re.M).group(1))
    assert re.search(r'hits / \(hits \+ misses\) > ROLLOUT_GATE', source)
    spec = yaml.safe_load((ROOT / 'playbooks' / 'group_vars' / 'all' / 'rollout_spec.yml').read_text())
    spec = spec['rollout_spec_defaults']
    assert spec['gates']['cache_hit_rate']['op'] == 'gt'
    assert float(spec['phases']['rollout']['gates']['cache_hit_rate']['threshold']) == asserted
    [block] = [b for b in _blocks(README) if 'first minute' in b and 'hit rate' in b]
    tested = re.search(r'hit rate in its first minute is ([^(;]*?)\(tested', block)
    assert tested, block
    claim = tested.group(1)
    numbers = [float(n) for n in re.findall(r'\d\.\d+', claim)]
    assert numbers == [asserted] and 'above' in claim, 'README says %r "(tested)"; the test asserts > %s' % (
        claim, asserted)


def test_mentioned_bench_and_test_files_exist():
    missing = []
    for path, text in DOCS.items():
        for mention in sorted(set(re.findall(r'\b((?:bench|tests)/[\w./-]+\.(?:py|sh))\b', text))):
            if not (ROOT / mention).is_file():
                missing.append('%s: %s' % (path.relative_to(ROOT), mention))
    assert not missing, missing


def test_weight_math_claim_names_its_benchmark():
    perf = (ROOT / 'docs' / 'performance.md').read_text()
    [block] = [b for b in _blocks(perf) if 'weight math' in b.lower()]
    assert 'bench/weight_math_bench.py' in block
