"""Unit tests write many reports into temporary directories: no background HTML renderer for those
(module_utils/report_html.py), except in the tests that turn it back on to test it."""
import pytest


@pytest.fixture(autouse=True)
def _no_background_html(monkeypatch):
    monkeypatch.setenv('COHORT_ROLLOUT_HTML', 'off')
