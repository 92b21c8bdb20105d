"""Unit tests of the rollout lock: the module (real files) and the controller-side liveness check."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cohort.rollout.plugins.action import rollout_lock as lock_action
from ansible_collections.cohort.rollout.plugins.modules import rollout_lock


def run(args, capsys, check=False):
    args = dict(dict(phase='canary'), **args)
    args['_ansible_check_mode'] = check
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            rollout_lock.main()
    return json.loads(capsys.readouterr().out)


def holder(name, **kw):
    doc = dict(id='ctl:%s:1' % name, controller='ctl', pid=1, pid_start='1', user='u')
    doc.update(kw)
    return doc


def test_take_is_reentrant_and_second_run_fails_naming_the_holder(tmp_path, capsys):
    path = str(tmp_path / 'rollout.lock')
    first = run(dict(path=path, holder=holder('a')), capsys)
    assert first['changed'] and first['acquired']
    assert json.load(open(path))['id'] == 'ctl:a:1'
    again = run(dict(path=path, holder=holder('a')), capsys)
    assert again['acquired'] and not again['changed']
    other = run(dict(path=path, holder=holder('b')), capsys)
    assert other['failed'] and not other['acquired']
    assert 'ctl:a:1' in other['msg'] and 'rollout_break_lock' in other['msg']
    assert other['stale'] is False and other['expired'] is False
    assert json.load(open(path))['id'] == 'ctl:a:1'  # untouched


def test_expired_lock_is_stale_but_only_broken_explicitly(tmp_path, capsys):
    path = str(tmp_path / 'rollout.lock')
    run(dict(path=path, holder=holder('a'), ttl=1), capsys)
    doc = json.load(open(path))
    doc['expires_epoch'] = time.time() - 5
    with open(path, 'w') as handle:
        json.dump(doc, handle)
    refused = run(dict(path=path, holder=holder('b')), capsys)
    assert refused['failed'] and refused['stale'] and refused['expired'] and 'STALE' in refused['msg']
    broken = run(dict(path=path, holder=holder('b'), break_lock=True), capsys)
    assert broken['changed'] and broken['acquired'] and broken['broken']['id'] == 'ctl:a:1'
    now = json.load(open(path))
    assert now['id'] == 'ctl:b:1' and now['broke']['id'] == 'ctl:a:1'


def test_stale_holder_named_by_controller(tmp_path, capsys):
    path = str(tmp_path / 'rollout.lock')
    run(dict(path=path, holder=holder('a')), capsys)
    res = run(dict(path=path, holder=holder('b'), stale_holder='ctl:a:1'), capsys)
    assert res['failed'] and res['stale'] and not res['expired'] and 'holder process is gone' in res['msg']


def test_break_is_compare_and_swap(tmp_path, capsys):
    path = str(tmp_path / 'rollout.lock')
    run(dict(path=path, holder=holder('a')), capsys)
    res = run(dict(path=path, holder=holder('b'), break_lock=True, expected_holder='ctl:zzz:1'), capsys)
    assert res['failed'] and 'changed hands' in res['msg']
    assert json.load(open(path))['id'] == 'ctl:a:1'


def test_release_only_own_lock(tmp_path, capsys):
    path = str(tmp_path / 'rollout.lock')
    run(dict(path=path, holder=holder('a')), capsys)
    other = run(dict(path=path, holder=holder('b'), state='absent'), capsys)
    assert not other['changed'] and os.path.exists(path)
    mine = run(dict(path=path, holder=holder('a'), state='absent'), capsys)
    assert mine['changed'] and not os.path.exists(path)
    none = run(dict(path=path, holder=holder('a'), state='absent'), capsys)
    assert not none['changed']


def test_check_mode_writes_nothing(tmp_path, capsys):
    path = str(tmp_path / 'rollout.lock')
    res = run(dict(path=path, holder=holder('a')), capsys, check=True)
    assert res['changed'] and not os.path.exists(path)


def test_fresh_host_gets_the_lock_directory(tmp_path, capsys):
    """A new load-balancer host has no state directory yet: the lock makes it (0700), check mode does not."""
    path = tmp_path / 'state' / 'rollout.lock'
    res = run(dict(path=str(path), holder=holder('a')), capsys, check=True)
    assert res['changed'] and res['acquired'] and not path.parent.exists()
    res = run(dict(path=str(path), holder=holder('a')), capsys)
    assert res['acquired'] and path.exists()
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_bad_input(tmp_path, capsys):
    res = run(dict(path=str(tmp_path / 'x.lock'), holder=holder('a'), ttl=0), capsys)
    assert res['failed'] and 'ttl' in res['msg']
    res = run(dict(path=str(tmp_path / 'x.lock'), holder={}), capsys)
    assert res['failed'] and 'holder.id' in res['msg']
    assert not os.path.exists(str(tmp_path / 'x.lock'))


def test_corrupt_lock_is_stale(tmp_path, capsys):
    path = str(tmp_path / 'rollout.lock')
    with open(path, 'w') as handle:
        handle.write('{not json')
    res = run(dict(path=path, holder=holder('a')), capsys)
    assert res['failed'] and res['stale']


def test_liveness_of_a_holder_on_this_controller():
    proc = subprocess.Popen(['sleep', '30'])
    try:
        me = lock_action.run_identity(pid=proc.pid, host='ctl')
        assert me['id'].startswith('ctl:%d:' % proc.pid)
        assert lock_action.holder_alive(me, host='ctl') is True
        # Another controller cannot be judged from here.
        assert lock_action.holder_alive(me, host='elsewhere') is None
        # A recycled pid (other start time) is not the holder.
        assert lock_action.holder_alive(dict(me, pid_start='1'), host='ctl') is False
    finally:
        proc.kill()
        proc.wait()
    assert lock_action.holder_alive(me, host='ctl') is False


def test_same_run_retaking_refreshes_expiry_and_phase(tmp_path, capsys):
    """deploy.yml carries its lock into the next phase: the expiry follows (docs: the lock never looks STALE)."""
    path = str(tmp_path / 'rollout.lock')
    run(dict(path=path, holder=holder('a'), ttl=60), capsys)
    doc = json.load(open(path))
    doc['expires_epoch'] = time.time() - 1  # the canary outlived its TTL estimate
    with open(path, 'w') as handle:
        json.dump(doc, handle)
    again = run(dict(path=path, holder=holder('a'), phase='ramp', ttl=600), capsys)
    assert again['acquired'] and again['refreshed'] and not again['changed']
    now = json.load(open(path))
    assert now['phase'] == 'ramp' and now['expires_epoch'] > time.time() + 590
    assert now['acquired_at'] == doc['acquired_at']  # the same lock, kept
    # Another run now finds it live, not stale.
    other = run(dict(path=path, holder=holder('b')), capsys)
    assert other['failed'] and other['stale'] is False and other['expired'] is False


def test_refused_lock_points_to_rollback_without_flags(tmp_path, capsys):
    path = str(tmp_path / 'rollout.lock')
    run(dict(path=path, holder=holder('a')), capsys)
    other = run(dict(path=path, holder=holder('b')), capsys)
    assert 'rollback.yml' in other['msg'] and 'no flags needed' in other['msg']


@pytest.mark.parametrize('result, state', [
    (dict(broken=holder('a', phase='canary'), stale=True, expired=True), 'stale'),
    (dict(broken=holder('a', phase='canary'), stale=False, expired=False, broken_holder_alive=False), 'stale'),
    (dict(broken=holder('a', phase='canary'), stale=False, expired=False, broken_holder_alive=True), 'live'),
    (dict(broken=holder('a', phase='canary'), stale=False, expired=False, broken_holder_alive=None), 'unknown'),
])
def test_taken_over_says_whose_lock_and_what_was_known(result, state):
    doc = lock_action.taken_over(result)
    assert doc['id'] == 'ctl:a:1' and doc['phase'] == 'canary' and doc['holder_state'] == state


def test_query_reads_the_holder_and_writes_nothing(tmp_path, capsys):
    path = str(tmp_path / 'rollout.lock')
    empty = run(dict(path=path, holder=holder('q'), state='query'), capsys)
    assert empty['held'] is False and not empty['changed'] and 'holder' not in empty
    assert os.listdir(str(tmp_path)) == []  # not even the .guard file
    run(dict(path=path, holder=holder('a')), capsys)
    before = open(path).read()
    seen = run(dict(path=path, holder=holder('q'), state='query'), capsys, check=True)
    assert seen['held'] and not seen['changed'] and not seen['acquired']
    assert seen['holder']['id'] == 'ctl:a:1' and seen['holder']['phase'] == 'canary'
    assert seen['stale'] is False and 'expires_epoch' not in seen['holder']
    assert open(path).read() == before
    mine = run(dict(path=path, holder=holder('a'), state='query'), capsys)
    assert mine['acquired'] is True


def test_query_says_stale_when_expired(tmp_path, capsys):
    path = str(tmp_path / 'rollout.lock')
    run(dict(path=path, holder=holder('a'), ttl=1), capsys)
    doc = json.load(open(path))
    doc['expires_epoch'] = time.time() - 5
    with open(path, 'w') as handle:
        json.dump(doc, handle)
    seen = run(dict(path=path, holder=holder('q'), state='query'), capsys)
    assert seen['held'] and seen['stale'] and seen['expired'] and 'STALE' in seen['msg']


def test_query_of_a_missing_directory_is_no_lock(tmp_path, capsys):
    seen = run(dict(path=str(tmp_path / 'nowhere' / 'rollout.lock'), holder=holder('q'), state='query'), capsys)
    assert seen['held'] is False and not seen.get('failed')
