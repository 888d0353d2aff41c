# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Dify contract double's own logic (tests/dify_double/double.py), without its image.

The parts that need PostgreSQL, Redis or S3 need those services (tests/dify_double/README.md
shows how to run the image against them); here: the pure helpers (session cookies, tokens,
the mode, error classification, migration plans) and the HTTP behaviour of the parts that
need no backend, served on 127.0.0.1."""

from __future__ import annotations

import http.client
import importlib.util
import json
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("dify_double", ROOT / "tests" / "dify_double" / "double.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


double = _load()


# -- mode and version ---------------------------------------------------------------------------
@pytest.mark.parametrize("argv, env, expected", [
    ([], {}, ("run", "api")),
    ([], {"MODE": "worker"}, ("run", "worker")),
    (["beat"], {"MODE": "api"}, ("run", "beat")),
    (["worker_beat"], {}, ("run", "beat")),
    (["plugin_daemon"], {}, ("run", "plugin_daemon")),
    (["healthcheck", "sandbox"], {"MODE": "api"}, ("healthcheck", "sandbox")),
    (["version"], {}, ("version", "api")),
])
def test_mode_comes_from_the_first_argument_then_mode(argv, env, expected):
    command, mode, dummy = double.parse_mode(argv, env)
    assert (command, mode) == expected


def test_healthcheck_without_a_mode_checks_the_running_mode():
    assert double.parse_mode(["healthcheck"], {"MODE": "api"}, recorded="worker")[1] == "worker"
    assert double.parse_mode(["healthcheck"], {"MODE": "web"}, recorded=None)[1] == "web"


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mode 'nginx'"):
        double.parse_mode(["nginx"], {})


def test_played_version_from_the_environment_then_the_baked_file(tmp_path):
    baked = tmp_path / "plays"
    baked.write_text("1.14.1\n")
    assert double.plays_version({"DOUBLE_PLAYS_VERSION": "1.13.3"}, str(baked)) == "1.13.3"
    assert double.plays_version({}, str(baked)) == "1.14.1"
    assert double.plays_version({}, str(tmp_path / "missing")) == double.DEFAULT_PLAYS


def test_every_played_release_has_its_revisions_and_1_14_adds_one():
    for version, entry in double.RELEASES.items():
        assert entry["revisions"], version
        assert all(rev in double.SCHEMA for rev in entry["revisions"]), version
    old, new = double.RELEASES["1.13.3"]["revisions"], double.RELEASES["1.14.1"]["revisions"]
    assert new[:len(old)] == old and len(new) == len(old) + 1


# -- migrations ---------------------------------------------------------------------------------
def test_migration_plan_from_an_empty_database_applies_every_revision():
    assert double.migration_plan(None, "1.14.1") == ["double_0001", "double_0002"]


def test_migration_plan_of_an_upgrade_applies_only_the_new_revision():
    assert double.migration_plan("double_0001", "1.14.1") == ["double_0002"]
    assert double.migration_plan("double_0002", "1.14.1") == []


def test_migration_plan_refuses_a_database_of_a_newer_release():
    with pytest.raises(ValueError, match="Can't locate revision identified by 'double_0002'"):
        double.migration_plan("double_0002", "1.13.3")


# -- session cookie and tokens ------------------------------------------------------------------
def test_session_cookie_round_trip_and_shape():
    cookie = double.sign_session({"is_init_validated": True}, "k1")
    assert cookie.count(".") == 2
    assert double.load_session(cookie, "k1") == {"is_init_validated": True}


def test_session_cookie_is_compressed_when_that_is_shorter():
    data = {"is_init_validated": True, "padding": "x" * 400}
    cookie = double.sign_session(data, "k1")
    assert cookie.startswith(".")
    assert double.load_session(cookie, "k1") == data


def test_session_cookie_signed_with_another_key_or_tampered_is_empty():
    cookie = double.sign_session({"is_init_validated": True}, "k1")
    assert double.load_session(cookie, "k2") == {}
    body, stamp, signature = cookie.split(".")
    forged = double.b64url(json.dumps({"is_init_validated": True, "x": 1}).encode())
    assert double.load_session("%s.%s.%s" % (forged, stamp, signature), "k1") == {}
    assert double.load_session("garbage", "k1") == {}
    assert double.load_session(None, "k1") == {}


def test_session_cookie_expires():
    cookie = double.sign_session({"a": 1}, "k", now=1000)
    assert double.load_session(cookie, "k", max_age=60, now=1050) == {"a": 1}
    assert double.load_session(cookie, "k", max_age=60, now=1100) == {}


def test_jwt_round_trip_expiry_and_key():
    token = double.jwt_encode({"user_id": "u", "exp": time.time() + 60}, "secret")
    assert double.jwt_decode(token, "secret")["user_id"] == "u"
    assert double.jwt_decode(token, "other") is None
    expired = double.jwt_encode({"user_id": "u", "exp": time.time() - 1}, "secret")
    assert double.jwt_decode(expired, "secret") is None
    assert double.jwt_decode("a.b", "secret") is None


def test_password_rule_and_hash():
    assert double.valid_password("Passw0rdx")
    assert not double.valid_password("short1a")
    assert not double.valid_password("onlyletters")
    assert not double.valid_password("123456789")
    salt = b"0123456789abcdef"
    assert double.hash_password("Passw0rdx", salt) == double.hash_password("Passw0rdx", salt)
    assert double.hash_password("Passw0rdx", salt) != double.hash_password("Passw0rdy", salt)


def test_email_rule():
    assert double.valid_email("admin@example.com")
    assert not double.valid_email("admin")
    assert not double.valid_email(None)


# -- naming the variable to fix -----------------------------------------------------------------
@pytest.mark.parametrize("text, variable", [
    ('connection to server at "db" (10.0.0.2), port 5432 failed: FATAL:  password authentication failed for user "dify"',
     "DB_PASSWORD"),
    ('connection to server at "db" (10.0.0.2), port 5432 failed: FATAL:  database "nodb" does not exist', "DB_DATABASE"),
    ('connection to server at "db" (10.0.0.2), port 5432 failed: FATAL:  role "x" does not exist', "DB_USERNAME"),
    ('could not translate host name "nohost" to address: Name or service not known', "DB_HOST"),
    ('connection to server at "db" (10.0.0.2), port 5433 failed: Connection refused\n\tIs the server running?', "DB_PORT"),
    ('connection to server at "db" (10.0.0.2), port 5432 failed: FATAL:  no pg_hba.conf entry for host', "DB_HOST"),
])
def test_postgresql_errors_name_the_variable(text, variable):
    assert double.pg_error_variable(text, double.DB_NAMES) == variable


def test_postgresql_errors_of_pgvector_name_pgvector_variables():
    text = 'FATAL:  password authentication failed for user "dify"'
    assert double.pg_error_variable(text, double.PGVECTOR_NAMES) == "PGVECTOR_PASSWORD"


def test_pg_reason_quotes_the_server():
    text = 'connection to server at "db" (10.0.0.2), port 5432 failed: FATAL:  password authentication failed for user "dify"\n'
    assert double.pg_reason(text) == 'password authentication failed for user "dify"'
    assert double.pg_reason('permission denied to create extension "vector"\nHINT:  Must be superuser.') == \
        'permission denied to create extension "vector"'


@pytest.mark.parametrize("text, variable", [
    ("invalid username-password pair or user is disabled.", "REDIS_PASSWORD"),
    ("Authentication required.", "REDIS_PASSWORD"),
    ("AUTH <password> called without any password configured for the default user", "REDIS_PASSWORD"),
    ("NOPERM this user has no permissions to run the 'set' command", "REDIS_USERNAME"),
    ("Error 111 connecting to redis:6380. Connection refused.", "REDIS_PORT"),
    ("Error -2 connecting to nohost:6379. Name or service not known.", "REDIS_HOST"),
    ("invalid DB index", "REDIS_DB"),
])
def test_redis_errors_name_the_variable(text, variable):
    assert double.redis_error_variable(text) == variable


def test_broker_errors_name_the_broker_url():
    assert double.redis_error_variable("invalid username-password pair", "CELERY_BROKER_URL") == "CELERY_BROKER_URL"


def test_urls_are_shown_without_their_password():
    assert double.redact_url("redis://dify:s3cret@redis:6379/1") == "redis://dify:********@redis:6379/1"
    assert double.redact_url("redis://:s3cret@redis:6379/1") == "redis://:********@redis:6379/1"
    assert double.redact_url("http://ssrf_proxy:3128") == "http://ssrf_proxy:3128"


def test_broker_url_settings():
    assert double.redis_url_settings("redis://dify:p%40ss@redis:6380/1") == ("redis", 6380, 1, "dify", "p@ss", False)
    assert double.redis_url_settings("rediss://:pw@redis/0")[4:] == ("pw", True)
    with pytest.raises(ValueError):
        double.redis_url_settings("amqp://guest@rabbit//")


@pytest.mark.parametrize("style, endpoint, bucket, path_style", [
    ("path", "https://s3.example.com", "dify", True),
    ("virtual", "http://10.0.0.5:9000", "dify", False),
    ("auto", "http://10.0.0.5:9000", "dify", True),
    ("auto", "http://localhost:9000", "dify", True),
    ("auto", "https://s3.example.com", "dify", False),
    ("auto", "https://s3.example.com", "Not_DNS", True),
    ("", "https://s3.example.com", "dify", False),
])
def test_s3_address_style(style, endpoint, bucket, path_style):
    assert double.s3_path_style(style, endpoint, bucket) is path_style


def test_web_prefixes_follow_the_console_and_app_urls():
    env = {"CONSOLE_API_URL": "https://dify.example.com/", "APP_API_URL": "https://app.example.com"}
    assert double.web_prefixes(env) == {"NEXT_PUBLIC_API_PREFIX": "https://dify.example.com/console/api",
                                        "NEXT_PUBLIC_PUBLIC_API_PREFIX": "https://app.example.com/api"}
    assert double.web_prefixes({}) == {"NEXT_PUBLIC_API_PREFIX": "/console/api", "NEXT_PUBLIC_PUBLIC_API_PREFIX": "/api"}


def test_cookie_names_get_the_host_prefix_only_over_https_without_a_domain():
    https = {"CONSOLE_API_URL": "https://d.example", "CONSOLE_WEB_URL": "https://d.example"}
    names, secure = double.cookie_names(https)
    assert secure and names["csrf_token"] == "__Host-csrf_token"
    names, secure = double.cookie_names(dict(https, COOKIE_DOMAIN=".example"))
    assert secure and names["csrf_token"] == "csrf_token"
    names, secure = double.cookie_names({"CONSOLE_API_URL": "http://d", "CONSOLE_WEB_URL": "http://d"})
    assert not secure and names["access_token"] == "access_token"


def test_echoed_headers_hide_credentials():
    echoed = double.echo_headers({"Host": "d.example", "Authorization": "Bearer x", "X-Api-Key": "k",
                                  "X-Forwarded-Proto": "https"})
    assert echoed == {"Host": "d.example", "Authorization": "<redacted>", "X-Api-Key": "<redacted>",
                      "X-Forwarded-Proto": "https"}


def test_sse_parameters_are_bounded():
    assert double.sse_params({}) == (6, 0.5)
    assert double.sse_params({"events": ["3"], "interval": ["0"]}) == (3, 0.0)
    assert double.sse_params({"events": ["100000"], "interval": ["-1"]}) == (1000, 0.0)
    assert double.sse_params({"events": ["x"]}) == (6, 0.5)


def test_secret_key_is_required_by_1_13_only():
    assert double.check_secret_key({}, "1.13.3")[0]["variable"] == "SECRET_KEY"
    assert double.check_secret_key({}, "1.14.1") == []
    assert double.check_secret_key({"SECRET_KEY": "k"}, "1.13.3") == []


def test_init_password_longer_than_30_is_reported():
    assert double.check_init_password({"INIT_PASSWORD": "x" * 31})[0]["variable"] == "INIT_PASSWORD"
    assert double.check_init_password({"INIT_PASSWORD": "x" * 30}) == []


# -- the HTTP parts that need no backend (served on 127.0.0.1) ----------------------------------
@pytest.fixture
def serve(monkeypatch):
    servers = []
    monkeypatch.setattr(double, "log", lambda *args: None)  # request lines may outlive the capture

    def start(app, errors=None):
        if errors is not None:
            app.checks.evaluate = lambda: list(errors)
        handler = type("TestHandler", (double.Handler,), {"app": app})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


API_ENV = {"SECRET_KEY": "k", "DEPLOY_ENV": "TESTING"}


def test_api_health_is_green_with_version_headers(serve):
    port = serve(double.ApiApp("api", "1.13.3", API_ENV), errors=[])
    status, headers, body = request(port, "GET", "/health")
    data = json.loads(body)
    assert status == 200 and data["status"] == "ok" and data["version"] == "1.13.3" and data["double"] is True
    assert headers["x-version"] == "1.13.3" and headers["x-env"] == "TESTING" and headers["x-dify-double"] == "api"
    assert headers["server"].startswith("dify-contract-double/1.13.3")


def test_api_health_names_the_variables_to_fix(serve):
    errors = [double.error("DB_PASSWORD", 'password authentication failed for user "dify"')]
    port = serve(double.ApiApp("api", "1.14.1", API_ENV), errors=errors)
    status, dummy, body = request(port, "GET", "/health")
    data = json.loads(body)
    assert status == 503 and data["status"] == "error" and data["version"] == "1.14.1"
    assert data["errors"] == errors


def test_api_unknown_path_echoes_where_it_landed(serve):
    port = serve(double.ApiApp("api", "1.13.3", API_ENV), errors=[])
    status, dummy, body = request(port, "GET", "/nowhere?x=1", headers={"X-Forwarded-Proto": "https",
                                                                        "Cookie": "a=b"})
    data = json.loads(body)
    assert status == 404 and data["code"] == "not_found" and data["served_by"] == "api"
    assert data["path"] == "/nowhere" and data["method"] == "GET" and data["query"] == {"x": "1"}
    assert data["headers"]["X-Forwarded-Proto"] == "https" and data["headers"]["Cookie"] == "<redacted>"


def test_api_streams_server_sent_events_in_chunks(serve):
    port = serve(double.ApiApp("api", "1.13.3", API_ENV), errors=[])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/chat-messages?events=3&interval=0.2", body=json.dumps({"response_mode": "streaming"}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    assert resp.getheader("Transfer-Encoding") == "chunked"
    arrivals, events = [], []
    while len(events) < 3:
        line = resp.fp.readline()
        if line.startswith(b"data: "):
            arrivals.append(time.monotonic())
            events.append(json.loads(line[6:]))
    conn.close()
    assert [e["n"] for e in events] == [1, 2, 3] and all("sent_at" in e for e in events)
    assert arrivals[-1] - arrivals[0] >= 0.3  # spread over time, not buffered into one answer


def test_api_inner_ping_refuses_a_wrong_key_with_404(serve):
    env = dict(API_ENV, PLUGIN_DAEMON_KEY="d", INNER_API_KEY_FOR_PLUGIN="inner")
    port = serve(double.ApiApp("api", "1.13.3", env), errors=[])
    assert request(port, "GET", double.INNER_PING, headers={"X-Inner-Api-Key": "wrong"})[0] == 404
    assert request(port, "GET", double.INNER_PING, headers={"X-Inner-Api-Key": "inner"})[0] == 200


def test_web_page_is_titled_as_a_double_and_carries_the_prefixes(serve):
    env = {"CONSOLE_API_URL": "https://dify.example.com", "APP_API_URL": "https://dify.example.com"}
    port = serve(double.WebApp("web", "1.13.3", env))
    status, headers, body = request(port, "GET", "/explore/apps")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "<title>Dify contract double (web)</title>" in page
    assert 'href="https://dify.example.com/console/api/setup"' in page
    assert 'data-public-api-prefix="https://dify.example.com/api"' in page
    assert headers["x-dify-double"] == "web"


def test_sandbox_health_and_key(serve):
    port = serve(double.SandboxApp("sandbox", "1.13.3", {"API_KEY": "sk"}))
    status, dummy, body = request(port, "GET", "/health")
    assert status == 200 and json.loads(body) == "ok"
    assert request(port, "POST", "/v1/sandbox/run", body=b"{}", headers={"X-Api-Key": "wrong"})[0] == 401
    status, dummy, body = request(port, "POST", "/v1/sandbox/run", body=b"{}", headers={"X-Api-Key": "sk"})
    assert status == 200 and "does not execute code" in json.loads(body)["data"]["error"]


def test_plugin_daemon_health_key_and_hook_echo(serve):
    port = serve(double.DaemonApp("plugin_daemon", "1.14.1", {"SERVER_KEY": "sk"}), errors=[])
    status, dummy, body = request(port, "GET", "/health/check")
    data = json.loads(body)
    assert status == 200 and data["status"] == "ok" and data["double"] is True
    assert data["version"] == double.RELEASES["1.14.1"]["plugin_daemon"]
    path = "/plugin/%s/management/list" % double.NIL_TENANT
    assert request(port, "GET", path, headers={"X-Api-Key": "nope"})[0] == 401
    assert request(port, "GET", path, headers={"X-Api-Key": "sk"})[0] == 200
    status, dummy, body = request(port, "POST", "/e/hook123/run", body=b"{}",
                                  headers={"Dify-Hook-Url": "https://d.example/e/hook123/run"})
    data = json.loads(body)
    assert status == 200 and data["hook_id"] == "hook123" and data["dify_hook_url"] == "https://d.example/e/hook123/run"
