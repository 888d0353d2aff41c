# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for selfhost.dify.dify_admin and its helpers (plugins/module_utils/dify.py).

The module runs against a small HTTP server in a thread that answers the console routes the
way Dify's self-hosted api does: GET/POST /console/api/setup and /console/api/init, Dify's
error bodies {"code", "message", "status"}, INIT_PASSWORD, and a session cookie signed with a
server key, so that POST /setup without the cookie POST /init returned is refused with
401 not_init_validated. Proxy error pages, a dead port and a server that never answers are
the failures a real Dify cannot be made to show on demand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from datetime import datetime, timezone
from unittest import mock
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args
from ansible_collections.selfhost.dify.plugins.module_utils import dify
from ansible_collections.selfhost.dify.plugins.modules import dify_admin

PASSWORD = "Adm1n-Secret-Pa55word"
INIT_PASSWORD = "Init-S3cret-xyz"
SECRETS = (PASSWORD, INIT_PASSWORD)

_PASSWORD_RE = re.compile(r"^(?=.*[a-zA-Z])(?=.*\d).{8,}$")
_EMAIL_RE = re.compile(r"^[\w.!#$%&'*+\-/=?^_`{|}~]+@([\w-]+\.)+[\w-]{2,}$")


# -- a console api that behaves like Dify's -------------------------------------------------------

class FakeDify:
    """State of one Dify api: the setup row, the workspaces, INIT_PASSWORD, the key that signs
    session cookies, and every request received (method, path, JSON body, cookie header)."""

    def __init__(self, init_password=None):
        self.init_password = init_password
        self.secret_key = b"server-signing-key"
        self.setup_at = None
        self.account = None
        self.tenants = 0
        self.requests = []
        # route -> (status, content type, body): a proxy or broken server answering instead of Dify
        self.override = {}
        # set up by someone else between our GET /setup and our POST (a race)
        self.setup_before_post = False
        self.delay = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # session cookies: base64(JSON).hmac, like Flask's signed session
    def sign(self, session):
        data = base64.urlsafe_b64encode(json.dumps(session).encode()).decode()
        mac = hmac.new(self.secret_key, data.encode(), hashlib.sha256).hexdigest()
        return "%s.%s" % (data, mac)

    def session(self, cookie_header):
        for part in (cookie_header or "").split(";"):
            name, dummy, value = part.strip().partition("=")
            if name != "session" or "." not in value:
                continue
            data, mac = value.rsplit(".", 1)
            if hmac.compare_digest(mac, hmac.new(self.secret_key, data.encode(), hashlib.sha256).hexdigest()):
                return json.loads(base64.urlsafe_b64decode(data))
        return {}

    def posts(self):
        return [(m, p) for m, p, b, c in self.requests if m == "POST"]

    def finish_setup(self, email="someone@example.com"):
        self.setup_at = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
        self.account = {"email": email}
        self.tenants = 1

    def answer(self, method, path, body, cookie):
        """(status, content type, body bytes, extra headers) for one request."""
        if path in self.override:
            status, ctype, text = self.override[path]
            return status, ctype, text.encode(), {}
        session = self.session(cookie)
        route = path[len("/console/api"):] if path.startswith("/console/api/") else None
        if route == "/setup" and method == "GET":
            if self.setup_at:
                return self.json(200, {"step": "finished", "setup_at": self.setup_at})
            return self.json(200, {"step": "not_started"})
        if route == "/init" and method == "GET":
            done = not self.init_password or session.get("is_init_validated") or self.setup_at
            return self.json(200, {"status": "finished" if done else "not_started"})
        if method == "POST" and self.setup_before_post:
            self.setup_before_post = False
            self.finish_setup()
        if route == "/init" and method == "POST":
            if self.tenants:
                return self.error(403, "already_setup", "Dify has been successfully installed.")
            password = (body or {}).get("password")
            if not isinstance(password, str) or len(password) > 30:
                return self.error(400, "invalid_param", "password: String should have at most 30 characters")
            if password != self.init_password:
                return self.error(401, "init_validate_failed", "Init validation failed. Please check the password "
                                  "and try again.", {"is_init_validated": False})
            return self.json(201, {"result": "success"}, {"is_init_validated": True})
        if route == "/setup" and method == "POST":
            if self.setup_at or self.tenants:
                return self.error(403, "already_setup", "Dify has been successfully installed.")
            if self.init_password and not session.get("is_init_validated"):
                return self.error(401, "not_init_validated", "Init validation has not been completed yet.")
            body = body or {}
            if not _EMAIL_RE.match(str(body.get("email", ""))):
                return self.error(400, "invalid_param", "%s is not a valid email." % body.get("email"))
            if len(body.get("name") or "") > 30:
                return self.error(400, "invalid_param", "name: String should have at most 30 characters")
            if not _PASSWORD_RE.match(str(body.get("password", ""))):
                return self.error(400, "invalid_param", "Password must contain letters and numbers, and the "
                                  "length must be greater than 8.")
            self.finish_setup(email=body["email"].lower())
            self.account.update(name=body["name"], password=body["password"], language=body.get("language"))
            return self.json(201, {"result": "success"})
        return self.error(404, "not_found", "The requested URL was not found on the server.")

    def json(self, status, payload, session=None):
        headers = {"Set-Cookie": "session=%s; HttpOnly; Path=/" % self.sign(session)} if session is not None else {}
        return status, "application/json", json.dumps(payload).encode(), headers

    def error(self, status, code, message, session=None):
        return self.json(status, {"code": code, "message": message, "status": status}, session)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                cookie = self.headers.get("Cookie")
                fake.requests.append((method, self.path, body, cookie))
                if fake.delay:
                    time.sleep(fake.delay)
                status, ctype, payload, headers = fake.answer(method, self.path, body, cookie)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):  # noqa: N802 (http.server's naming)
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def log_message(self, *args):
                pass

        return Handler

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    with FakeDify() as fake:
        yield fake


@pytest.fixture
def guarded_server():
    with FakeDify(init_password=INIT_PASSWORD) as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def run_module(capsys, url, check_mode=False, **args):
    """Run the module's main() as Ansible would; returns its result (failed or not)."""
    module_args = {"url": url, "email": "Admin@Example.com", "name": "Admin", "password": PASSWORD,
                   "_ansible_check_mode": check_mode}
    module_args.update(args)
    # Ansible keeps warnings process-wide, and once controller code was imported in this test
    # process (the filter tests) it sends them to the display instead of the result: run as a
    # module process does, with no warnings yet and not on the controller.
    ansible_warnings._global_warnings.clear()  # pylint: disable=protected-access
    with patch_module_args(module_args), pytest.raises(SystemExit), \
            mock.patch.object(module_utils_internal, "is_controller", False):
        dify_admin.main()
    out = capsys.readouterr().out
    for secret in SECRETS:
        assert secret not in out, "a password appears in the module's output"
    return json.loads(out)


def warnings(result):
    """The warning texts of a result (ansible-core 2.19 wraps each in a structured event)."""
    texts = []
    for warning in result.get("warnings", []):
        if isinstance(warning, dict):
            warning = warning.get("event", warning).get("msg", json.dumps(warning))
        texts.append(warning)
    return texts


def free_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# -- the whole run against the fake api ----------------------------------------------------------

def test_fresh_setup_without_init_password_then_idempotent(server, capsys):
    result = run_module(capsys, server.url)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["account_created"] is True
    assert result["step"] == "not_started"
    assert result["email"] == "admin@example.com"
    assert result["setup_at"] == server.setup_at
    assert server.account == {"email": "admin@example.com", "name": "Admin", "password": PASSWORD,
                              "language": "en-US"}
    assert server.posts() == [("POST", "/console/api/setup")]

    server.requests = []
    again = run_module(capsys, server.url)
    assert again["changed"] is False
    assert again["account_created"] is False
    assert again["step"] == "finished"
    assert again["setup_at"] == server.setup_at
    assert server.posts() == []


def test_fresh_setup_with_init_password_keeps_the_session_cookie(guarded_server, capsys):
    result = run_module(capsys, guarded_server.url, init_password=INIT_PASSWORD, language="de-DE")
    assert not result.get("failed"), result
    assert result["changed"] is True and result["account_created"] is True
    assert guarded_server.account["language"] == "de-DE"
    assert guarded_server.posts() == [("POST", "/console/api/init"), ("POST", "/console/api/setup")]
    setup_post = [r for r in guarded_server.requests if r[:2] == ("POST", "/console/api/setup")][0]
    assert guarded_server.session(setup_post[3]) == {"is_init_validated": True}

    guarded_server.requests = []
    again = run_module(capsys, guarded_server.url, init_password=INIT_PASSWORD)
    assert again["changed"] is False and again["step"] == "finished"
    assert guarded_server.posts() == []


def test_url_may_name_the_console_api_prefix(server, capsys):
    result = run_module(capsys, server.url + "/console/api/")
    assert result["changed"] is True
    assert server.posts() == [("POST", "/console/api/setup")]


@pytest.mark.parametrize("init_password", [None, INIT_PASSWORD])
def test_check_mode_makes_no_post(guarded_server, capsys, init_password):
    result = run_module(capsys, guarded_server.url, check_mode=True, init_password=init_password)
    assert result["changed"] is True
    assert result["account_created"] is False
    assert result["setup_at"] is None
    assert guarded_server.posts() == []
    assert guarded_server.setup_at is None


def test_check_mode_on_a_finished_setup_reports_no_change(server, capsys):
    server.finish_setup()
    result = run_module(capsys, server.url, check_mode=True)
    assert result["changed"] is False and result["setup_at"] == server.setup_at


def test_wrong_init_password(guarded_server, capsys):
    result = run_module(capsys, guarded_server.url, init_password="not-the-right-one")
    assert result["failed"] is True and result["changed"] is False
    assert "refused init_password (401 init_validate_failed: Init validation failed" in result["msg"]
    assert "does not match INIT_PASSWORD" in result["msg"]
    assert "not-the-right-one" not in json.dumps(result)
    assert guarded_server.posts() == [("POST", "/console/api/init")]
    assert guarded_server.setup_at is None


def test_missing_init_password(guarded_server, capsys):
    result = run_module(capsys, guarded_server.url)
    assert result["failed"] is True and result["changed"] is False
    assert "has INIT_PASSWORD set" in result["msg"]
    assert "401 not_init_validated" in result["msg"]
    assert "set init_password" in result["msg"]
    assert guarded_server.setup_at is None


def test_lost_session_cookie_is_named(guarded_server, capsys):
    # The api accepts INIT_PASSWORD but another process (another SECRET_KEY) handles /setup.
    original = guarded_server.answer

    def rotating_key(method, path, body, cookie):
        if path.endswith("/setup") and method == "POST":
            guarded_server.secret_key = b"another-key"
        return original(method, path, body, cookie)

    guarded_server.answer = rotating_key
    result = run_module(capsys, guarded_server.url, init_password=INIT_PASSWORD)
    assert result["failed"] is True
    assert "did not accept the session of the successful POST /init" in result["msg"]
    assert "SECRET_KEY" in result["msg"]


def test_init_password_given_but_not_required_warns(server, capsys):
    result = run_module(capsys, server.url, init_password=INIT_PASSWORD)
    assert result["changed"] is True
    assert server.posts() == [("POST", "/console/api/setup")]
    assert any("does not ask for it" in w for w in warnings(result))


def test_setup_finished_meanwhile_is_reported_not_failed(server, capsys):
    server.setup_before_post = True
    result = run_module(capsys, server.url)
    assert not result.get("failed"), result
    assert result["changed"] is False and result["account_created"] is False
    assert result["step"] == "not_started"
    assert result["setup_at"] == server.setup_at
    assert any("set up by someone else" in w and "admin@example.com" in w for w in warnings(result))


def test_setup_finished_meanwhile_seen_by_post_init(guarded_server, capsys):
    guarded_server.setup_before_post = True
    result = run_module(capsys, guarded_server.url, init_password=INIT_PASSWORD)
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert any("POST %s/console/api/init answered 403 already_setup" % guarded_server.url in w
               for w in warnings(result))


def test_workspace_without_setup_fails_clearly(server, capsys):
    server.tenants = 1  # e.g. `flask create-tenant` ran: Dify refuses setup, GET /setup says not_started
    result = run_module(capsys, server.url)
    assert result["failed"] is True and result["changed"] is False
    assert "a workspace already exists without a finished setup" in result["msg"]


def test_init_route_missing_means_edition_or_url(guarded_server, capsys):
    guarded_server.override["/console/api/init"] = (404, "application/json", json.dumps(
        {"code": "not_found", "message": "The requested URL was not found on the server.", "status": 404}))
    result = run_module(capsys, guarded_server.url, init_password=INIT_PASSWORD)
    assert result["failed"] is True
    assert "GET %s/console/api/init answered 404 not_found" % guarded_server.url in result["msg"]
    assert "SELF_HOSTED" in result["msg"]


def test_validation_error_from_dify_is_quoted(server, capsys):
    original = server.answer

    def strict(method, path, body, cookie):
        if method == "POST":
            return server.error(400, "invalid_param", "admin@example.com is not a valid email.")
        return original(method, path, body, cookie)

    server.answer = strict
    result = run_module(capsys, server.url)
    assert result["failed"] is True
    assert ("Dify rejected the request POST %s/console/api/setup (400 invalid_param: admin@example.com is not "
            "a valid email.)" % server.url) in result["msg"]


def test_proxy_error_page_is_not_json(server, capsys):
    server.override["/console/api/setup"] = (
        502, "text/html", "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
                          "</h1></center><hr><center>nginx</center></body></html>")
    result = run_module(capsys, server.url)
    assert result["failed"] is True
    assert "GET %s/console/api/setup answered HTTP 502" % server.url in result["msg"]
    assert "not Dify's JSON (text/html): '502 Bad Gateway 502 Bad Gateway nginx'" in result["msg"]


def test_unexpected_json_is_named(server, capsys):
    server.override["/console/api/setup"] = (200, "application/json", '{"hello": "world"}')
    result = run_module(capsys, server.url)
    assert result["failed"] is True
    assert 'answered HTTP 200 with {"hello": "world"}, expected a "step"' in result["msg"]


def test_redirect_is_not_followed(server, capsys):
    original = server.answer

    def redirect(method, path, body, cookie):
        status, ctype, payload, headers = original(method, path, body, cookie)
        return 301, ctype, b"", {"Location": "https://dify.example.com" + path}

    server.answer = redirect
    result = run_module(capsys, server.url)
    assert result["failed"] is True
    assert "a redirect to https://dify.example.com/console/api/setup" in result["msg"]


def test_connection_refused_names_the_url(capsys):
    url = "http://127.0.0.1:%d" % free_port()
    result = run_module(capsys, url)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == ("dify_admin: GET %s/console/api/setup: connection refused (is the Dify api running "
                             "and listening on that address and port?)" % url)


def test_timeout_names_the_url(server, capsys):
    server.delay = 2.5
    result = run_module(capsys, server.url, timeout=1)
    assert result["failed"] is True
    assert "GET %s/console/api/setup: no answer within 1 seconds" % server.url in result["msg"]


# -- validation before any request ----------------------------------------------------------------

@pytest.mark.parametrize("args, reason", [
    ({"email": "not-an-email"}, "email 'not-an-email' is not a valid e-mail address"),
    ({"email": "admin@localhost"}, "is not a valid e-mail address"),
    ({"name": ""}, "name must not be empty"),
    ({"name": "   "}, "name must not be empty"),
    ({"name": "x" * 31}, "name is 31 characters long; Dify allows at most 30"),
    ({"password": "short1"}, "password does not meet Dify's rule: at least 8 characters, with at least one letter"),
    ({"password": "onlyletters"}, "at least one digit"),
    ({"password": "1234567890"}, "at least one letter"),
    ({"init_password": "x" * 31}, "init_password is 31 characters long; Dify's INIT_PASSWORD is at most 30"),
    ({"language": "English"}, "language 'English' is not a language tag"),
    ({"timeout": 0}, "timeout must be at least 1 second"),
    ({"url": "127.0.0.1:5001"}, "url must start with http://, https://"),
    ({"ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle /nonexistent/ca.pem is not a file"),
])
def test_invalid_options_make_no_request(server, capsys, args, reason):
    args.setdefault("url", server.url)
    result = run_module(capsys, **args)
    assert result["failed"] is True
    assert reason in result["msg"]
    assert server.requests == []


def test_every_problem_is_reported_at_once_without_the_password(server, capsys):
    bad = "weakpass"  # no digit: rejected, and must not be echoed
    result = run_module(capsys, server.url, email="nope", name="", password=bad, init_password="y" * 40)
    assert result["msg"].startswith("dify_admin: ")
    for part in ("email 'nope'", "name must not be empty", "password does not meet", "init_password is 40"):
        assert part in result["msg"]
    assert bad not in json.dumps(result)
    assert "y" * 40 not in json.dumps(result)
    assert server.requests == []


def test_password_never_in_results_even_when_dify_echoes_it(server, capsys):
    original = server.answer

    def echo(method, path, body, cookie):
        if method == "POST":
            return server.error(500, "unknown", "internal error while saving %s" % body["password"])
        return original(method, path, body, cookie)

    server.answer = echo
    result = run_module(capsys, server.url)  # run_module asserts the password is absent
    assert result["failed"] is True
    assert "500 unknown: internal error while saving" in result["msg"]


# -- helpers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("password, ok", [
    ("abcdefg1", True), ("A1bcdefgh", True), ("abcdefgh", False), ("12345678", False), ("abc1", False),
    ("ab cd ef 1", True),
])
def test_password_rule_is_difys(password, ok):
    assert dify.password_ok(password) is ok
    assert bool(_PASSWORD_RE.match(password)) is ok


def test_console_url():
    assert dify.console_url("http://h:5001", "/setup") == "http://h:5001/console/api/setup"
    assert dify.console_url("http://h:5001/", "/init") == "http://h:5001/console/api/init"
    assert dify.console_url("https://h/console/api", "/setup") == "https://h/console/api/setup"


def test_quote_error_handles_field_messages_of_older_releases():
    assert dify.quote_error(400, {"message": {"password": "bad"}}) == '400 no error code: {"password": "bad"}'
    assert dify.quote_error(403, {"code": "already_setup"}) == "403 already_setup"


def test_redact():
    assert dify.redact("a secret b", ("secret", None, "")) == "a ******** b"


def test_tls_failure_is_named(server, capsys):
    url = server.url.replace("http://", "https://")  # a plain-HTTP port spoken to with TLS
    result = run_module(capsys, url, timeout=5)
    assert result["failed"] is True
    assert result["msg"].startswith("dify_admin: GET %s/console/api/setup: TLS error" % url)
    assert "ca_bundle" in result["msg"]
