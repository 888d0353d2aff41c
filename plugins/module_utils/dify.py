# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the selfhost.dify.dify_admin module, free of I/O so that they are unit-tested.

- the checks Dify's console applies to the first administrator (``setup_param_errors``),
  run before any request so that a bad value never reaches the server;
- Dify's answers (JSON error bodies ``{"code", "message", "status"}``, proxy error pages,
  redirects) and connection failures turned into one clear sentence
  (``describe_http_failure``, ``describe_connection_failure``);
- ``redact``, the last guard that keeps a password out of every message.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl

from ansible_collections.selfhost.dify.plugins.module_utils.validation import is_email, url_error

# All console routes live under this prefix of the api's base URL.
CONSOLE_API_PREFIX = "/console/api"

# Dify's password rule (api/libs/password.py), applied to the administrator's password.
_PASSWORD_RE = re.compile(r"^(?=.*[a-zA-Z])(?=.*\d).{8,}$")
PASSWORD_RULE = "at least 8 characters, with at least one letter (a-z or A-Z) and at least one digit"

# Dify limits the account name to 30 characters and INIT_PASSWORD to 30 characters.
NAME_MAX_LENGTH = 30
INIT_PASSWORD_MAX_LENGTH = 30

# Interface languages look like en-US, zh-Hans, pt-BR. The list Dify knows grows with its
# releases, so only the shape is checked here.
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

# How much of a body that is not Dify's JSON (a proxy's error page) a message quotes.
BODY_EXCERPT_LENGTH = 160

_TAG_RE = re.compile(r"<[^>]*>")
_SPACE_RE = re.compile(r"\s+")


def password_ok(password):
    """Whether ``password`` passes Dify's rule (see ``PASSWORD_RULE``)."""
    return isinstance(password, str) and _PASSWORD_RE.match(password) is not None


def normalize_email(email):
    """The address as Dify stores it: lowercased."""
    return email.lower()


def console_url(base_url, route):
    """The full URL of a console route (``/setup``) under the api's base URL.

    A base URL that already ends with ``/console/api`` is accepted as well.
    """
    base = base_url.rstrip("/")
    if base.endswith(CONSOLE_API_PREFIX):
        base = base[:-len(CONSOLE_API_PREFIX)]
    return base + CONSOLE_API_PREFIX + route


def setup_param_errors(params):
    """Every problem with the module's options, as short sentences; an empty list if none.

    ``params`` holds url, email, name, password, init_password, language, timeout and
    ca_bundle. No sentence contains a password.
    """
    errors = []
    reason = url_error(params.get("url"))
    if reason:
        errors.append("url %s" % reason)

    email = params.get("email")
    if not is_email(email):
        errors.append("email %r is not a valid e-mail address (expected local@domain.tld)" % (email,))

    name = params.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append("name must not be empty")
    elif len(name) > NAME_MAX_LENGTH:
        errors.append("name is %d characters long; Dify allows at most %d" % (len(name), NAME_MAX_LENGTH))

    if not password_ok(params.get("password")):
        errors.append("password does not meet Dify's rule: %s" % PASSWORD_RULE)

    init_password = params.get("init_password")
    if init_password and len(init_password) > INIT_PASSWORD_MAX_LENGTH:
        errors.append("init_password is %d characters long; Dify's INIT_PASSWORD is at most %d"
                      % (len(init_password), INIT_PASSWORD_MAX_LENGTH))

    language = params.get("language")
    if not isinstance(language, str) or not _LANGUAGE_RE.match(language):
        errors.append("language %r is not a language tag such as en-US, zh-Hans or pt-BR" % (language,))

    timeout = params.get("timeout")
    if timeout is not None and timeout < 1:
        errors.append("timeout must be at least 1 second, got %d" % timeout)

    ca_bundle = params.get("ca_bundle")
    if ca_bundle and not os.path.isfile(ca_bundle):
        errors.append("ca_bundle %s is not a file" % ca_bundle)
    return errors


def redact(text, secrets):
    """``text`` with every non-empty secret replaced by ``********``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


def parse_json_body(body):
    """The JSON object in ``body`` (bytes or str), or None if it is not a JSON object."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def body_excerpt(body):
    """The start of a body that is not Dify's JSON, as one line without markup."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    text = _SPACE_RE.sub(" ", _TAG_RE.sub(" ", body or "")).strip()
    if not text:
        return "(empty body)"
    if len(text) > BODY_EXCERPT_LENGTH:
        text = text[:BODY_EXCERPT_LENGTH - 3] + "..."
    return repr(text)


def error_code(payload):
    """The ``code`` of a Dify error body (None if there is none)."""
    if isinstance(payload, dict) and isinstance(payload.get("code"), str):
        return payload["code"]
    return None


def quote_error(status, payload):
    """``403 already_setup: <Dify's message>`` from a Dify error body."""
    code = error_code(payload) or "no error code"
    message = payload.get("message") if isinstance(payload, dict) else None
    if message is None or message == "":
        return "%d %s" % (status, code)
    if not isinstance(message, str):  # older releases answer {"message": {"field": "reason"}}
        message = json.dumps(message, sort_keys=True, ensure_ascii=False)
    return "%d %s: %s" % (status, code, message)


def describe_http_failure(method, url, status, body, content_type=None, location=None, init_password_sent=False):
    """One sentence for an HTTP answer the module cannot go on with.

    ``init_password_sent`` says whether this run validated INIT_PASSWORD with POST /init
    before, which decides what a ``401 not_init_validated`` means.
    """
    where = "%s %s" % (method, url)
    if 300 <= status < 400:
        return ("%s answered HTTP %d, a redirect to %s: set url to the api's own address (for example "
                "http://127.0.0.1:5001), not to a proxy that redirects" % (where, status, location or "(no Location)"))

    payload = parse_json_body(body or b"")
    if payload is None or error_code(payload) is None and "message" not in payload:
        kind = (content_type or "no content type").split(";")[0].strip()
        return ("%s answered HTTP %d with a body that is not Dify's JSON (%s): %s; is url the Dify api "
                "(port 5001, routes under %s) and is the api running?"
                % (where, status, kind, body_excerpt(body), CONSOLE_API_PREFIX))

    quoted = quote_error(status, payload)
    code = error_code(payload)
    if code == "init_validate_failed":
        return ("Dify refused init_password (%s): it does not match INIT_PASSWORD in the api's environment"
                % quoted)
    if code == "not_init_validated":
        if init_password_sent:
            return ("Dify did not accept the session of the successful POST /init (%s): the session cookie was lost "
                    "between the two requests; check that a proxy between the module and the api keeps the "
                    "Set-Cookie and Cookie headers, that every api process has the same SECRET_KEY, and that url "
                    "uses https if the cookie is marked Secure" % quoted)
        return ("Dify's api has INIT_PASSWORD set and asks for it before the administrator can be created (%s): "
                "set init_password to the value of INIT_PASSWORD" % quoted)
    if code == "already_setup":
        return "%s: Dify is already set up or a workspace already exists (%s)" % (where, quoted)
    if status == 404:
        return ("%s answered %s: either the api is not the self-hosted edition (its EDITION must be "
                "SELF_HOSTED) or url is not the api's base address (routes are under %s)"
                % (where, quoted, CONSOLE_API_PREFIX))
    if status == 400:
        return "Dify rejected the request %s (%s)" % (where, quoted)
    return "%s answered %s" % (where, quoted)


def describe_unexpected_answer(method, url, status, body, content_type, expected):
    """One sentence for a successful answer whose body is not what Dify sends
    (``expected`` describes what was looked for, e.g. ``a "step" of not_started or finished``)."""
    payload = parse_json_body(body or b"")
    if payload is None:
        return describe_http_failure(method, url, status, body, content_type)
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    if len(text) > BODY_EXCERPT_LENGTH:
        text = text[:BODY_EXCERPT_LENGTH - 3] + "..."
    return "%s answered HTTP %d with %s, expected %s: is url the Dify api?" % (method + " " + url, status, text, expected)


def describe_connection_failure(method, url, reason, timeout):
    """One sentence for a request that got no HTTP answer; ``reason`` is the exception
    (or a URLError's ``reason``)."""
    where = "%s %s" % (method, url)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "%s: no answer within %d seconds (is the api running and reachable? raise timeout if it is busy)" % (
            where, timeout)
    if isinstance(reason, ConnectionRefusedError):
        return "%s: connection refused (is the Dify api running and listening on that address and port?)" % where
    if isinstance(reason, socket.gaierror):
        return "%s: cannot resolve the host name (%s)" % (where, reason.strerror or reason)
    if isinstance(reason, ssl.SSLError):
        return ("%s: TLS error (%s); set ca_bundle to the CA certificate that signed the api's certificate, "
                "or check that url uses the right scheme and port"
                % (where, getattr(reason, "verify_message", None) or getattr(reason, "reason", None) or reason))
    text = str(reason) or type(reason).__name__
    return "%s: the request failed (%s)" % (where, text)
