# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST DOUBLE, NOT DIFY: the shared plumbing of the Dify contract double.

What every part of the double shares: its name and the note each answer carries, the Dify
releases it plays (upstream's docker/docker-compose.yaml of each release names the companion
images' versions), the log line, and a small HTTP/1.1 server on the standard library whose
answers all say they come from a double. It follows no upstream code of its own; the parts
that play Dify's services are web.py, sandbox.py and plugin_daemon.py.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME = "dify-contract-double"
VERSION_FILE = "/etc/dify-double/plays-version"
DEFAULT_PLAYS = "1.13.0"
NOTE = ("a test double, not Dify: Dify's api, worker, beat and migrations run Dify's real image built from "
        "upstream source; this double plays only the plugin daemon, the web and the sandbox")

# The versions of the companion images each played Dify release runs (upstream's
# docker/docker-compose.yaml of that release).
RELEASES = {
    "1.13.0": {"plugin_daemon": "0.5.3-local", "sandbox": "0.2.12"},
    "1.11.1": {"plugin_daemon": "0.5.2-local", "sandbox": "0.2.12"},
}

CHECK_TTL = 5.0  # seconds a wiring verdict is reused (DOUBLE_CHECK_TTL)
SECRET_HEADERS = ("authorization", "cookie", "set-cookie", "x-api-key", "x-inner-api-key", "x-csrf-token",
                  "proxy-authorization")


# -- small pure functions (unit-tested) --------------------------------------------------------
def log(mode, message):
    """One line on stdout, always marked as the double's."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sys.stdout.write("%s [%s %s] %s\n" % (stamp, NAME, mode, message))
    sys.stdout.flush()


def plays_version(environ=None, version_file=VERSION_FILE):
    """The Dify release this image plays: DOUBLE_PLAYS_VERSION, else the file baked in."""
    environ = os.environ if environ is None else environ
    version = (environ.get("DOUBLE_PLAYS_VERSION") or "").strip()
    if not version:
        try:
            with open(version_file, encoding="utf-8") as handle:
                version = handle.read().strip()
        except OSError:
            version = DEFAULT_PLAYS
    return version


def release(version):
    """The RELEASES entry of `version` (unknown versions play the newest known release)."""
    if version in RELEASES:
        return RELEASES[version]
    return RELEASES[sorted(RELEASES, key=lambda v: tuple(int(p) for p in v.split(".")))[-1]]


def truthy(value):
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def echo_headers(headers):
    """Request headers for an echo, with credentials replaced by <redacted>."""
    result = {}
    for name, value in headers.items():
        result[name] = "<redacted>" if name.lower() in SECRET_HEADERS else value
    return result


def error(variable, message, **extra):
    item = {"variable": variable, "message": message}
    item.update(extra)
    return item


def http_get(url, headers=None, timeout=5.0):
    """(status, lower-case headers, body) of a GET. Connection failures raise OSError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("%r is not an http(s) URL" % url)
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    try:
        conn.request("GET", target, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except http.client.HTTPException as exc:
        raise ConnectionError("malformed HTTP answer (%s)" % type(exc).__name__) from None
    finally:
        conn.close()


class CheckCache:
    """A verdict reused for `ttl` seconds; one evaluation at a time. Logs every change."""

    def __init__(self, mode, evaluate, ttl):
        self.mode, self.evaluate, self.ttl = mode, evaluate, ttl
        self.lock = threading.Lock()
        self.at, self.errors, self.logged = 0.0, None, None

    def get(self):
        with self.lock:
            if self.errors is None or time.monotonic() - self.at >= self.ttl:
                self.errors = self.evaluate()
                self.at = time.monotonic()
                summary = json.dumps(self.errors, sort_keys=True)
                if summary != self.logged:
                    self.logged = summary
                    if self.errors:
                        for item in self.errors:
                            log(self.mode, "wiring check failed: %s: %s" % (item["variable"], item["message"]))
                    else:
                        log(self.mode, "wiring checks passed")
            return list(self.errors)


# -- HTTP plumbing ------------------------------------------------------------------------------
class Request:
    def __init__(self, handler, body):
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.path = parts.path or "/"
        self.raw_path = handler.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = handler.headers
        self.body = body
        self.client = handler.client_address[0]

    def echo(self, mode):
        return {"served_by": mode, "path": self.path, "method": self.method,
                "query": {k: v[0] if len(v) == 1 else v for k, v in self.query.items()},
                "headers": echo_headers(dict(self.headers.items()))}


class Response:
    def __init__(self, status=200, body=b"", content_type="application/json", headers=None):
        self.status = status
        self.headers = list(headers or [])
        self.content_type = content_type
        self.body = body.encode("utf-8") if isinstance(body, str) else body


def json_response(data, status=200, headers=None):
    return Response(status, json.dumps(data), headers=headers)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # an idle keep-alive connection (or a stalled client) frees its thread after this
    app = None  # set per server

    def version_string(self):
        return "%s/%s (%s)" % (NAME, self.app.version, self.app.mode)

    def log_message(self, format, *args):  # noqa: A002  (the base class's name)
        pass

    def _dispatch(self):
        started = time.monotonic()
        length = self.headers.get("Content-Length")
        body = b""
        if length and length.isdigit():
            body = self.rfile.read(int(length))
        elif (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            body = self._read_chunked()
        request = Request(self, body)
        try:
            response = self.app.handle(request)
        except Exception as exc:  # pylint: disable=broad-except
            log(self.app.mode, "error on %s %s: %s: %s" % (request.method, request.path, type(exc).__name__, exc))
            response = json_response({"code": "internal_server_error", "status": 500,
                                      "message": "the double failed: %s" % type(exc).__name__}, 500)
        self._send(request, response)
        log(self.app.mode, '%s "%s %s %s" %d %d %.1fms' % (
            request.client, request.method, request.raw_path, self.request_version, response.status,
            len(response.body), (time.monotonic() - started) * 1000))

    def _read_chunked(self):
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def _send(self, request, response):
        self.send_response(response.status)
        for name, value in self.app.common_headers():
            self.send_header(name, value)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if request.method != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class App:
    """One part of Dify. Subclasses route requests in `handle`."""

    def __init__(self, mode, version, environ):
        self.mode, self.version, self.env = mode, version, environ
        ttl = float(environ.get("DOUBLE_CHECK_TTL") or CHECK_TTL)
        self.state = {}
        self.checks = CheckCache(mode, self.wiring, ttl)

    def wiring(self):
        return []

    def common_headers(self):
        return [("X-Dify-Double", self.mode), ("X-Dify-Double-Note", NOTE)]

    def not_found(self, request):
        body = {"code": "not_found", "message": "The requested URL was not found on the server (Dify contract double, %s)."
                % self.mode, "status": 404}
        body.update(request.echo(self.mode))
        return json_response(body, 404)

    def handle(self, request):
        return self.not_found(request)


def serve(app, port, stop):
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((app.env.get("DOUBLE_BIND") or "0.0.0.0", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http-%d" % port, daemon=True)
    thread.start()
    log(app.mode, "listening on port %d (HTTP/1.1), playing Dify %s" % (port, app.version))
    if app.mode == "plugin_daemon":  # the first verdict in the log without waiting for a probe
        threading.Thread(target=app.checks.get, name="first-check", daemon=True).start()
    stop.wait()
    server.shutdown()
