# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way the collection's action plugins validate their task arguments.

Each action plugin validates with the argument spec its documentation module declares
(``AnsibleModule(argument_spec=...)``), so ansible-test checks the documentation against
the very spec the plugin enforces: types converted (``'false'`` is ``False``), required
and unknown options refused, every problem named in one message, before anything runs.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError


class ArgumentError(ValueError):
    """The task's arguments do not fit the spec; the message names the plugin and every problem."""


def validate_args(name, args, argument_spec, **constraints):
    """The validated parameters (defaults filled, types converted), or ArgumentError.

    ``constraints`` are ArgumentSpecValidator's: mutually_exclusive, required_together, required_one_of,
    required_if, required_by.
    """
    validated = ArgumentSpecValidator(argument_spec, **constraints).validate(dict(args or {}))
    if validated.error_messages:
        messages = []
        for error in validated.errors:
            if isinstance(error, UnsupportedError):
                messages.append('unsupported parameters: %s' % error.msg)
            else:
                messages.append(error.msg)
        raise ArgumentError('%s: %s' % (name, '; '.join(messages)))
    return validated.validated_parameters
