# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client of the load balancer's weights API (``POST /config/traffic-weights``).

One definition, used by the ``traffic_weights`` module (driver ``http``) and by the ``metric_gate``
action plugin, which reverts the traffic from the controller the moment a bake fails.
"""

from __future__ import annotations

from ansible_collections.cohort.rollout.plugins.module_utils import http_json
from ansible_collections.cohort.rollout.plugins.module_utils.traffic import ApplyError, TrafficError

ANSWER_KEYS = ('changed', 'before', 'after', 'requested', 'error')


def post_shares(api_url, shares, token=None, validate_certs=True, timeout=10.0, check=False, generation=None):
    """Ask the API for ``shares``; return its answer (changed, before, after, requested, error).

    ``generation``: the rollout guard's arm generation of the caller (header ``X-Rollout-Generation``); the API
    refuses it with 409 when it was fenced off.

    Raises TrafficError when the API refuses the request (nothing changed) and ApplyError when it cannot
    be reached or answers something that is not the API's JSON.
    """
    url = api_url.rstrip('/') + '/config/traffic-weights'
    if check:
        url += '?check=true'
    headers = {}
    if generation is not None:
        headers['X-Rollout-Generation'] = str(int(generation))
    try:
        result = http_json.request(url, shares, token=token, headers=headers, validate_certs=validate_certs,
                                   timeout=timeout)
    except http_json.Refused as exc:
        raise TrafficError('weights API answered %s: %s' % (exc.status, exc.detail)) from exc
    except http_json.Unreachable as exc:
        raise ApplyError('cannot reach the weights API at %s: %s' % (url, exc)) from exc
    except http_json.NotJSON as exc:
        raise ApplyError('the weights API returned something other than JSON: %r' % exc.raw) from exc
    if not isinstance(result, dict) or any(key not in result for key in ANSWER_KEYS):
        raise ApplyError('the weights API answer lacks one of %s: %r' % (', '.join(ANSWER_KEYS), result))
    return result
