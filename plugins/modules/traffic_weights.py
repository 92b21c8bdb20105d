#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cohort.rollout contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: traffic_weights
short_description: Split traffic between analyzer pools behind HAProxy
version_added: "0.1.0"
description:
  - Turns the share of each pool (for example C(original) and C(ultra_fast)), summing to 1, into
    integer HAProxy server weights (0..256) and applies them at run time.
  - The servers of one HAProxy backend form the pools by the prefix of their name,
    C(<pool>-<host>) (for example C(original-analyzer-1), C(ultra_fast-analyzer-2)).
  - Every server of a pool with a positive share gets a weight of at least 1, weights inside a pool
    differ by at most 1, and the pool totals are the integers closest to the requested split, so the
    split is exact whenever integers allow (1% with 1 ultra_fast and 3 original servers gives weights
    1 and 33/33/33). Shares are read to 1e-6. The achieved error is returned as RV(error).
  - Reads the current weights first and changes nothing when they already realise the split.
  - On bad input (shares not summing to 1, negative, above 1, NaN, unknown or missing pool, a positive
    share for a pool without servers) the task fails and nothing is changed.
  - Two drivers. C(haproxy) talks to the HAProxy admin socket and must run on the load balancer host.
    C(http) calls the load balancer's weights API (C(POST /config/traffic-weights)) served by the
    C(cohort.rollout.loadbalancer) role, and can run anywhere; the API applies the weights with the
    same code as the C(haproxy) driver.
author:
  - cohort.rollout contributors (!UNKNOWN)
options:
  shares:
    description:
      - Share of traffic per pool, each in [0, 1], summing to 1 within 1e-9.
      - Every pool of the backend must be given (0 is fine).
    type: dict
    required: true
  driver:
    description: How to reach the load balancer.
    type: str
    choices: [haproxy, http]
    default: haproxy
  socket:
    description:
      - Path of the HAProxy admin socket (C(stats socket ... level admin)) on the target host.
      - Required with O(driver=haproxy).
    type: path
  backend:
    description: HAProxy backend that holds the servers of all pools (O(driver=haproxy)).
    type: str
    default: analyzers
  pools:
    description:
      - Pools that exist even when the backend has no server of theirs (O(driver=haproxy)), so that a positive
        share for an empty pool fails as such. Pools found in the backend are always known.
    type: list
    elements: str
    default: [original, ultra_fast]
  state_file:
    description:
      - With O(driver=haproxy), write C(show servers state) to this file after a change, so that the
        weights survive a restart as well as a reload (the role's C(server-state-file)).
    type: path
  api_url:
    description:
      - Base URL of the load balancer weights API, for example C(http://127.0.0.1:18090).
      - Required with O(driver=http).
    type: str
  api_token:
    description: Bearer token of the weights API (O(driver=http)).
    type: str
  generation:
    description:
      - The rollout guard's arm generation of the phase that moves the traffic (O(driver=http)); sent as
        C(X-Rollout-Generation). The API refuses the change when that generation was fenced off (the phase was
        superseded or rolled back), so an orphaned worker cannot undo a rollback.
    type: int
  validate_certs:
    description: Verify the TLS certificate of O(api_url).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the socket or the API.
    type: float
    default: 10
attributes:
  check_mode:
    description: Can run in check mode and return the planned weights.
    support: full
    details: Computes and returns the weights it would set without changing them.
  diff_mode:
    description: Will return details on what has changed (or would change in check mode).
    support: full
    details: Before and after pool shares and server weights.
notes:
  - When HAProxy marks a server down, HAProxy itself spreads that server's share over the others.
  - Pool names must not contain C(-).
seealso:
  - name: cohort.rollout.loadbalancer role
    description: Configures HAProxy, its admin socket, server-state-file and the weights API.
    link: https://example.invalid/cohort/rollout/roles/loadbalancer
'''

EXAMPLES = r'''
- name: Canary, 1% to ultra_fast (on the load balancer)
  cohort.rollout.traffic_weights:
    shares:
      original: 0.99
      ultra_fast: 0.01
    socket: /var/lib/cohort-rollout/loadbalancer/haproxy/admin.sock
    state_file: /var/lib/cohort-rollout/loadbalancer/haproxy/server-state

- name: Rollback, everything to original (from the controller, through the API)
  cohort.rollout.traffic_weights:
    driver: http
    api_url: "{{ lb_api_url }}"
    api_token: "{{ lb_api_token }}"
    shares:
      original: 1
      ultra_fast: 0
  delegate_to: localhost
'''

RETURN = r'''
weights:
  description: Server weights read back from HAProxy after the change (the current ones when unchanged, the planned ones in check mode).
  returned: always
  type: dict
  sample: {"original-analyzer-1": 33, "original-analyzer-2": 33, "original-analyzer-3": 33, "ultra_fast-analyzer-4": 1}
shares:
  description: Share of each pool realised by RV(weights).
  returned: always
  type: dict
  sample: {"original": 0.99, "ultra_fast": 0.01}
requested:
  description: The shares asked for.
  returned: always
  type: dict
  sample: {"original": 0.99, "ultra_fast": 0.01}
before:
  description: Weights and shares found before the change.
  returned: always
  type: dict
  sample: {"weights": {"original-analyzer-1": 1, "ultra_fast-analyzer-4": 0}, "shares": {"original": 1.0, "ultra_fast": 0.0}}
after:
  description: Weights and shares after the change (planned ones in check mode).
  returned: always
  type: dict
  sample: {"weights": {"original-analyzer-1": 99, "ultra_fast-analyzer-4": 1}, "shares": {"original": 0.99, "ultra_fast": 0.01}}
error:
  description: Largest absolute difference between a requested and the realised share (0 when exact).
  returned: always
  type: float
  sample: 0.0
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cohort.rollout.plugins.module_utils.haproxy import HAProxyError, HAProxySocket
from ansible_collections.cohort.rollout.plugins.module_utils.traffic import ApplyError, TrafficError, apply_shares, check_shares
from ansible_collections.cohort.rollout.plugins.module_utils.weights_api import post_shares


def run_haproxy(module):
    client = HAProxySocket(module.params['socket'], timeout=module.params['timeout'])
    return apply_shares(client, module.params['backend'], module.params['shares'],
                        check_mode=module.check_mode, state_file=module.params['state_file'],
                        pools=module.params['pools'])


def run_http(module):
    return post_shares(module.params['api_url'], module.params['shares'], token=module.params['api_token'],
                       validate_certs=module.params['validate_certs'], timeout=module.params['timeout'],
                       check=module.check_mode, generation=module.params['generation'])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            shares=dict(type='dict', required=True),
            driver=dict(type='str', choices=['haproxy', 'http'], default='haproxy'),
            socket=dict(type='path'),
            backend=dict(type='str', default='analyzers'),
            pools=dict(type='list', elements='str', default=['original', 'ultra_fast']),
            state_file=dict(type='path'),
            api_url=dict(type='str'),
            api_token=dict(type='str', no_log=True),
            generation=dict(type='int'),
            validate_certs=dict(type='bool', default=True),
            timeout=dict(type='float', default=10),
        ),
        required_if=[
            ('driver', 'haproxy', ['socket']),
            ('driver', 'http', ['api_url']),
        ],
        supports_check_mode=True,
    )
    shares = module.params['shares']
    try:
        # Fail early on what can be judged without the load balancer (sum, range, NaN).
        check_shares(shares)
        if module.params['driver'] == 'haproxy':
            result = run_haproxy(module)
        else:
            result = run_http(module)
    except (TrafficError, ApplyError, HAProxyError) as exc:
        module.fail_json(msg=str(exc), requested=shares)

    module.exit_json(
        changed=result['changed'],
        weights=result['after']['weights'],
        shares=result['after']['shares'],
        requested=result['requested'],
        before=result['before'],
        after=result['after'],
        error=result['error'],
        diff={'before': result['before'], 'after': result['after']},
    )


if __name__ == '__main__':
    main()
