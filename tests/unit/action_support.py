"""One way for the unit tests to build an action plugin's ActionModule: a task with its arguments, no connection."""
from __future__ import annotations

from unittest import mock

from ansible.playbook.task import Task


def action_under_test(action_module, name, args, check_mode=False):
    """``action_module.ActionModule`` for a task ``cohort.rollout.<name>`` with ``args`` (mocked connection,
    play context, loader, templar and shared loader: the plugins under test run on the controller)."""
    task = Task()
    task.args = args
    task.action = 'cohort.rollout.%s' % name
    task.check_mode = check_mode
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    return action_module.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(),
                                      mock.MagicMock())
