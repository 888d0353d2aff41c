#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: dify_admin
short_description: Create the first administrator of a self-hosted Dify (the console's setup step)
version_added: 0.1.0
author: selfhost.dify maintainers (@selfhost)
description:
  - Completes Dify's one-time setup through the console API, as the C(/install) page of the web
    console does; the account created is the owner of the first workspace.
  - Reads C(GET /console/api/setup) first. If Dify is already set up the module changes nothing
    and returns when (RV(setup_at)); the existing administrator is neither compared nor updated.
  - When the api has C(INIT_PASSWORD) set, O(init_password) is sent to C(POST /console/api/init)
    first, and the session cookie that request returns is sent with C(POST /console/api/setup).
  - Every option is checked before the first request (e-mail syntax, name length, Dify's password
    rule, the length of O(init_password)), so a value Dify would reject never reaches it.
  - Every failure ends in one message that names the URL and quotes Dify's error code and message
    (for example C(401 init_validate_failed)); passwords never appear in messages or results.
  - Needs only Python's standard library and ansible-core, so it runs on the Dify host itself.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: In check mode only C(GET /console/api/setup) is sent; whether O(init_password) is right is not checked.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  url:
    description:
      - Base URL of Dify's api service, for example V(http://127.0.0.1:5001). The console routes
        are under C(/console/api) of it; a URL that already ends with C(/console/api) is accepted.
      - Redirects are not followed, so point it at the api itself or at a proxy that does not redirect.
    type: str
    required: true
  email:
    description:
      - E-mail address of the administrator, the login name. Dify stores it lowercased, and so does
        the module (RV(email)).
    type: str
    required: true
  name:
    description: Display name of the administrator, 1 to 30 characters.
    type: str
    required: true
  password:
    description:
      - Password of the administrator. Dify's rule is at least 8 characters, with at least one
        letter (a-z or A-Z) and at least one digit.
      - Used only while the setup is not done; it is not compared with or set on an existing account.
    type: str
    required: true
  init_password:
    description:
      - The value of C(INIT_PASSWORD) in the api's environment (at most 30 characters), which Dify
        asks for before setup when it is set.
      - Leave it unset (or empty) when the api has no C(INIT_PASSWORD). Given while the api has none,
        it is not sent and the module warns that anyone reaching the api could have run the setup.
    type: str
  language:
    description:
      - Interface language of the administrator, a tag such as V(en-US), V(zh-Hans), V(ja-JP),
        V(de-DE) or V(pt-BR). Only the shape is checked here; Dify decides which it supports.
    type: str
    default: en-US
  timeout:
    description: Connect and read timeout of each request, in seconds.
    type: int
    default: 30
  validate_certs:
    description: Verify the TLS certificate when O(url) is C(https).
    type: bool
    default: true
  ca_bundle:
    description: CA certificate (PEM) to verify the api's certificate with, instead of the system's.
    type: path
notes:
  - "Requests, in order: C(GET /console/api/setup); if the step is C(not_started) and O(init_password)
    is set, C(GET /console/api/init) and, if its status is C(not_started), C(POST /console/api/init);
    then C(POST /console/api/setup) and C(GET /console/api/setup) again to read RV(setup_at). All of
    them share one cookie jar."
  - "Idempotence and races: if C(POST /console/api/setup) answers C(403 already_setup) although the
    first read said C(not_started), the module reads the setup status again. When it is now finished
    (another run or someone on the C(/install) page was faster) the task is not failed: it reports
    V(changed=false), RV(account_created=false) and a warning that the account of O(email) was not
    created by this task and may not exist. When it is still not finished, a workspace exists
    without a finished setup (for example one made with C(flask create-tenant)), Dify refuses
    setup while any workspace exists, and the module fails saying so."
  - Dify's cloud edition always reports the setup as finished; C(POST /console/api/init) and
    C(POST /console/api/setup) answer 404 on any edition other than C(SELF_HOSTED).
  - If C(INIT_PASSWORD) is empty on the server, anyone who reaches the api can complete the setup
    until it is done; run this module right after the api starts, or set C(INIT_PASSWORD).
seealso:
  - name: Dify self-hosting documentation
    description: Installing Dify with Docker Compose and its environment variables, including C(INIT_PASSWORD).
    link: https://docs.dify.ai/getting-started/install-self-hosted
"""

EXAMPLES = r"""
- name: Create Dify's first administrator
  selfhost.dify.dify_admin:
    url: http://127.0.0.1:5001
    email: admin@example.com
    name: Admin
    password: "{{ dify_admin_password }}"
    init_password: "{{ dify_init_password }}"
  no_log: true

- name: The same through an HTTPS proxy with an internal CA, in German
  selfhost.dify.dify_admin:
    url: https://dify.example.com
    ca_bundle: /usr/local/share/ca-certificates/internal-ca.crt
    email: Ops@Example.com
    name: Operations
    password: "{{ dify_admin_password }}"
    language: de-DE
  register: dify_admin_result

- name: Show when Dify was set up
  ansible.builtin.debug:
    msg: "Dify was set up at {{ dify_admin_result.setup_at }}"
"""

RETURN = r"""
step:
  description: The setup step Dify reported before the task, V(not_started) or V(finished).
  returned: always
  type: str
  sample: not_started
setup_at:
  description:
    - When the setup was completed (ISO 8601, as Dify reports it).
    - V(null) in check mode when the setup is still to be done, and on editions that do not report it.
  returned: always
  type: str
  sample: "2026-03-01T09:12:44.123456"
email:
  description: The administrator's e-mail address as Dify stores it (lowercased).
  returned: always
  type: str
  sample: ops@example.com
account_created:
  description:
    - Whether this task created the administrator account (V(false) in check mode and when
      Dify was already set up).
  returned: always
  type: bool
  sample: true
"""

import http.client
import http.cookiejar
import json
import urllib.error

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, SSLValidationError

from ansible_collections.selfhost.dify.plugins.module_utils.dify import (
    console_url,
    describe_connection_failure,
    describe_http_failure,
    describe_unexpected_answer,
    error_code,
    normalize_email,
    parse_json_body,
    redact,
    setup_param_errors,
)

SETUP_STEPS = ("not_started", "finished")
INIT_STATUSES = ("not_started", "finished")


class DifyFailure(Exception):
    """A failure already put into one sentence."""


class Answer:
    def __init__(self, method, url, status, body, content_type, location=None):
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.content_type = content_type
        self.location = location
        self.payload = parse_json_body(body) if body else None

    @property
    def code(self):
        return error_code(self.payload)

    def failure(self, init_password_sent=False):
        return DifyFailure(describe_http_failure(self.method, self.url, self.status, self.body, self.content_type,
                                                 self.location, init_password_sent))

    def unexpected(self, expected):
        return DifyFailure(describe_unexpected_answer(self.method, self.url, self.status, self.body,
                                                      self.content_type, expected))


class DifyConsole:
    """Dify's console API with one cookie jar, so the session POST /init validates is the one
    POST /setup presents."""

    def __init__(self, params):
        self.base_url = params["url"]
        self.timeout = params["timeout"]
        self.cookies = http.cookiejar.CookieJar()
        self.request = Request(
            headers={"Accept": "application/json"},
            timeout=self.timeout,
            validate_certs=params["validate_certs"],
            ca_path=params["ca_bundle"],
            cookies=self.cookies,
            follow_redirects="none",
            http_agent="selfhost.dify.dify_admin",
        )

    def call(self, method, route, payload=None):
        url = console_url(self.base_url, route)
        data = headers = None
        if payload is not None:
            data = json.dumps(payload).encode("utf-8")
            headers = {"Content-Type": "application/json"}
        try:
            response = self.request.open(method, url, data=data, headers=headers)
            body = response.read()
            return Answer(method, url, response.getcode(), body, response.headers.get("Content-Type"))
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read() if exc.fp is not None else b""
            except (OSError, http.client.HTTPException):
                body = b""
            hdrs = exc.headers
            return Answer(method, url, exc.code, body, hdrs.get("Content-Type") if hdrs else None,
                          hdrs.get("Location") if hdrs else None)
        except urllib.error.URLError as exc:
            reason = exc.reason if isinstance(exc.reason, BaseException) else exc
            raise DifyFailure(describe_connection_failure(method, url, reason, self.timeout)) from None
        except (OSError, http.client.HTTPException, UrlsConnectionError, SSLValidationError, ValueError) as exc:
            raise DifyFailure(describe_connection_failure(method, url, exc, self.timeout)) from None


def read_setup(console):
    """(step, setup_at) from GET /setup."""
    answer = console.call("GET", "/setup")
    if answer.status != 200:
        raise answer.failure()
    payload = answer.payload or {}
    if payload.get("step") not in SETUP_STEPS:
        raise answer.unexpected('a "step" of not_started or finished')
    return payload["step"], payload.get("setup_at")


def validate_init_password(module, console, init_password):
    """POST /init when the api asks for INIT_PASSWORD. Returns "validated" when it was sent and
    accepted, "not_asked" when the api has no INIT_PASSWORD, and "already_setup" when Dify
    answered 403 already_setup."""
    answer = console.call("GET", "/init")
    if answer.status != 200:
        raise answer.failure()
    status = (answer.payload or {}).get("status")
    if status not in INIT_STATUSES:
        raise answer.unexpected('a "status" of not_started or finished')
    if status == "finished":
        module.warn("dify_admin: init_password is set but the api at %s does not ask for it (INIT_PASSWORD is "
                    "empty on the server): until setup is done anyone who reaches the api can run it"
                    % console.base_url)
        return "not_asked"
    answer = console.call("POST", "/init", {"password": init_password})
    if answer.status in (200, 201):
        return "validated"
    if answer.status == 403 and answer.code == "already_setup":
        return "already_setup"
    raise answer.failure()


def settle_already_setup(module, console, result, refused):
    """After a 403 already_setup although GET /setup said not_started: read the status again.
    Finished meanwhile is reported, not failed; still not finished means a workspace exists
    without a setup, which only an operator can resolve. ``refused`` names the request."""
    step, setup_at = read_setup(console)
    if step == "finished":
        result["setup_at"] = setup_at
        module.warn("dify_admin: Dify was set up by someone else while this task ran (%s answered "
                    "403 already_setup); the account %s was not created by this task and may not exist"
                    % (refused, result["email"]))
        return
    raise DifyFailure("%s answered 403 already_setup but GET %s still reports the step not_started: a workspace "
                      "already exists without a finished setup (for example one made with 'flask create-tenant'), "
                      "and Dify refuses setup while any workspace exists; remove that workspace or finish the "
                      "setup by hand" % (refused, console_url(console.base_url, "/setup")))


def bootstrap(module, console, result):
    params = module.params
    step, setup_at = read_setup(console)
    result["step"] = step
    if step == "finished":
        result["setup_at"] = setup_at
        return
    if module.check_mode:
        result["changed"] = True
        return

    init_password_sent = False
    if params["init_password"]:
        outcome = validate_init_password(module, console, params["init_password"])
        if outcome == "already_setup":
            settle_already_setup(module, console, result, "POST " + console_url(console.base_url, "/init"))
            return
        init_password_sent = outcome == "validated"

    answer = console.call("POST", "/setup", {
        "email": result["email"],
        "name": params["name"],
        "password": params["password"],
        "language": params["language"],
    })
    if answer.status in (200, 201):
        result["changed"] = result["account_created"] = True
        dummy, result["setup_at"] = read_setup(console)
        return
    if answer.status == 403 and answer.code == "already_setup":
        settle_already_setup(module, console, result, "POST " + answer.url)
        return
    raise answer.failure(init_password_sent)


def argument_spec():
    return dict(
        url=dict(type="str", required=True),
        email=dict(type="str", required=True),
        name=dict(type="str", required=True),
        password=dict(type="str", required=True, no_log=True),
        init_password=dict(type="str", no_log=True),
        language=dict(type="str", default="en-US"),
        timeout=dict(type="int", default=30),
        validate_certs=dict(type="bool", default=True),
        ca_bundle=dict(type="path"),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    secrets = (params["password"], params["init_password"])

    errors = setup_param_errors(params)
    if errors:
        module.fail_json(msg=redact("dify_admin: " + "; ".join(errors), secrets))

    result = dict(changed=False, step=None, setup_at=None, email=normalize_email(params["email"]),
                  account_created=False)
    try:
        bootstrap(module, DifyConsole(params), result)
    except DifyFailure as exc:
        module.fail_json(msg=redact("dify_admin: %s" % exc, secrets), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
