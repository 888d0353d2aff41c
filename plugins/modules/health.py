#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: health
short_description: Wait until services answer as their clients need (HTTP, TCP, PostgreSQL, Redis, S3)
version_added: 0.1.0
author: selfhost.dify maintainers (@selfhost)
description:
  - Runs a list of health checks from the managed host, each the way the real client would
    talk to the service, and waits until all of them pass or O(timeout) runs out.
  - Every check is probed once; the failing ones are probed again, with a pause that
    starts at O(interval) seconds and doubles up to 10 seconds, until they pass or the time
    is up. Checks are probed side by side (one thread each).
  - Each check talks to its service through that service's Python client library on the
    managed host, as Dify does - psycopg2 for V(postgresql), redis-py for V(redis), botocore
    for V(s3) (Debian packages C(python3-psycopg2), C(python3-redis), C(python3-botocore)).
    Only the libraries of the types listed are needed; V(http) and V(tcp) need none. A
    missing library fails the task before any probe, naming the package to install.
  - Read-only, so it runs the same in check mode and never reports a change.
  - The result lists every check with its target, whether it is healthy, and the detail
    (the server's own reason when it refused, such as C(password authentication failed
    for user "dify") or C(WRONGPASS ...)). When a check is still down at the end, the task
    fails (unless O(fail=false)) with one line per failing check.
  - Passwords, secret keys and header values are never shown in the result or the message.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  checks:
    description:
      - The checks. Each has a O(checks[].name), a O(checks[].type) and the options of that
        type; a required option that is missing, or an option another type uses, fails the
        task before any probe, naming the check.
      - V(http) sends O(checks[].method) to O(checks[].url) (without following redirects)
        and is healthy when the status is one of O(checks[].status) and, if
        O(checks[].json) is set, the JSON answer holds the expected values. On failure the
        detail quotes the status and the first 300 characters of the body, where an
        application names what is wrong. Uses O(checks[].headers),
        O(checks[].validate_certs) and O(checks[].ca_bundle).
      - V(tcp) is healthy when a TCP connection to O(checks[].host):O(checks[].port) opens.
      - V(postgresql) logs in as O(checks[].user) to O(checks[].database) with psycopg2
        (libpq, so every password method libpq knows, SCRAM-SHA-256 included) and runs
        C(SELECT 1). The connection is not encrypted, as with C(sslmode=disable); a server
        that accepts only TLS connections refuses the login (C(no pg_hba.conf entry ... no
        encryption)).
      - V(redis) sends C(AUTH) (O(checks[].username) and O(checks[].password), or the
        password alone for the default user) when a password is set, then C(PING), and is
        healthy on C(PONG), with redis-py. A refusal is quoted (C(WRONGPASS), C(NOAUTH), C(NOPERM)). No TLS.
      - V(s3) sends a HEAD request for O(checks[].bucket) to O(checks[].endpoint) with
        botocore, signed with AWS Signature Version 4 with the key pair, and is healthy on 200 (the bucket
        exists and the key may read it). After a refusal the server's error code is fetched
        for the detail (C(InvalidAccessKeyId), C(SignatureDoesNotMatch), C(AccessDenied),
        C(NoSuchBucket)).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: A name for the check, shown in the result and in the failure message.
        type: str
        required: true
      type:
        description: What to probe.
        type: str
        required: true
        choices: [http, tcp, postgresql, redis, s3]
      url:
        description: V(http), required. The URL, V(http://) or V(https://).
        type: str
      method:
        description: V(http). The request method.
        type: str
        default: GET
      status:
        description: V(http). The status codes that count as healthy.
        type: list
        elements: int
        default: [200]
      json:
        description:
          - V(http). Values the JSON answer must hold, by dotted path (V(status),
            V(data.0.name); a number picks a list item). The path V(.) is the whole answer
            (for a service that answers a bare JSON string such as V("ok")).
          - A string also matches a number or boolean written the same way in JSON
            (V("1") matches C(1), V("true") matches C(true)).
        type: dict
      headers:
        description: V(http). Request headers. Their values are never shown.
        type: dict
      validate_certs:
        description: V(http) and V(s3). Verify the server's TLS certificate (for V(https) URLs).
        type: bool
        default: true
      ca_bundle:
        description: V(http) and V(s3). CA certificates (PEM) to verify the server with, instead of the system's.
        type: path
      host:
        description: V(tcp), V(postgresql) and V(redis), required. Host name or address.
        type: str
      port:
        description: V(tcp), required. V(postgresql) (default V(5432)) and V(redis) (default V(6379)).
        type: int
      user:
        description: V(postgresql), required. The role to log in as.
        type: str
      password:
        description:
          - V(postgresql) and V(redis). The password; it is never shown.
          - For V(redis), without a password no C(AUTH) is sent.
        type: str
      database:
        description: V(postgresql). The database to connect to; defaults to O(checks[].user), as with libpq.
        type: str
      username:
        description: V(redis). The ACL user to log in as; without it the password is the default user's (C(requirepass)).
        type: str
      endpoint:
        description: V(s3), required. The S3 endpoint URL, for example V(http://10.0.0.5:8333).
        type: str
      bucket:
        description: V(s3), required. The bucket to HEAD.
        type: str
      access_key:
        description: V(s3), required. Access key ID of the key pair to sign with.
        type: str
      secret_key:
        description: V(s3), required. Secret access key of that key pair; it is never shown.
        type: str
      region:
        description: V(s3). The region the request is signed for.
        type: str
        default: us-east-1
      path_style:
        description:
          - V(s3). Address the bucket as C(endpoint/bucket) (path style) rather than
            C(bucket.endpoint-host) (virtual-hosted style). Servers addressed by IP need V(true).
        type: bool
        default: true
  timeout:
    description:
      - Seconds to wait, in all, for every check to pass. V(0) probes each check once.
      - Each single probe waits at most 10 seconds for an answer.
    type: int
    default: 120
  interval:
    description: Seconds before the first re-probe of a failing check; the pause doubles each time, up to 10 seconds.
    type: int
    default: 1
  fail:
    description: Fail the task when a check is still down at the end. With V(false) the task only reports (RV(healthy)).
    type: bool
    default: true
notes:
  - The probes run on the managed host, so they see the services as that host does
    (addresses, firewall, DNS). Delegate the task to test from another host.
  - Redirects are not followed by V(http) checks; list C(301)/C(302) in O(checks[].status)
    to accept one.
requirements:
  - python3-psycopg2 (psycopg2) on the managed host for V(postgresql) checks
  - python3-redis (redis-py) on the managed host for V(redis) checks
  - python3-botocore (botocore) on the managed host for V(s3) checks
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
"""

EXAMPLES = r"""
- name: Dify's backing services answer as Dify will use them
  selfhost.dify.health:
    timeout: 60
    checks:
      - name: database
        type: postgresql
        host: 10.0.0.5
        user: dify
        password: "{{ selfhost_postgresql_password }}"
        database: dify
      - name: redis
        type: redis
        host: 10.0.0.6
        password: "{{ selfhost_redis_password }}"
      - name: object storage
        type: s3
        endpoint: http://10.0.0.7:8333
        bucket: dify
        access_key: "{{ selfhost_object_storage_access_key }}"
        secret_key: "{{ selfhost_object_storage_secret_key }}"

- name: The API is up and says so
  selfhost.dify.health:
    checks:
      - name: api
        type: http
        url: http://127.0.0.1:5001/health
        json:
          status: ok
      - name: sandbox
        type: http
        url: http://127.0.0.1:8194/health
        json:
          .: ok
      - name: web
        type: tcp
        host: 127.0.0.1
        port: 3000

- name: Report only
  selfhost.dify.health:
    timeout: 0
    fail: false
    checks:
      - name: public site
        type: http
        url: https://dify.example.com/
        status: [200, 302]
  register: site_health
"""

RETURN = r"""
healthy:
  description: Whether every check passed.
  returned: always
  type: bool
  sample: false
checks:
  description: Every check, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name.
      type: str
      sample: database
    type:
      description: The check's type.
      type: str
      sample: postgresql
    target:
      description: What was probed, without any secret.
      type: str
      sample: postgresql://dify@10.0.0.5:5432/dify
    healthy:
      description: Whether the last probe passed.
      type: bool
      sample: false
    detail:
      description: What the last probe found, in words (the server's reason on a refusal).
      type: str
      sample: password authentication failed for user "dify"
    attempts:
      description: How many times the check was probed.
      type: int
      sample: 5
    seconds:
      description: Seconds from the start until the check passed, or until its last probe ended.
      type: float
      sample: 12.3
msg:
  description:
    - When a check is down at the end - C(N of M health checks failed after Xs:) and one
      line per failing check, C(name | target | detail).
  returned: when a check failed
  type: str
  sample: |-
    1 of 3 health checks failed after 120.4s:
    database | postgresql://dify@10.0.0.5:5432/dify | password authentication failed for user "dify"
"""

import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.selfhost.dify.plugins.module_utils import probes

TYPES = ("http", "tcp", "postgresql", "redis", "s3")
# The options each type uses, and those it cannot do without.
USES = {
    "http": ("url", "method", "status", "json", "headers", "validate_certs", "ca_bundle"),
    "tcp": ("host", "port"),
    "postgresql": ("host", "port", "user", "password", "database"),
    "redis": ("host", "port", "username", "password"),
    "s3": ("endpoint", "bucket", "access_key", "secret_key", "region", "path_style", "validate_certs", "ca_bundle"),
}
REQUIRES = {
    "http": ("url",),
    "tcp": ("host", "port"),
    "postgresql": ("host", "user"),
    "redis": ("host",),
    "s3": ("endpoint", "bucket", "access_key", "secret_key"),
}
DEFAULT_PORTS = {"postgresql": 5432, "redis": 6379}
SECRET_OPTIONS = ("password", "secret_key")
MAX_PAUSE = 10
PROBE_TIMEOUT = 10.0
MIN_PROBE_TIMEOUT = 3.0


def check_spec():
    return dict(
        name=dict(type="str", required=True),
        type=dict(type="str", required=True, choices=list(TYPES)),
        url=dict(type="str"),
        method=dict(type="str", default="GET"),
        status=dict(type="list", elements="int", default=[200]),
        json=dict(type="dict"),
        headers=dict(type="dict", no_log=True),
        validate_certs=dict(type="bool", default=True),
        ca_bundle=dict(type="path"),
        host=dict(type="str"),
        port=dict(type="int"),
        user=dict(type="str"),
        password=dict(type="str", no_log=True),
        database=dict(type="str"),
        username=dict(type="str"),
        endpoint=dict(type="str"),
        bucket=dict(type="str"),
        access_key=dict(type="str", no_log=False),
        secret_key=dict(type="str", no_log=True),
        region=dict(type="str", default="us-east-1"),
        path_style=dict(type="bool", default=True),
    )


def argument_spec():
    return dict(
        checks=dict(type="list", elements="dict", required=True, options=check_spec()),
        timeout=dict(type="int", default=120),
        interval=dict(type="int", default=1),
        fail=dict(type="bool", default=True),
    )


def _label(index, check):
    name = check.get("name")
    return "check %r (%s)" % (name, check.get("type")) if name else "check #%d" % (index + 1)


def _url_problem(url):
    try:
        parts = urlsplit(url)
        # Reading the port raises ValueError when it is not a number from 0 to 65535.
        parts.port  # pylint: disable=pointless-statement
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http:// or https:// URL"
    return None


def check_problems(checks, timeout=0, interval=1):
    """Every problem of the options, each naming its check (an empty list when all is well)."""
    problems = []
    if not checks:
        problems.append("checks is empty: give at least one check")
    if timeout is not None and timeout < 0:
        problems.append("timeout must be 0 or more seconds, got %s" % timeout)
    if interval is not None and interval < 1:
        problems.append("interval must be 1 second or more, got %s" % interval)
    defaults = dict((key, spec.get("default")) for key, spec in check_spec().items())
    seen = set()
    for index, check in enumerate(checks or []):
        label, kind = _label(index, check), check.get("type")
        if not str(check.get("name") or "").strip():
            problems.append("%s has an empty name" % label)
        elif check["name"] in seen:
            problems.append("%s: the name is used by another check" % label)
        seen.add(check.get("name"))
        if kind not in USES:
            continue
        missing = [key for key in REQUIRES[kind] if check.get(key) in (None, "")]
        if missing:
            problems.append("%s needs %s" % (label, ", ".join(missing)))
        foreign = [key for key in check_spec() if key not in USES[kind] and key not in ("name", "type")
                   and check.get(key) is not None and check.get(key) != defaults[key]]
        if foreign:
            problems.append("%s does not use %s (options of other check types)" % (label, ", ".join(sorted(foreign))))
        for key in ("url", "endpoint"):
            if key in USES[kind] and check.get(key):
                problem = _url_problem(check[key])
                if problem:
                    problems.append("%s: %s %s" % (label, key, problem))
        port = check.get("port")
        if port is not None and not 1 <= port <= 65535:
            problems.append("%s: port must be 1 to 65535, got %d" % (label, port))
        if kind == "http":
            bad = [code for code in check.get("status") or [] if not 100 <= code <= 599]
            if not check.get("status") or bad:
                problems.append("%s: status must list HTTP status codes (100 to 599)%s"
                                % (label, ", got %s" % ", ".join(str(c) for c in bad) if bad else ""))
    return problems


def _host_port(host, port):
    return "%s:%s" % ("[%s]" % host if ":" in host else host, port)


def target(check):
    """What a check probes, as one string without any secret."""
    kind = check["type"]
    if kind == "http":
        parts = urlsplit(check["url"])
        netloc = parts.netloc.rsplit("@", 1)[-1]  # no user:password@
        return "%s %s://%s%s" % (check.get("method") or "GET", parts.scheme, netloc, parts.path or "/")
    if kind == "tcp":
        return "tcp://%s" % _host_port(check["host"], check["port"])
    if kind == "postgresql":
        return "postgresql://%s@%s/%s" % (check["user"], _host_port(check["host"], check.get("port") or 5432),
                                          check.get("database") or check["user"])
    if kind == "redis":
        user = "%s@" % check["username"] if check.get("username") else ""
        return "redis://%s%s" % (user, _host_port(check["host"], check.get("port") or 6379))
    scheme, host, dummy, dummy, path = probes.s3_url(check["endpoint"], check["bucket"], "",
                                                     check.get("path_style", True))
    return "%s://%s%s" % (scheme, host, path)


def probe(check, timeout):
    """Probe one check once: a probes.Result."""
    kind = check["type"]
    if kind == "http":
        return probes.probe_http(check["url"], method=check.get("method") or "GET", status=check.get("status") or [200],
                                 json_fields=check.get("json"), headers=check.get("headers"), timeout=timeout,
                                 validate_certs=check.get("validate_certs", True), ca_bundle=check.get("ca_bundle"))
    if kind == "tcp":
        return probes.probe_tcp(check["host"], check["port"], timeout=timeout)
    if kind == "postgresql":
        return probes.probe_postgresql(check["host"], check.get("port") or DEFAULT_PORTS[kind], check["user"],
                                       check.get("password"), check.get("database"), timeout=timeout)
    if kind == "redis":
        return probes.probe_redis(check["host"], check.get("port") or DEFAULT_PORTS[kind], check.get("password"),
                                  check.get("username"), timeout=timeout)
    return probes.probe_s3(check["endpoint"], check["bucket"], check["access_key"], check["secret_key"],
                           region=check.get("region") or "us-east-1", path_style=check.get("path_style", True),
                           timeout=timeout, validate_certs=check.get("validate_certs", True),
                           ca_bundle=check.get("ca_bundle"))


def _safe_probe(probe_fn, check, timeout):
    try:
        return probe_fn(check, timeout)
    # A bug in one probe must not hide the results of the others.
    except Exception as exc:  # pylint: disable=broad-except
        return probes.Result(False, "probe error: %s: %s" % (type(exc).__name__, exc))


def run_checks(checks, timeout, interval, probe_fn=None, clock=time.monotonic, sleep=time.sleep):
    """Probe every check; re-probe the failing ones, pausing `interval` seconds and twice as
    long each time (up to MAX_PAUSE), until all pass or `timeout` seconds have gone by.
    Returns (results in the order of `checks`, elapsed seconds)."""
    probe_fn = probe_fn or probe
    start = clock()
    deadline = start + timeout
    secrets = [check.get(key) for check in checks for key in SECRET_OPTIONS if check.get(key)]
    results = [dict(name=check["name"], type=check["type"], target=target(check), healthy=False,
                    detail="not probed", attempts=0, seconds=0.0) for check in checks]
    pending = list(range(len(checks)))
    pause = max(interval, 0)
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(checks)))) as pool:
        while pending:
            each = min(PROBE_TIMEOUT, max(MIN_PROBE_TIMEOUT, deadline - clock())) if timeout > 0 else PROBE_TIMEOUT
            futures = dict((index, pool.submit(_safe_probe, probe_fn, checks[index], each)) for index in pending)
            for index, future in futures.items():
                outcome = future.result()
                result = results[index]
                result.update(healthy=bool(outcome.ok), detail=probes.scrub(outcome.detail, secrets),
                              attempts=result["attempts"] + 1, seconds=round(clock() - start, 1))
            pending = [index for index in pending if not results[index]["healthy"]]
            left = deadline - clock()
            if not pending or left <= 0:
                break
            sleep(min(pause, left))
            pause = min(pause * 2, MAX_PAUSE)
    return results, round(clock() - start, 1)


def failure_message(results, elapsed):
    """'N of M health checks failed after Xs:' and one line 'name | target | detail' per
    check that is down."""
    down = [r for r in results if not r["healthy"]]
    lines = ["%d of %d health checks failed after %ss:" % (len(down), len(results), elapsed)]
    lines += ["%s | %s | %s" % (r["name"], r["target"], r["detail"]) for r in down]
    return "\n".join(lines)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    checks = params["checks"] or []
    problems = check_problems(checks, params["timeout"], params["interval"])
    if problems:
        module.fail_json(msg="health: %s" % "; ".join(problems), healthy=False, checks=[])
    # The client library of every check type listed, all named at once, before any probe.
    missing = [(kind, probes.missing_library(kind)) for kind in sorted(set(check["type"] for check in checks))]
    missing = [(kind, lib) for kind, lib in missing if lib]
    if missing:
        module.fail_json(msg="health: %s" % " ".join(missing_required_lib(
            library, reason="the %s checks (Debian package %s)" % (kind, package))
            for kind, (library, package, dummy) in missing),
            exception=missing[0][1][2], healthy=False, checks=[])
    results, elapsed = run_checks(checks, params["timeout"], params["interval"])
    healthy = all(r["healthy"] for r in results)
    outcome = dict(changed=False, healthy=healthy, checks=results)
    if not healthy:
        outcome["msg"] = failure_message(results, elapsed)
        if params["fail"]:
            module.fail_json(**outcome)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
