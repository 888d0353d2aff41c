# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for plugins/module_utils/probes.py: the signing and protocol pieces against
published test vectors, and the HTTP and TCP probes against local sockets.

The PostgreSQL, Redis and S3 probes are exercised against the real servers by
tests/integration/test_health_module.py.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.selfhost.dify.plugins.module_utils import probes

# -- AWS Signature Version 4 ---------------------------------------------------------------------
# The examples of the Amazon S3 API reference, "Signature Calculations for the Authorization
# Header: Transferring Payload in a Single Chunk" (bucket examplebucket, 2013-05-24).
AWS_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_DATE = "20130524T000000Z"
AWS_HOST = "examplebucket.s3.amazonaws.com"


def aws_example(path, query=None, headers=None):
    return probes.sigv4_headers("GET", AWS_HOST, path, query, headers or {}, probes.EMPTY_SHA256,
                                AWS_ACCESS_KEY, AWS_SECRET_KEY, "us-east-1", amz_date=AWS_DATE)


def test_sigv4_get_object_example():
    headers = aws_example("/test.txt", headers={"Range": "bytes=0-9"})
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert headers["x-amz-content-sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert headers["host"] == AWS_HOST and headers["x-amz-date"] == AWS_DATE


def test_sigv4_get_bucket_lifecycle_example():
    headers = aws_example("/", query={"lifecycle": ""})
    assert headers["authorization"].endswith(
        "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")


def test_sigv4_list_objects_example():
    headers = aws_example("/", query={"prefix": "J", "max-keys": "2"})
    assert headers["authorization"].endswith(
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")


def test_sigv4_payload_hash_is_signed():
    """The body's SHA-256 goes into x-amz-content-sha256 and into the signature."""
    empty = aws_example("/test.txt")
    body = probes.sigv4_headers("GET", AWS_HOST, "/test.txt", None, {}, "ab" * 32, AWS_ACCESS_KEY,
                                AWS_SECRET_KEY, amz_date=AWS_DATE)
    assert body["x-amz-content-sha256"] == "ab" * 32
    assert body["authorization"] != empty["authorization"]


def test_canonical_query_encodes_and_sorts():
    assert probes.canonical_query({"prefix": "a b/c", "list-type": 2, "delimiter": None}) == \
        "delimiter=&list-type=2&prefix=a%20b%2Fc"
    assert probes.canonical_query(None) == ""


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


def test_s3_error_reads_code_and_message():
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidAccessKeyId</Code>'
            b"<Message>The access key ID you provided does not exist.</Message></Error>")
    assert probes.s3_error(body) == ("InvalidAccessKeyId", "The access key ID you provided does not exist.")
    assert probes.s3_error(b"") == (None, None)


def test_probe_s3_connection_refused_is_a_detail():
    result = probes.probe_s3("http://127.0.0.1:%d" % closed_port(), "dify", "AKID", "secret-never-shown")
    assert not result.ok
    assert "connection refused" in result.detail and "secret-never-shown" not in result.detail


# -- SCRAM-SHA-256 -------------------------------------------------------------------------------
# RFC 7677, section 3: user "user", password "pencil".
RFC7677_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC7677_SERVER_FIRST = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC7677_CLIENT_FINAL = ("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC7677_SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_scram_rfc7677_vector():
    scram = probes.ScramSha256("pencil", "user", RFC7677_NONCE)
    assert scram.first() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert scram.final(RFC7677_SERVER_FIRST) == RFC7677_CLIENT_FINAL
    scram.verify(RFC7677_SERVER_FINAL)  # no exception: the server knows the password


def test_scram_rejects_a_forged_server_signature():
    scram = probes.ScramSha256("pencil", "user", RFC7677_NONCE)
    scram.final(RFC7677_SERVER_FIRST)
    with pytest.raises(probes.ScramError, match="signature is wrong"):
        scram.verify("v=" + "A" * 43 + "=")


def test_scram_rejects_a_nonce_that_is_not_ours():
    scram = probes.ScramSha256("pencil", "user", "another-nonce")
    with pytest.raises(probes.ScramError, match="nonce"):
        scram.final(RFC7677_SERVER_FIRST)


def test_scram_server_error_is_quoted():
    scram = probes.ScramSha256("pencil")
    with pytest.raises(probes.ScramError, match="invalid-proof"):
        scram.verify("e=invalid-proof")


def test_scram_postgresql_form_has_an_empty_user_name_and_a_fresh_nonce():
    first, second = probes.ScramSha256("pw").first(), probes.ScramSha256("pw").first()
    assert first.startswith("n,,n=,r=") and first != second


# -- PostgreSQL messages -------------------------------------------------------------------------
def test_pg_error_fields():
    payload = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "dify"\0Fauth.c\0\0'
    fields = probes.pg_fields(payload)
    assert fields["C"] == "28P01"
    assert fields["M"] == 'password authentication failed for user "dify"'


def test_startup_message_layout():
    message = probes.startup_message("dify", "difydb")
    assert int.from_bytes(message[:4], "big") == len(message)
    assert int.from_bytes(message[4:8], "big") == 196608
    assert b"\0user\0dify\0database\0difydb\0" in b"\0" + message[8:]
    assert message.endswith(b"\0\0")


def test_md5_password_format():
    answer = probes.md5_password("dify", "pw", b"\x01\x02\x03\x04")
    assert answer.startswith("md5") and len(answer) == 35


# -- RESP ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("data, value", [
    (b"+PONG\r\n", "PONG"),
    (b":42\r\n", 42),
    (b"$5\r\nhello\r\n", "hello"),
    (b"$0\r\n\r\n", ""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*3\r\n+OK\r\n:1\r\n*1\r\n$3\r\nabc\r\n", ["OK", 1, ["abc"]]),
])
def test_parse_resp(data, value):
    parsed, end = probes.parse_resp(data)
    assert parsed == value and end == len(data)


def test_parse_resp_error_reply():
    parsed, dummy = probes.parse_resp(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
    assert isinstance(parsed, probes.RespError)
    assert parsed.startswith("WRONGPASS")


@pytest.mark.parametrize("data", [b"+PON", b"$5\r\nhel", b"*2\r\n+OK\r\n", b""])
def test_parse_resp_incomplete(data):
    with pytest.raises(probes.Incomplete):
        probes.parse_resp(data)


def test_parse_resp_not_resp():
    with pytest.raises(ValueError, match="not a RESP reply"):
        probes.parse_resp(b"SSH-2.0-OpenSSH_10.0\r\n")


def test_resp_command():
    assert probes.resp_command("AUTH", "dify", "p w") == b"*3\r\n$4\r\nAUTH\r\n$4\r\ndify\r\n$3\r\np w\r\n"


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
