#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: cache_warm
short_description: Preload the cohort analyzer's Redis cache with the results it will be asked for
version_added: "0.1.0"
description:
  - Computes the cohorts of a stream of learner sets with the analyzer's C(ultra_fast) engine, reading the
    analyzer's database, and writes them into Redis in exactly the key and value format the analyzer reads.
    That format is defined once, in the C(cohort_analyzer) package (C(cohort_analyzer.cache),
    C(cohort_analyzer.warm.iter_entries)); this module imports it rather than repeating it.
  - Every key is written with C(SET key value EX ttl), so no key is ever left without a TTL.
  - Pipelined in batches of O(batch_size) commands per round trip. Keys that are already fresh (remaining TTL at
    least O(fresh_ttl)) are checked per batch with pipelined C(TTL) commands and neither recomputed nor rewritten,
    unless O(force=true).
  - Streams its input (learner sets, database reads, Redis batches), so memory stays flat however many keys.
  - Runs on the target host, which must have the C(cohort-analyzer) package and the C(redis) Python client
    installed. Point C(ansible_python_interpreter) at the analyzer's venv (the C(analyzer) role creates one on
    analyzer hosts). O(path) and O(db) are paths on that host.
  - A warm-up that stops half way (Redis down, a bad learner set found late in a file) fails the task, with the
    counts of what was written before it stopped.
author:
  - cohort.rollout contributors (@cohort)
requirements:
  - cohort-analyzer (the reference analyzer package, C(apps/cohort_analyzer))
  - redis (redis-py)
options:
  redis_url:
    description:
      - URL of the Redis the analyzer uses, for example V(redis://127.0.0.1:6379/0).
      - V(rediss://) URLs use TLS with certificate verification (redis-py's default).
      - Never logged (a URL may carry a password, V(redis://:secret@host:6379/0)); error messages name the server as
        C(host:port db N).
    type: str
    required: true
  redis_password:
    description:
      - Password of the Redis (C(requirepass)). Never logged.
    type: str
  db:
    description:
      - The analyzer's database, as given to C(cohort-analyzer serve --db) (an SQLite path or a PostgreSQL DSN).
      - It must exist already; the cohorts are computed from it.
      - Never logged (a DSN carries credentials).
    type: str
    required: true
  source:
    description:
      - Where the learner sets come from.
      - V(load_pattern) is the pool the load generator draws its requests from
        (C(cohort_analyzer.loadpattern.learner_sets)), with O(pool_size), O(seed), O(n_learners), O(min_set_size) and
        O(max_set_size); each defaults to the load generator's default, so warming with defaults makes the default
        load hit the cache.
      - V(list) takes them from O(learner_sets).
      - V(file) reads O(path), JSON lines, one list of learner ids per line, streamed.
    type: str
    choices: [load_pattern, list, file]
    default: load_pattern
  pool_size:
    description:
      - O(source=load_pattern) only. Number of learner sets in the pool. Default the load generator's.
    type: int
  seed:
    description:
      - O(source=load_pattern) only. Seed of the pool. Default the load generator's.
    type: int
  n_learners:
    description:
      - O(source=load_pattern) only. Size of the data set the ids are drawn from (ids 1..n_learners); use the
        analyzer's C(--learners). Default the load generator's.
    type: int
  min_set_size:
    description:
      - O(source=load_pattern) only. Smallest learner set in the pool. Default the load generator's.
    type: int
  max_set_size:
    description:
      - O(source=load_pattern) only. Largest learner set in the pool. Default the load generator's.
    type: int
  learner_sets:
    description:
      - O(source=list) only. The learner sets, each a non-empty list of integer learner ids.
    type: list
    elements: list
  path:
    description:
      - O(source=file) only. A file of JSON lines on the target host, each line a non-empty list of integer
        learner ids. Blank lines are ignored. The whole file is validated (streaming) before anything is written.
    type: path
  ttl:
    description:
      - TTL of every key written, in seconds. Must be > 0.
    type: int
    default: 3600
  fresh_ttl:
    description:
      - A key whose remaining TTL is at least this many seconds counts as fresh and is skipped (unless O(force)).
        Keys without a TTL are always rewritten, so that they get one.
      - Default half of O(ttl). Must be within 1..O(ttl).
    type: int
  batch_size:
    description:
      - Commands per pipelined round trip, and learner sets per freshness check. Must be > 0.
    type: int
    default: 500
  force:
    description:
      - Rewrite every key, fresh or not.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for Redis to connect or answer one round trip.
    type: float
    default: 10.0
attributes:
  check_mode:
    description: Checks which keys are fresh and computes the values, writes nothing, and reports what would be written.
    support: full
  diff_mode:
    description: Not supported; the counts in the result say what changed.
    support: none
notes:
  - Idempotent. A second run within O(ttl) - O(fresh_ttl) seconds finds every key fresh and reports C(changed=false).
"""

EXAMPLES = r"""
- name: Warm the cache with the load pattern's learner sets
  cohort.rollout.cache_warm:
    redis_url: "{{ redis_url }}"
    redis_password: "{{ redis_password }}"
    db: "{{ analyzer_db }}"
    n_learners: "{{ analyzer_learners }}"
    ttl: "{{ analyzer_cache_ttl }}"
  vars:
    ansible_python_interpreter: "{{ analyzer_venv }}/bin/python"

- name: Warm the learner sets listed in a file, rewriting fresh keys too
  cohort.rollout.cache_warm:
    redis_url: redis://10.0.0.5:6379/0
    redis_password: "{{ vault_redis_password }}"
    db: /srv/cohort-analyzer/data/learners.db
    source: file
    path: /srv/cohort-analyzer/popular-sets.jsonl
    batch_size: 1000
    force: true

- name: Two explicit learner sets, one day TTL
  cohort.rollout.cache_warm:
    redis_url: "{{ redis_url }}"
    redis_password: "{{ redis_password }}"
    db: "{{ analyzer_db }}"
    source: list
    learner_sets:
      - [1, 2, 3]
      - [10, 20, 30, 40]
    ttl: 86400
"""

RETURN = r"""
keys_written:
  description: Keys written (in check mode, keys that would be written).
  returned: always
  type: int
  sample: 500
keys_skipped:
  description: Learner sets whose key was already fresh (or repeated in the same batch), not rewritten.
  returned: always
  type: int
  sample: 0
bytes:
  description: Total size of the values written (in check mode, that would be written).
  returned: always
  type: int
  sample: 1843200
seconds:
  description: Wall time of the warm-up.
  returned: always
  type: float
  sample: 2.41
keys_per_second:
  description: keys_written divided by seconds.
  returned: always
  type: float
  sample: 207.5
fresh_ttl:
  description: The freshness threshold used, in seconds.
  returned: success
  type: int
  sample: 1800
"""

import json
import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cohort.rollout.plugins.module_utils.redis_warm import WarmError, Warmer, check_settings, connect

REDIS_IMPORT_ERROR = None
try:
    import redis
except ImportError:
    redis = None
    REDIS_IMPORT_ERROR = traceback.format_exc()

ANALYZER_IMPORT_ERROR = None
try:
    from cohort_analyzer import loadpattern
    from cohort_analyzer.cache import cache_key
    from cohort_analyzer.warm import iter_entries
except ImportError:
    loadpattern = cache_key = iter_entries = None
    ANALYZER_IMPORT_ERROR = traceback.format_exc()

LOAD_PATTERN_ARGS = ('pool_size', 'seed', 'n_learners', 'min_set_size', 'max_set_size')


def _check_ids(ids, where):
    if not isinstance(ids, list) or not ids:
        raise ValueError('%s is not a non-empty list of learner ids' % where)
    for item in ids:
        if not isinstance(item, int) or isinstance(item, bool) or item < 1:
            raise ValueError('%s holds %r, which is not a learner id (an integer >= 1)' % (where, item))
    return ids


def read_sets_file(path):
    """Learner sets from a JSON-lines file, one at a time."""
    with open(path, 'r', encoding='utf-8') as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                ids = json.loads(line)
            except ValueError as exc:
                raise ValueError('%s line %d is not JSON: %s' % (path, number, exc))
            yield _check_ids(ids, '%s line %d' % (path, number))


def validate_sets_file(path):
    """Read the whole file once (streaming) so that a bad line refuses the run before anything is written."""
    if not os.path.isfile(path):
        raise ValueError('path %s is not a file on the target host' % path)
    count = 0
    for _ids in read_sets_file(path):
        count += 1
    if count == 0:
        raise ValueError('%s holds no learner sets' % path)
    return count


def learner_set_source(params):
    """An iterable of learner sets for the chosen source, validated as far as possible up front."""
    source = params['source']
    if source == 'list':
        sets = params['learner_sets'] or []
        if not sets:
            raise ValueError('learner_sets is empty: nothing to warm')
        for index, ids in enumerate(sets):
            _check_ids(ids, 'learner_sets[%d]' % index)
        return sets
    if source == 'file':
        validate_sets_file(params['path'])
        return read_sets_file(params['path'])
    kwargs = {}
    names = {'min_set_size': 'min_size', 'max_set_size': 'max_size'}
    for name in LOAD_PATTERN_ARGS:
        if params[name] is not None:
            kwargs[names.get(name, name)] = params[name]
    return loadpattern.learner_sets(**kwargs)


def _partial(stats_or_warmer, empty):
    """The counts of a warm-up that stopped half way; changed if anything was written."""
    if stats_or_warmer is None:
        result = dict(empty)
    elif isinstance(stats_or_warmer, dict):
        result = dict(stats_or_warmer)
    else:
        result = stats_or_warmer.stats()
    result['changed'] = result.get('keys_written', 0) > 0
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            # A Redis URL or a DSN may carry a password: never in module_args, registered vars or job events.
            redis_url=dict(type='str', required=True, no_log=True),
            redis_password=dict(type='str', no_log=True),
            db=dict(type='str', required=True, no_log=True),
            source=dict(type='str', default='load_pattern', choices=['load_pattern', 'list', 'file']),
            pool_size=dict(type='int'),
            seed=dict(type='int'),
            n_learners=dict(type='int'),
            min_set_size=dict(type='int'),
            max_set_size=dict(type='int'),
            learner_sets=dict(type='list', elements='list'),
            path=dict(type='path'),
            ttl=dict(type='int', default=3600),
            fresh_ttl=dict(type='int'),
            batch_size=dict(type='int', default=500),
            force=dict(type='bool', default=False),
            timeout=dict(type='float', default=10.0),
        ),
        required_if=[('source', 'list', ['learner_sets']), ('source', 'file', ['path'])],
        supports_check_mode=True,
    )
    params = module.params
    empty = dict(changed=False, keys_written=0, keys_skipped=0, bytes=0, seconds=0.0, keys_per_second=0.0)

    # Refuse bad settings before touching anything (no connection, no write).
    try:
        fresh_ttl = check_settings(params['ttl'], params['batch_size'], params['fresh_ttl'])
    except ValueError as exc:
        module.fail_json(msg=str(exc), **empty)
    if params['timeout'] <= 0:
        module.fail_json(msg='timeout must be > 0, got %s' % params['timeout'], **empty)
    for name in ('learner_sets', 'path') + LOAD_PATTERN_ARGS:
        wanted = {'learner_sets': 'list', 'path': 'file'}.get(name, 'load_pattern')
        if params[name] is not None and params['source'] != wanted:
            module.fail_json(msg='%s only applies to source=%s (source is %s)' % (name, wanted, params['source']), **empty)

    if redis is None:
        module.fail_json(msg=missing_required_lib('redis'), exception=REDIS_IMPORT_ERROR, **empty)
    if iter_entries is None:
        module.fail_json(msg=missing_required_lib('cohort-analyzer', reason='to compute cohorts in the analyzer\'s format')
                         + ' Run this task with the analyzer venv\'s python (ansible_python_interpreter).',
                         exception=ANALYZER_IMPORT_ERROR, **empty)

    try:
        sets = learner_set_source(params)
    except (ValueError, OSError) as exc:
        module.fail_json(msg='bad learner sets: %s' % exc, **empty)

    warmer = None
    try:
        client = connect(redis, params['redis_url'], params['redis_password'], params['timeout'])
        warmer = Warmer(client, redis, params['redis_url'], params['ttl'], params['batch_size'], fresh_ttl,
                        force=params['force'], check_mode=module.check_mode)
        stats = warmer.write(iter_entries(warmer.stale_sets(sets, cache_key), params['db'], params['batch_size']))
    except WarmError as exc:
        module.fail_json(msg='cache warm-up failed: %s' % exc, **_partial(exc.stats or warmer, empty))
    except Exception as exc:  # the analyzer's errors: unknown ids, database unreachable, bad set
        module.fail_json(msg='cache warm-up failed (%s): %s' % (type(exc).__name__, exc), **_partial(warmer, empty))
    module.exit_json(changed=stats['keys_written'] > 0, fresh_ttl=fresh_ttl, **stats)


if __name__ == '__main__':
    main()
