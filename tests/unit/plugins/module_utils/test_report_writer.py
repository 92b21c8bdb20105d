"""The report writer (module_utils/report.py): merge per phase, atomic, 0600, locked."""

import json
import multiprocessing
import os
import stat

import pytest

from ansible_collections.cohort.rollout.plugins.module_utils import report


def test_creates_file_mode_0600(tmp_path):
    path = str(tmp_path / 'report.json')
    report.update_phase(path, 'canary', {'status': 'running'})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert report.read_report(path) == {'canary': {'status': 'running'}}


def test_merge_keeps_other_phases_and_keys(tmp_path):
    path = str(tmp_path / 'report.json')
    report.update_phase(path, 'canary', {'status': 'passed', 'weights': {'original': 0.99, 'ultra_fast': 0.01},
                                         'samples': [1, 2]})
    report.update_phase(path, 'ramp', {'status': 'running'})
    report.update_phase(path, 'canary', {'samples': [3], 'verdict': {'result': 'passed'}, 'weights': {'x': 1}})
    doc = report.read_report(path)
    assert doc['ramp'] == {'status': 'running'}
    assert doc['canary']['status'] == 'passed'
    assert doc['canary']['samples'] == [3]  # lists replace
    assert doc['canary']['weights'] == {'original': 0.99, 'ultra_fast': 0.01, 'x': 1}  # dicts merge


def test_existing_mode_is_tightened_and_no_temp_left(tmp_path):
    path = tmp_path / 'report.json'
    path.write_text('{"rollback": {"status": "done"}}')
    os.chmod(str(path), 0o644)
    report.update_phase(str(path), 'canary', {'status': 'running'})
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
    assert report.read_report(str(path))['rollback'] == {'status': 'done'}
    assert sorted(os.listdir(str(tmp_path))) == ['report.json', 'report.json.lock']


def test_refuses_to_overwrite_corrupt_report(tmp_path):
    path = tmp_path / 'report.json'
    path.write_text('{not json')
    with pytest.raises(report.ReportError) as err:
        report.update_phase(str(path), 'canary', {'status': 'running'})
    assert 'not valid JSON' in str(err.value)
    assert path.read_text() == '{not json'


def test_rejects_nan_and_bad_input(tmp_path):
    path = str(tmp_path / 'report.json')
    with pytest.raises(report.ReportError):
        report.update_phase(path, 'canary', {'value': float('nan')})
    with pytest.raises(report.ReportError):
        report.update_phase(path, '', {})
    assert not os.path.exists(path)


def test_missing_and_empty_file_read_as_empty(tmp_path):
    assert report.read_report(str(tmp_path / 'nope.json')) == {}
    (tmp_path / 'empty.json').write_text('')
    assert report.read_report(str(tmp_path / 'empty.json')) == {}


def _writer(path, phase, count):
    for i in range(count):
        report.update_phase(path, phase, {'n%d' % i: i})


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / 'report.json')
    procs = [multiprocessing.Process(target=_writer, args=(path, phase, 25)) for phase in ('canary', 'ramp', 'rollback')]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    doc = json.loads(open(path).read())
    for phase in ('canary', 'ramp', 'rollback'):
        assert len(doc[phase]) == 25


def test_first_write_on_a_fresh_controller_makes_the_directory(tmp_path):
    path = tmp_path / 'state' / 'cohort-rollout' / 'report.json'
    report.update_phase(str(path), 'canary', {'status': 'running'})
    assert json.loads(path.read_text())['canary']['status'] == 'running'


def test_an_unwritable_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    with pytest.raises(report.ReportError, match='cannot create the directory of report'):
        report.update_phase(str(blocker / 'report.json'), 'canary', {'status': 'running'})
