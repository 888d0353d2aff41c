"""A TEST STAND-IN for Dify's three HTTP services behind the edge proxy.

This is NOT Dify and NOT the Dify contract double of a later issue: it only lets the edge
proxies (roles caddy and nginx) be tested for what a proxy does — which upstream a path
reaches, which headers arrive, whether streaming is buffered, how large a body gets
through. Standard library only, so it runs on a bare Debian host with python3.

    python3 edge_upstream.py --name api|web|plugin_daemon --port N [--bind ADDR]

Every answer is JSON::

    {"upstream": NAME, "instance": "ADDR:PORT", "path": "/v1/x?y=1", "method": "GET",
     "headers": {"Host": "...", ...}, "body_bytes": 0}

(header names as received; a repeated header's values joined by ", "). Besides that:

- ``/health`` (api) and ``/health/check`` (plugin_daemon) answer 200 ``{"status": "ok"}``
  as Dify's do (contract §4), with ``upstream`` and ``instance``;
- ``/threads`` and ``/db-pool-stat`` on api answer 200, like Dify's unauthenticated
  internal endpoints, so a test can prove the proxy keeps them from the outside;
- on api, a path ending in ``/stream``, or ``POST /v1/chat-messages`` whose JSON body has
  ``"response_mode": "streaming"``, answers ``text/event-stream`` (chunked, no length):
  ``events`` events (default 6) every ``interval`` seconds (default 0.5), taken from the
  query string (``?events=6&interval=0.5``); each event is
  ``data: {"n": i, "upstream": "api", "sent_at": <unix time>}``;
- a request body (Content-Length or chunked) is read and counted, never stored:
  ``body_bytes`` (uploads);
- ``?pad=N`` adds a field ``pad`` of N spaces to the JSON (a body large enough to be worth
  compressing).

HTTP/1.1 with keep-alive, one thread per connection.
"""
from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HEALTH_PATHS = {"api": "/health", "plugin_daemon": "/health/check"}
API_INTERNAL_PATHS = ("/threads", "/db-pool-stat")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "selfhost-edge-upstream-standin"
    name = "?"
    instance = "?"

    # -- request body ---------------------------------------------------------------------
    def _read_body(self) -> bytes:
        """Read the whole request body (counted; kept only when small, for JSON parsing)."""
        kept = bytearray()
        total = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += self._read_exactly(size, kept)
                self.rfile.readline()
        else:
            total = self._read_exactly(int(self.headers.get("Content-Length") or 0), kept)
        self.body_bytes = total
        return bytes(kept)

    def _read_exactly(self, remaining: int, kept: bytearray) -> int:
        """Read `remaining` bytes of body, keep up to 64 KiB of them in `kept`; return how
        many were read."""
        total = 0
        while remaining:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
            total += len(chunk)
            if len(kept) < 65536:
                kept += chunk[: 65536 - len(kept)]
        return total

    # -- answers --------------------------------------------------------------------------
    def _headers_dict(self):
        result = {}
        for key, value in self.headers.items():
            result[key] = f"{result[key]}, {value}" if key in result else value
        return result

    def _json(self, status: int, extra: dict | None = None) -> None:
        payload = {
            "upstream": self.name,
            "instance": self.instance,
            "path": self.path,
            "method": self.command,
            "headers": self._headers_dict(),
            "body_bytes": getattr(self, "body_bytes", 0),
        }
        payload.update(extra or {})
        pad = parse_qs(urlsplit(self.path).query).get("pad")
        if pad:
            payload["pad"] = " " * min(int(pad[0]), 1 << 20)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _stream(self, query) -> None:
        events = int(query.get("events", ["6"])[0])
        interval = float(query.get("interval", ["0.5"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for n in range(events):
            if n:
                time.sleep(interval)
            event = "data: %s\n\n" % json.dumps({"n": n, "upstream": self.name, "sent_at": time.time()})
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _handle(self) -> None:
        body = self._read_body()
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path
        if self.name == "api":
            streaming = path.endswith("/stream")
            if not streaming and self.command == "POST" and path == "/v1/chat-messages":
                try:
                    streaming = json.loads(body or b"{}").get("response_mode") == "streaming"
                except (ValueError, AttributeError):
                    streaming = False
            if streaming:
                self._stream(query)
                return
        if HEALTH_PATHS.get(self.name) == path:
            self._json(200, {"status": "ok"})
            return
        self._json(200)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format, *args):  # noqa: A002  pylint: disable=redefined-builtin
        pass  # the journal would fill with test traffic; the proxy logs requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--name", required=True, choices=["api", "web", "plugin_daemon"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args()
    Handler.name = args.name
    Handler.instance = f"{args.bind}:{args.port}"
    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
