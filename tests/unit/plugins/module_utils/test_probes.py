# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for plugins/module_utils/probes.py: the HTTP, TCP, S3 and Redis probes
against local sockets (an S3 and a Redis stand-in that answer as the servers do), the
PostgreSQL probe with psycopg2's connection replaced, and how a library's error becomes
the detail.

The PostgreSQL, Redis and S3 probes are exercised against the real servers by
tests/integration/test_health_module.py.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.selfhost.dify.plugins.module_utils import probes


# -- client libraries ----------------------------------------------------------------------------
def test_every_client_library_is_importable_here():
    for kind in ("postgresql", "redis", "s3"):
        assert probes.missing_library(kind) is None
    assert probes.missing_library("http") is None and probes.missing_library("tcp") is None


def test_a_missing_library_is_named_with_its_debian_package(monkeypatch):
    monkeypatch.setattr(probes, "REDIS_IMPORT_ERROR", "Traceback ...\nModuleNotFoundError: No module named 'redis'")
    missing = probes.missing_library("redis")
    assert missing[:2] == ("redis", "python3-redis") and "redis" in missing[2]
    assert probes.LIBRARIES == {"postgresql": ("psycopg2", "python3-psycopg2"), "redis": ("redis", "python3-redis"),
                                "s3": ("botocore", "python3-botocore")}


# -- S3 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint, bucket, key, path_style, expected", [
    ("http://10.0.0.5:8333", "dify", "", True, ("http", "10.0.0.5:8333", "10.0.0.5", 8333, "/dify")),
    ("http://10.0.0.5:8333/", "dify", "a b/c+d.txt", True,
     ("http", "10.0.0.5:8333", "10.0.0.5", 8333, "/dify/a%20b/c%2Bd.txt")),
    ("https://s3.example.com", "dify", "", False, ("https", "dify.s3.example.com", "dify.s3.example.com", None, "/")),
    ("https://s3.example.com:443", "dify", "x", False,
     ("https", "dify.s3.example.com", "dify.s3.example.com", 443, "/x")),
    ("http://[fd00::5]:8333", "dify", "", True, ("http", "[fd00::5]:8333", "fd00::5", 8333, "/dify")),
])
def test_s3_url(endpoint, bucket, key, path_style, expected):
    assert probes.s3_url(endpoint, bucket, key, path_style) == expected


def test_s3_url_refuses_other_schemes():
    with pytest.raises(ValueError):
        probes.s3_url("ftp://10.0.0.5", "dify")


class _S3Handler(BaseHTTPRequestHandler):
    """An S3 server's answers, by bucket: HEAD has no body, GET ?location names the error."""
    answers = {
        "/dify": (200, None),
        "/wrong-key": (403, ("SignatureDoesNotMatch", "The request signature we calculated does not match.")),
        "/other": (403, ("AccessDenied", "Access Denied.")),
        "/missing": (404, ("NoSuchBucket", "The specified bucket does not exist")),
        "/moved": (301, ("PermanentRedirect", "The bucket is in another region.")),
    }
    seen = []

    def _answer(self, with_body):
        path = self.path.split("?")[0]
        self.seen.append((self.command, self.path, self.headers.get("Authorization", ""),
                          self.headers.get("x-amz-content-sha256", "")))
        status, error = self.answers.get(path, (404, ("NoSuchBucket", "no")))
        body = b""
        if error:
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code><Message>%s</Message></Error>"
                    % error).encode()
        self.send_response(status)
        if path == "/moved":
            self.send_header("x-amz-bucket-region", "eu-west-1")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body) if with_body else 0))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802 (the standard library's name)
        self._answer(False)

    def do_GET(self):  # noqa: N802
        self._answer(True)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def s3():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _S3Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_probe_s3_healthy_with_a_signed_head(s3):
    del _S3Handler.seen[:]
    result = probes.probe_s3(s3, "dify", "AKID", "secret-never-shown", region="eu-central-1")
    assert result == probes.Result(True, "bucket dify exists and the key can read it")
    method, path, authorization, payload_hash = _S3Handler.seen[-1]
    assert (method, path) == ("HEAD", "/dify")
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKID/") and "/eu-central-1/s3/aws4_request" \
        in authorization
    # The payload is hashed (the SHA-256 of the empty body), not UNSIGNED-PAYLOAD.
    assert payload_hash == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("bucket, detail", [
    ("wrong-key", "403 Forbidden: the key is refused or has no access to bucket wrong-key (SignatureDoesNotMatch: "
                  "The request signature we calculated does not match.)"),
    ("other", "403 Forbidden: the key is refused or has no access to bucket other (AccessDenied: Access Denied.)"),
    ("missing", "404 Not Found: bucket missing does not exist (NoSuchBucket: The specified bucket does not exist)"),
])
def test_probe_s3_refusal_names_the_servers_code(s3, bucket, detail):
    result = probes.probe_s3(s3, bucket, "AKID", "secret-never-shown")
    assert result == probes.Result(False, detail)


def test_probe_s3_connection_refused_is_a_detail():
    result = probes.probe_s3("http://127.0.0.1:%d" % closed_port(), "dify", "AKID", "secret-never-shown")
    assert not result.ok
    assert "connection refused" in result.detail and "secret-never-shown" not in result.detail


def test_probe_s3_bad_endpoint():
    result = probes.probe_s3("ftp://127.0.0.1", "dify", "AKID", "secret-never-shown")
    assert result == probes.Result(False, "cannot reach ftp://127.0.0.1: not an http(s) URL: ftp://127.0.0.1")


# -- PostgreSQL ----------------------------------------------------------------------------------
@pytest.mark.parametrize("message, reason", [
    ('connection to server at "10.0.0.5", port 5432 failed: FATAL:  password authentication failed for user '
     '"dify"\n', 'password authentication failed for user "dify"'),
    ('connection to server at "localhost" (::1), port 5432 failed: Connection refused\n\tIs the server running on '
     'that host and accepting TCP/IP connections?\nconnection to server at "localhost" (127.0.0.1), port 5432 '
     'failed: FATAL:  database "dify" does not exist\n', 'database "dify" does not exist'),
    ('connection to server at "10.0.0.5", port 5432 failed: Connection refused\n\tIs the server running on that '
     'host and accepting TCP/IP connections?\n', "Connection refused"),
    ('could not translate host name "db.invalid" to address: Name or service not known\n',
     'could not translate host name "db.invalid" to address: Name or service not known'),
])
def test_pg_reason_is_the_servers_reason(message, reason):
    assert probes.pg_reason(message) == reason


class _FakePgError(Exception):
    pgcode = None


def test_probe_postgresql_login_refused(monkeypatch):
    def connect(**kwargs):
        assert kwargs["sslmode"] == "disable" and kwargs["dbname"] == "dify" and kwargs["password"] == "pw"
        raise _FakePgError('connection to server at "10.0.0.5", port 5432 failed: FATAL:  password authentication '
                           'failed for user "dify"\n')
    monkeypatch.setattr(probes.psycopg2, "connect", connect)
    monkeypatch.setattr(probes.psycopg2, "Error", _FakePgError)
    assert probes.probe_postgresql("10.0.0.5", 5432, "dify", "pw") == \
        probes.Result(False, 'password authentication failed for user "dify"')


def test_probe_postgresql_healthy(monkeypatch):
    class Cursor:
        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

        def execute(self, query):
            assert query == "SELECT 1"

        def fetchone(self):
            return (1,)

    class Conn:
        closed = False

        def cursor(self):
            return Cursor()

        def get_parameter_status(self, name):
            return "17.6" if name == "server_version" else None

        def close(self):
            Conn.closed = True

    monkeypatch.setattr(probes.psycopg2, "connect", lambda **kwargs: Conn())
    assert probes.probe_postgresql("10.0.0.5", 5432, "dify", "pw", "difydb") == \
        probes.Result(True, "logged in as dify to difydb, PostgreSQL 17.6, SELECT 1 answered")
    assert Conn.closed


# -- Redis ---------------------------------------------------------------------------------------
class _RedisHandler(socketserver.StreamRequestHandler):
    """A Redis server that knows one password ("right") and one ACL user ("dify")."""

    def handle(self):
        authed = False
        while True:
            line = self.rfile.readline()
            if not line:
                return
            args = []
            for dummy in range(int(line[1:])):
                size = int(self.rfile.readline()[1:])
                args.append(self.rfile.read(size + 2)[:-2].decode())
            name = args[0].upper()
            if name == "AUTH":
                if args[1:] in (["right"], ["dify", "right"]):
                    authed = True
                    self.wfile.write(b"+OK\r\n")
                else:
                    self.wfile.write(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
            elif not authed:
                self.wfile.write(b"-NOAUTH Authentication required.\r\n")
            elif name == "PING":
                self.wfile.write(b"+PONG\r\n")
            else:
                self.wfile.write(b"-ERR unknown command\r\n")


@pytest.fixture(scope="module")
def redis_port():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _RedisHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_redis_pong(redis_port):
    assert probes.probe_redis("127.0.0.1", redis_port, "right") == \
        probes.Result(True, "PING answered PONG (logged in as default)")
    assert probes.probe_redis("127.0.0.1", redis_port, "right", "dify") == \
        probes.Result(True, "PING answered PONG (logged in as dify)")


def test_redis_refusals_quote_the_server(redis_port):
    assert probes.probe_redis("127.0.0.1", redis_port, "wrong", "dify") == probes.Result(
        False, "AUTH as dify refused: WRONGPASS invalid username-password pair or user is disabled.")
    assert probes.probe_redis("127.0.0.1", redis_port) == \
        probes.Result(False, "PING refused: NOAUTH Authentication required.")


def test_redis_not_a_redis_server(web):
    port = int(web.rsplit(":", 1)[1])
    result = probes.probe_redis("127.0.0.1", port, timeout=3)
    assert not result.ok


# -- JSON expectations ---------------------------------------------------------------------------
def test_json_path():
    doc = {"status": "ok", "pool": {"workers": [{"name": "a"}, {"name": "b"}]}}
    assert probes.json_path(doc, "status") == "ok"
    assert probes.json_path(doc, "pool.workers.1.name") == "b"
    assert probes.json_path(doc, "pool.workers.-1.name") == "b"
    assert probes.json_path(doc, "pool.workers.5.name") is probes._MISSING
    assert probes.json_path(doc, "version") is probes._MISSING
    assert probes.json_path("ok", ".") == "ok"


@pytest.mark.parametrize("actual, expected, matches", [
    ("ok", "ok", True), (1, 1, True), (1, "1", True), (True, "true", True), (True, True, True),
    (1, True, False), ("1", 1, False), ("error", "ok", False), (None, "null", True), (2.0, 2, True),
])
def test_json_matches(actual, expected, matches):
    assert probes.json_matches(actual, expected) is matches


def test_scrub():
    assert probes.scrub("AUTH hunter22 refused", ["hunter22", None, ""]) == "AUTH ******** refused"
    assert probes.scrub("a b", ["a"]) == "a b"  # too short to be told apart from ordinary text


# -- HTTP and TCP against local sockets ----------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    routes = {
        "/health": (200, {"pid": 7, "status": "ok", "version": "1.13.3"}),
        "/broken": (503, {"status": "error", "errors": [
            {"variable": "DB_PASSWORD", "message": "password authentication failed for user \"dify\""}]}),
        "/sandbox": (200, "ok"),
        "/text": (200, None),
    }

    def do_GET(self):  # noqa: N802 (the standard library's name)
        if self.path == "/headers":
            status, body = 200, {"token": self.headers.get("X-Token")}
        else:
            status, body = self.routes.get(self.path, (404, {"error": "not found"}))
        data = b"plain text, not JSON" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def web():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_healthy(web):
    result = probes.probe_http(web + "/health", json_fields={"status": "ok"})
    assert result.ok and result.detail == "answered 200 OK with the expected JSON"


def test_http_failure_quotes_status_and_body(web):
    result = probes.probe_http(web + "/broken", json_fields={"status": "ok"})
    assert not result.ok
    assert result.detail.startswith("answered 503 Service Unavailable, expected 200: ")
    assert "DB_PASSWORD" in result.detail


def test_http_body_excerpt_is_bounded(web, monkeypatch):
    monkeypatch.setitem(_Handler.routes, "/long", (500, {"trace": "x" * 5000}))
    result = probes.probe_http(web + "/long")
    assert len(result.detail) < 400 and result.detail.endswith("...")


def test_http_expected_status_list(web):
    assert probes.probe_http(web + "/missing", status=[200, 404]).ok
    assert probes.probe_http(web + "/missing", status=404).ok
    assert not probes.probe_http(web + "/missing").ok


def test_http_json_mismatch_names_the_field(web):
    result = probes.probe_http(web + "/health", json_fields={"status": "ok", "version": "1.14.0", "edition": "x"})
    assert not result.ok
    assert 'version is "1.13.3", expected "1.14.0"' in result.detail
    assert "edition is missing" in result.detail


def test_http_json_whole_document(web):
    assert probes.probe_http(web + "/sandbox", json_fields={".": "ok"}).ok


def test_http_not_json(web):
    result = probes.probe_http(web + "/text", json_fields={"status": "ok"})
    assert not result.ok and "not JSON" in result.detail


def test_http_headers_are_sent(web):
    assert probes.probe_http(web + "/headers", json_fields={"token": "t0ken"}, headers={"X-Token": "t0ken"}).ok


def test_http_connection_refused():
    result = probes.probe_http("http://127.0.0.1:%d/health" % closed_port())
    assert result == probes.Result(False, "no answer: connection refused")


def test_http_tls_to_a_plain_port_is_a_detail(web):
    result = probes.probe_http(web.replace("http://", "https://") + "/health")
    assert not result.ok and result.detail.startswith("no answer: TLS")


def test_tcp(web):
    port = int(web.rsplit(":", 1)[1])
    assert probes.probe_tcp("127.0.0.1", port) == probes.Result(True, "port %d accepts connections" % port)
    assert probes.probe_tcp("127.0.0.1", closed_port()) == probes.Result(False, "cannot connect: connection refused")


def test_redis_and_postgresql_refused_connection():
    port = closed_port()
    assert probes.probe_redis("127.0.0.1", port, "pw") == probes.Result(False, "cannot connect: connection refused")
    assert probes.probe_postgresql("127.0.0.1", port, "dify", "pw") == \
        probes.Result(False, "cannot connect: connection refused")
