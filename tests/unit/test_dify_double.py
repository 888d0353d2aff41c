# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Dify contract double's own logic (the modules of tests/dify_double), without its image.

The double plays only the plugin daemon, the web and the sandbox (Dify's api, worker, beat
and migrations run Dify's real image built from upstream source). The daemon's checks of
PostgreSQL, Redis and S3 need those services (tests/dify_double/README.md shows how to run
the image against them); here: the mode and version, error classification, the daemon's
checks that need no backend, and the HTTP behaviour of the three parts, served on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.dify_double import double, plugin_daemon, sandbox, server, web

ROOT = Path(__file__).resolve().parents[2]


# -- mode and version ---------------------------------------------------------------------------
@pytest.mark.parametrize("argv, env, expected", [
    ([], {"MODE": "plugin_daemon"}, ("run", "plugin_daemon")),
    (["web"], {"MODE": "sandbox"}, ("run", "web")),
    (["plugin-daemon"], {}, ("run", "plugin_daemon")),
    (["daemon"], {}, ("run", "plugin_daemon")),
    (["healthcheck", "sandbox"], {"MODE": "web"}, ("healthcheck", "sandbox")),
    (["version"], {}, ("version", None)),
])
def test_mode_comes_from_the_first_argument_then_mode(argv, env, expected):
    command, mode, dummy = double.parse_mode(argv, env)
    assert (command, mode) == expected


def test_healthcheck_without_a_mode_checks_the_running_mode():
    assert double.parse_mode(["healthcheck"], {"MODE": "web"}, recorded="plugin_daemon")[1] == "plugin_daemon"
    assert double.parse_mode(["healthcheck"], {"MODE": "web"}, recorded=None)[1] == "web"


def test_an_unknown_mode_or_no_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mode 'nginx'"):
        double.parse_mode(["nginx"], {})
    with pytest.raises(ValueError, match="no mode"):
        double.parse_mode([], {})


@pytest.mark.parametrize("mode", ["api", "worker", "beat", "worker_beat", "migration", "job"])
def test_the_api_image_modes_are_left_to_dify_s_real_image(mode):
    with pytest.raises(ValueError, match="Dify's real api image built from upstream source"):
        double.parse_mode([mode], {})
    with pytest.raises(ValueError, match="not played by this double"):
        double.parse_mode([], {"MODE": mode})


def test_main_refuses_a_mode_of_the_api_image_with_exit_2(capsys):
    assert double.main(["api"], {}) == 2
    assert "Dify's real api image" in capsys.readouterr().err


def test_version_needs_no_mode(capsys):
    assert double.main(["version"], {"DOUBLE_PLAYS_VERSION": "1.11.1"}) == 0
    assert capsys.readouterr().out.strip() == "1.11.1"


def test_played_version_from_the_environment_then_the_baked_file(tmp_path):
    baked = tmp_path / "plays"
    baked.write_text("1.11.1\n")
    assert server.plays_version({"DOUBLE_PLAYS_VERSION": "1.13.0"}, str(baked)) == "1.13.0"
    assert server.plays_version({}, str(baked)) == "1.11.1"
    assert server.plays_version({}, str(tmp_path / "missing")) == server.DEFAULT_PLAYS


def test_the_played_releases_are_the_ones_the_build_script_builds():
    script = (ROOT / "scripts" / "build-dify-double.sh").read_text()
    built = re.search(r"^DIFY_VERSIONS=\(([^)]*)\)", script, re.M).group(1).split()
    assert sorted(built) == sorted(server.RELEASES)
    assert server.DEFAULT_PLAYS in server.RELEASES


def test_each_release_reports_upstream_s_companion_versions():
    # upstream's docker/docker-compose.yaml of each release
    assert server.RELEASES["1.13.0"] == {"plugin_daemon": "0.5.3-local", "sandbox": "0.2.12"}
    assert server.RELEASES["1.11.1"] == {"plugin_daemon": "0.5.2-local", "sandbox": "0.2.12"}
    assert server.release("9.9.9") == server.RELEASES["1.13.0"]  # unknown: the newest known


def test_the_start_line_names_the_part_and_the_real_services(monkeypatch):
    lines = []
    monkeypatch.setattr(double, "log", lambda mode, message: lines.append(message))
    monkeypatch.setattr(double, "serve", lambda app, port, stop: None)
    monkeypatch.setattr(double, "recorded_mode", lambda: None)
    monkeypatch.setattr(double.signal, "signal", lambda *args: None)  # keep pytest's own handlers
    assert double.main(["sandbox"], {"DOUBLE_PLAYS_VERSION": "1.11.1", "DOUBLE_MODE_FILE": "/nonexistent/x"}) == 0
    assert "Dify 1.11.1's sandbox (dify-sandbox 0.2.12), played by a test double (not Dify)" in lines[0]
    assert "api, worker, beat and migrations run Dify's real image built from upstream source" in lines[1]


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
    assert plugin_daemon.pg_error_variable(text, plugin_daemon.DB_NAMES) == variable


def test_pg_reason_quotes_the_server():
    text = 'connection to server at "db" (10.0.0.2), port 5432 failed: FATAL:  password authentication failed for user "dify"\n'
    assert plugin_daemon.pg_reason(text) == 'password authentication failed for user "dify"'
    assert plugin_daemon.pg_reason("ERROR:  permission denied to create database\n") == "permission denied to create database"


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
    assert plugin_daemon.redis_error_variable(text) == variable


def test_web_prefixes_follow_the_console_and_app_urls():
    env = {"CONSOLE_API_URL": "https://dify.example.com/", "APP_API_URL": "https://app.example.com"}
    assert web.web_prefixes(env) == {"NEXT_PUBLIC_API_PREFIX": "https://dify.example.com/console/api",
                                     "NEXT_PUBLIC_PUBLIC_API_PREFIX": "https://app.example.com/api"}
    assert web.web_prefixes({}) == {"NEXT_PUBLIC_API_PREFIX": "/console/api", "NEXT_PUBLIC_PUBLIC_API_PREFIX": "/api"}


def test_echoed_headers_hide_credentials():
    echoed = server.echo_headers({"Host": "d.example", "Authorization": "Bearer x", "X-Api-Key": "k",
                                  "X-Forwarded-Proto": "https"})
    assert echoed == {"Host": "d.example", "Authorization": "<redacted>", "X-Api-Key": "<redacted>",
                      "X-Forwarded-Proto": "https"}


# -- the HTTP parts that need no backend (served on 127.0.0.1) ----------------------------------
@pytest.fixture
def serve(monkeypatch):
    servers = []
    for module in (server, plugin_daemon):  # request lines may outlive the capture
        monkeypatch.setattr(module, "log", lambda *args: None)

    def start(app, errors=None):
        if errors is not None:
            app.checks.evaluate = lambda: list(errors)
        handler = type("TestHandler", (server.Handler,), {"app": app})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return httpd.server_address[1]

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class FakeDifyApi(server.App):
    """What the daemon's check relies on in Dify's api: /health, and X-Version on every answer."""

    def common_headers(self):
        return [("X-Version", self.version), ("X-Env", "PRODUCTION")]

    def handle(self, request):
        if request.path == "/health":
            return server.json_response({"pid": 1, "status": "ok", "version": self.version})
        return server.json_response({"code": "not_found", "status": 404}, 404)


def test_every_answer_says_it_is_a_double_and_which_services_are_real(serve):
    port = serve(sandbox.SandboxApp("sandbox", "1.13.0", {}))
    for path in ("/health", "/nowhere"):
        dummy, headers, dummy = request(port, "GET", path)
        assert headers["server"].startswith("dify-contract-double/1.13.0 (sandbox)")
        assert headers["x-dify-double"] == "sandbox"
        note = headers["x-dify-double-note"]
        assert note.startswith("a test double, not Dify") and "api, worker, beat and migrations run Dify's real image" in note


def test_unknown_path_echoes_where_it_landed(serve):
    port = serve(plugin_daemon.DaemonApp("plugin_daemon", "1.13.0", {"SERVER_KEY": "sk"}), errors=[])
    status, dummy, body = request(port, "GET", "/nowhere?x=1", headers={"X-Forwarded-Proto": "https",
                                                                        "Cookie": "a=b"})
    data = json.loads(body)
    assert status == 404 and data["code"] == "not_found" and data["served_by"] == "plugin_daemon"
    assert "Dify contract double" in data["message"]
    assert data["path"] == "/nowhere" and data["method"] == "GET" and data["query"] == {"x": "1"}
    assert data["headers"]["X-Forwarded-Proto"] == "https" and data["headers"]["Cookie"] == "<redacted>"


def test_web_page_is_titled_as_a_double_and_carries_the_prefixes(serve):
    env = {"CONSOLE_API_URL": "https://dify.example.com", "APP_API_URL": "https://dify.example.com"}
    port = serve(web.WebApp("web", "1.13.0", env))
    status, headers, body = request(port, "GET", "/explore/apps")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "<title>Dify contract double (web)</title>" in page and "It is not Dify." in page
    assert "api, worker, beat and migrations run Dify's real image, built from upstream source" in page
    assert 'href="https://dify.example.com/console/api/setup"' in page
    assert 'data-public-api-prefix="https://dify.example.com/api"' in page
    assert headers["x-dify-double"] == "web"


def test_sandbox_health_and_key(serve):
    port = serve(sandbox.SandboxApp("sandbox", "1.13.0", {"API_KEY": "sk"}))
    status, dummy, body = request(port, "GET", "/health")
    assert status == 200 and json.loads(body) == "ok"
    assert request(port, "POST", "/v1/sandbox/run", body=b"{}", headers={"X-Api-Key": "wrong"})[0] == 401
    status, dummy, body = request(port, "POST", "/v1/sandbox/run", body=b"{}", headers={"X-Api-Key": "sk"})
    assert status == 200 and "does not execute code" in json.loads(body)["data"]["error"]
    assert request(port, "GET", "/v1/sandbox/dependencies?language=python3", headers={"X-Api-Key": "sk"})[0] == 200


def test_plugin_daemon_health_key_and_hook_echo(serve):
    port = serve(plugin_daemon.DaemonApp("plugin_daemon", "1.11.1", {"SERVER_KEY": "sk"}), errors=[])
    status, dummy, body = request(port, "GET", "/health/check")
    data = json.loads(body)
    assert status == 200 and data["status"] == "ok" and data["double"] is True
    assert data["version"] == "0.5.2-local" and data["plays_dify"] == "1.11.1"
    assert data["note"].startswith("a test double, not Dify")
    path = "/plugin/00000000-0000-0000-0000-000000000000/management/list"
    assert request(port, "GET", path, headers={"X-Api-Key": "nope"})[0] == 401
    assert request(port, "GET", path, headers={"X-Api-Key": "sk"})[0] == 200
    status, dummy, body = request(port, "POST", "/e/hook123/run", body=b"{}",
                                  headers={"Dify-Hook-Url": "https://d.example/e/hook123/run"})
    data = json.loads(body)
    assert status == 200 and data["hook_id"] == "hook123" and data["dify_hook_url"] == "https://d.example/e/hook123/run"


def test_plugin_daemon_health_names_the_variables_to_fix(serve):
    errors = [server.error("DB_PASSWORD", 'password authentication failed for user "dify"')]
    port = serve(plugin_daemon.DaemonApp("plugin_daemon", "1.13.0", {"SERVER_KEY": "sk"}), errors=errors)
    status, dummy, body = request(port, "GET", "/health/check")
    data = json.loads(body)
    assert status == 503 and data["status"] == "error" and data["version"] == "0.5.3-local"
    assert data["errors"] == errors


def test_the_daemon_finds_dify_s_api_at_its_inner_api_url(serve):
    api = serve(FakeDifyApi("api", "1.13.0", {}))
    env = {"DIFY_INNER_API_URL": "http://127.0.0.1:%d/" % api, "DIFY_INNER_API_KEY": "inner"}
    assert plugin_daemon.check_inner_api(env) == []


def test_the_daemon_reports_an_inner_api_url_that_is_not_dify_s_api(serve):
    other = serve(sandbox.SandboxApp("sandbox", "1.13.0", {}))
    problems = plugin_daemon.check_inner_api({"DIFY_INNER_API_URL": "http://127.0.0.1:%d" % other,
                                              "DIFY_INNER_API_KEY": "inner"})
    assert [p["variable"] for p in problems] == ["DIFY_INNER_API_URL"]
    assert "does not look like Dify's api" in problems[0]["message"] and "X-Version" in problems[0]["message"]


def test_the_daemon_reports_an_unreachable_api_and_empty_settings(serve):
    api = serve(FakeDifyApi("api", "1.13.0", {}))
    problems = plugin_daemon.check_inner_api({"DIFY_INNER_API_URL": "http://127.0.0.1:%d" % api})
    assert [p["variable"] for p in problems] == ["DIFY_INNER_API_KEY"]
    assert [p["variable"] for p in plugin_daemon.check_inner_api({"DIFY_INNER_API_KEY": "k"})] == ["DIFY_INNER_API_URL"]
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    problems = plugin_daemon.check_inner_api({"DIFY_INNER_API_URL": "http://127.0.0.1:%d" % port, "DIFY_INNER_API_KEY": "k"})
    assert [p["variable"] for p in problems] == ["DIFY_INNER_API_URL"] and "no answer" in problems[0]["message"]


def test_the_daemon_s_local_storage_must_be_writable(tmp_path):
    root = tmp_path / "storage"
    assert plugin_daemon.check_daemon_storage({"PLUGIN_STORAGE_LOCAL_ROOT": str(root)}, {}) == []
    assert root.is_dir() and not list(root.iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("")
    problems = plugin_daemon.check_daemon_storage({"PLUGIN_STORAGE_LOCAL_ROOT": str(blocker / "sub")}, {})
    assert [p["variable"] for p in problems] == ["PLUGIN_STORAGE_LOCAL_ROOT"]
    assert plugin_daemon.check_daemon_storage({"PLUGIN_STORAGE_TYPE": "azure_blob"}, {})[0]["variable"] == "PLUGIN_STORAGE_TYPE"


def test_the_daemon_s_s3_storage_uses_the_daemon_s_names():
    env = {"PLUGIN_STORAGE_TYPE": "aws_s3", "S3_ENDPOINT": "http://s3:8333", "PLUGIN_STORAGE_OSS_BUCKET": "dify",
           "AWS_ACCESS_KEY": "", "AWS_SECRET_KEY": "s", "S3_USE_PATH_STYLE": "true"}
    assert plugin_daemon.check_daemon_storage(env, {}) == [server.error("AWS_ACCESS_KEY", "AWS_ACCESS_KEY is empty")]
    settings = plugin_daemon.S3Settings(dict(env, AWS_REGION=""))
    assert settings.path_style is True and settings.region == "us-east-1" and settings.bucket == "dify"
    assert plugin_daemon.S3Settings(dict(env, S3_USE_PATH_STYLE="false")).path_style is False
