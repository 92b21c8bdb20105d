# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deep merge of plain data, the one used by the report writer and by the rollout spec's overrides.

Standard library only: the filter that merges spec overrides does not import the report writer.
"""

from __future__ import annotations

import copy


def deep_merge(base, update, none_deletes=False):
    """Return ``base`` with ``update`` merged in: dicts recurse, anything else replaces.

    With ``none_deletes`` a ``None`` in ``update`` removes the key (how rollout spec overrides drop a gate);
    without it, ``None`` is stored (a report field that is null). The inputs are not modified.
    """
    result = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in update.items():
        if none_deletes and value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value, none_deletes)
        else:
            result[key] = copy.deepcopy(value)
    return result
