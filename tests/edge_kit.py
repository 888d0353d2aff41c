"""Shared test kit for the edge proxies (roles caddy and nginx): what a user of the site sees.

Import from a molecule scenario's testinfra tests (after putting the checkout on sys.path,
as molecule/base/tests/test_base.py does)::

    from tests import edge_kit

Nothing here is mocked: requests go over the Docker network from a *client container* to
the *edge container*, with TLS verified against a CA file inside the client, exactly as
``curl --resolve DOMAIN:443:EDGE_IP --cacert CA https://DOMAIN/...`` would do. The requests
are made by a small stdlib Python client (``CLIENT_SCRIPT``) run inside the client
container with ``docker exec`` (the test images have python3, not curl).

Pieces
------
``tests/edge_upstream.py``
    the stand-in for Dify's api / web / plugin_daemon (a TEST STAND-IN, not Dify): every
    answer is JSON naming the upstream and echoing path, method and headers; SSE on api.
``tests/edge_kit_prepare.yml``
    an Ansible playbook a scenario's ``prepare.yml`` imports (``import_playbook``): it installs
    the stand-ins as systemd units on the edge hosts (``edge-upstream-<name>-<addr>.service``)
    and a real ACME CA (Debian's ``pebble``) on the Pebble host, and copies Pebble's listener
    CA to the controller for ``selfhost_edge_acme_ca_root``. Its variables are documented in
    the file.
This module
    the checks the verify tests of both scenarios call.

API (stable: both edge scenarios use it)
----------------------------------------
``UPSTREAM_PORTS``                   {"api": 5001, "web": 3000, "plugin_daemon": 5002}
``ROUTES``                           [(path, expected upstream)] the route table test uses
``BLOCKED_PATHS``                    api-internal paths that must not be reachable
``pebble_listener_ca()``             controller path of Pebble's listener CA (prepare put it there)
``pebble_root(pebble)``              PEM of Pebble's current root (``/roots/0``), read in the Pebble container
``Edge(client, domain, address, ca_file)``
                                     how to reach the edge from a client container; ``ca_file`` is a
                                     path inside the client (``put_file`` writes it)
``put_file(container, path, text)``  write a file into a container
``request(edge, path, ...)``         one request (or ``requests(edge, [specs])`` several in one exec),
                                     returns a dict: status, headers, body, json, t_headers,
                                     t_first_event, t_end, events, cert, error
``client_container(name, network)``  context manager: a throwaway client (plain container) on the
                                     scenario's network, removed afterwards
``assert_https_redirect(edge)``
``assert_certificate_issued_by(edge, root_pem)``
``assert_routes(edge)``              every prefix to its upstream; /e/ with Dify-Hook-Url; Host and
                                     X-Forwarded-* passed; blocked paths; unknown paths to web
``assert_security_headers(edge, hsts_max_age)``
``assert_compression(edge)``         gzip for JSON/HTML, never for text/event-stream
``assert_sse_not_buffered(edge)``    first event well before the end of a 3 s stream
``assert_body_limit(edge, limit_bytes)``
``assert_rate_limited(edge, other, allowed, attempts)``
``assert_json_access_log(edge, edge_container, log_path)``

What the checks expect from a proxy (the contract both roles implement)
-----------------------------------------------------------------------
- Routes: ``/console/api``, ``/api``, ``/v1``, ``/files``, ``/mcp``, ``/triggers`` (the prefix itself
  and anything under ``prefix/``) → api; ``/e/`` → plugin_daemon with
  ``Dify-Hook-Url: <scheme>://<host><request_uri>``; everything else (``/``, ``/explore``,
  ``/apiary``, ``/v1beta``) → web. Upstreams receive ``Host`` = the site's domain,
  ``X-Forwarded-Proto`` = https and ``X-Forwarded-For`` containing the client's address.
- ``/threads``, ``/db-pool-stat`` and ``/health`` (api-internal) are answered by the proxy with
  403 or 404 and never reach api.
- HTTP → HTTPS: a permanent redirect (301 or 308) to the same path and query on https.
- Headers on every HTTPS answer: ``Strict-Transport-Security: max-age=<N>`` (other directives
  allowed), ``X-Content-Type-Options: nosniff``, a ``Referrer-Policy``; no ``Server`` version.
- Compression: a client accepting gzip gets a large JSON answer gzip-encoded, and a
  text/event-stream never encoded.
- Streaming: the first SSE event arrives within 1 s of the request on a 6-event, 3-s stream.
- Body limit: a body just under the limit reaches the upstream whole; one above gets 413.
- Rate limit on ``POST /console/api/login``: the first ``allowed`` requests of a client reach api;
  within ``attempts`` requests (and a few seconds) that client is refused — 429 (nginx
  ``limit_req``) or its connections refused/dropped (Caddy: fail2ban bans the address);
  another client is not affected.
- JSON access log: one JSON object per line; the line of a request holds its path, its
  status and the client's address as values (any key names and nesting).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests import helpers

UPSTREAM_PORTS = {"api": 5001, "web": 3000, "plugin_daemon": 5002}

# (path with query, upstream expected to answer it). Covers each prefix itself and below it,
# and near misses that must fall through to web.
ROUTES = [
    ("/console/api", "api"),
    ("/console/api/setup", "api"),
    ("/console/api/apps?page=1&limit=30", "api"),
    ("/api", "api"),
    ("/api/parameters", "api"),
    ("/v1", "api"),
    ("/v1/chat-messages", "api"),
    ("/files", "api"),
    ("/files/0b6f/file-preview?timestamp=1&nonce=x&sign=y", "api"),
    ("/mcp", "api"),
    ("/mcp/server/abc/mcp", "api"),
    ("/triggers", "api"),
    ("/triggers/webhook/abc", "api"),
    ("/e/0a1b2c3d/hook?x=1", "plugin_daemon"),
    ("/", "web"),
    ("/apps", "web"),
    ("/signin", "web"),
    ("/explore/apps", "web"),
    ("/console", "web"),
    ("/apiary", "web"),
    ("/v1beta/models", "web"),
    ("/filesystem", "web"),
    ("/e", "web"),
    ("/chatbot/abc", "web"),
    ("/_next/static/chunks/main.js", "web"),
]

BLOCKED_PATHS = ["/threads", "/db-pool-stat", "/health"]

SSE_PATH = "/v1/chat-messages"
SSE_BODY = json.dumps({"inputs": {}, "query": "hello", "response_mode": "streaming", "user": "edge-kit"})

LOGIN_PATH = "/console/api/login"

# The client run inside the client container: stdlib only. argv[1]: JSON list of request
# specs; prints a JSON list of results. It connects to `address` but speaks to `domain`
# (SNI and Host), like curl --resolve.
CLIENT_SCRIPT = r'''
import http.client, json, socket, ssl, sys, time

def one(spec):
    scheme = spec.get("scheme", "https")
    port = spec.get("port") or (443 if scheme == "https" else 80)
    domain, address = spec["domain"], spec["address"]
    timeout = spec.get("timeout", 10)
    result = {"status": None, "headers": [], "body": "", "json": None, "error": None,
              "t_headers": None, "t_first_event": None, "t_end": None, "events": 0, "cert": None}
    started = time.monotonic()
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except socket.timeout:
        result["error"] = "timeout"
        return result
    except ConnectionRefusedError:
        result["error"] = "refused"
        return result
    except OSError as exc:
        result["error"] = "connect: %s" % exc
        return result
    try:
        if scheme == "https":
            ctx = ssl.create_default_context(cafile=spec.get("ca_file"))
            if spec.get("insecure"):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=domain)
            if not spec.get("insecure"):
                cert = sock.getpeercert()
                flat = lambda rdns: {k: v for rdn in rdns for (k, v) in rdn}
                result["cert"] = {"subject": flat(cert["subject"]), "issuer": flat(cert["issuer"]),
                                  "san": [v for (k, v) in cert.get("subjectAltName", ()) if k == "DNS"],
                                  "not_after": cert.get("notAfter")}
            conn = http.client.HTTPSConnection(domain, port, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(domain, port, timeout=timeout)
        conn.sock = sock
        headers = dict(spec.get("headers") or {})
        body = spec.get("body")
        size = spec.get("body_size")
        if size is not None:
            headers["Content-Length"] = str(size)
            block = b"x" * 65536
            def gen(n=size):
                while n > 0:
                    yield block[:min(n, 65536)]
                    n -= min(n, 65536)
            body = gen()
        elif body is not None:
            body = body.encode()
        try:
            conn.request(spec.get("method", "GET"), spec["path"], body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (413) and closed: read its answer below
        resp = conn.getresponse()
        result["t_headers"] = time.monotonic() - started
        result["status"] = resp.status
        result["headers"] = resp.getheaders()
        if spec.get("read") == "events":
            chunks = []
            while True:
                line = resp.readline()
                if not line:
                    break
                chunks.append(line)
                if line.startswith(b"data:"):
                    result["events"] += 1
                    if result["t_first_event"] is None:
                        result["t_first_event"] = time.monotonic() - started
            data = b"".join(chunks)
        else:
            data = resp.read()
        result["t_end"] = time.monotonic() - started
        result["body"] = data[:65536].decode("utf-8", "replace")
        try:
            result["json"] = json.loads(data)
        except ValueError:
            pass
        conn.close()
    except socket.timeout:
        result["error"] = "timeout"
    except ssl.SSLError as exc:
        result["error"] = "tls: %s" % exc
    except ConnectionResetError:
        result["error"] = "reset"
    except Exception as exc:  # noqa: BLE001  reported to the test, which decides
        result["error"] = "%s: %s" % (type(exc).__name__, exc)
    return result

print(json.dumps([one(s) for s in json.loads(sys.argv[1])]))
'''


@dataclass(frozen=True)
class Edge:
    """How a client container reaches the edge: TLS name `domain` at IP `address`,
    verified against `ca_file` (a path inside `client`)."""

    client: str
    domain: str
    address: str
    ca_file: str

    @property
    def url(self) -> str:
        return f"https://{self.domain}"

    def using(self, client: str) -> "Edge":
        """The same edge seen from another client container (with the CA file at the same path)."""
        return Edge(client, self.domain, self.address, self.ca_file)


# -- plumbing ---------------------------------------------------------------------------------

def put_file(container: str, path: str, text: str) -> None:
    """Write `text` to `path` inside `container` (directories created)."""
    helpers.run(["docker", "exec", "-i", container, "sh", "-c",
                 f"mkdir -p \"$(dirname '{path}')\" && cat > '{path}'"], input=text)


def requests(edge: Edge, specs: list[dict], timeout: int = 120) -> list[dict]:
    """Several requests from `edge.client`, one after the other, in one `docker exec`.
    Each spec: path, and optionally method, headers, body (str), body_size (int, sends that
    many bytes), scheme (https|http), read ("events" for SSE timing), insecure, timeout."""
    full = [{"domain": edge.domain, "address": edge.address, "ca_file": edge.ca_file, **s} for s in specs]
    proc = helpers.run(["docker", "exec", "-i", edge.client, "python3", "-", json.dumps(full)],
                       input=CLIENT_SCRIPT, timeout=timeout)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for result in results:
        result["headers_lower"] = {k.lower(): v for k, v in result["headers"]}
    return results


def request(edge: Edge, path: str, **spec) -> dict:
    """One request; see requests()."""
    return requests(edge, [{"path": path, **spec}])[0]


def header(result: dict, name: str):
    return result["headers_lower"].get(name.lower())


@contextlib.contextmanager
def client_container(name: str, network: str, image: str = "selfhost-dify/debian:13"):
    """A throwaway client on `network` (a plain container that only sleeps), removed on exit.
    Yields its name."""
    helpers.start_plain_container(name, image=image, network=network)
    try:
        yield name
    finally:
        helpers.docker("rm", "-f", name, check=False)


def container_address(container: str, network: str) -> str:
    return helpers.container_ip(container, network)


# -- Pebble -----------------------------------------------------------------------------------

PEBBLE_LISTENER_CA_NAME = "pebble-listener-ca.pem"
PEBBLE_LISTENER_CA_ON_HOST = "/etc/pebble/listener-ca.pem"


def pebble_listener_ca() -> Path:
    """Controller path of Pebble's listener CA, as tests/edge_kit_prepare.yml left it in the
    scenario's ephemeral directory (selfhost_edge_acme_ca_root points at it)."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / PEBBLE_LISTENER_CA_NAME


_FETCH = r'''
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
print(urllib.request.urlopen(sys.argv[1], context=ctx, timeout=10).read().decode(), end="")
'''


def pebble_root(pebble: str) -> str:
    """PEM of the root Pebble signs with now (it makes a new one at every start), read from
    its management interface inside the Pebble container."""
    return helpers.docker("exec", pebble, "python3", "-c", _FETCH, "https://localhost:15000/roots/0",
                          PEBBLE_LISTENER_CA_ON_HOST).stdout


# -- checks -----------------------------------------------------------------------------------

def _describe(result: dict) -> str:
    return json.dumps({k: result[k] for k in ("status", "error", "headers", "body")}, indent=1)[:3000]


def _upstream_of(result: dict):
    return (result.get("json") or {}).get("upstream") if isinstance(result.get("json"), dict) else None


def assert_https_redirect(edge: Edge, path: str = "/console/api/apps?page=2") -> dict:
    """Plain HTTP gets a permanent redirect to the same path and query on https."""
    result = request(edge, path, scheme="http")
    assert result["error"] is None, _describe(result)
    assert result["status"] in (301, 308), _describe(result)
    assert header(result, "Location") == f"https://{edge.domain}{path}", _describe(result)
    return result


def assert_certificate_issued_by(edge: Edge, root_pem: str, issuer_contains: str = "") -> dict:
    """The edge's certificate for its domain verifies against `root_pem` (written into the
    client), names the domain, and (if given) its issuer's CN contains `issuer_contains`.
    Also proves the chain is not trusted by the client's default CAs (not some other cert)."""
    root_path = f"/tmp/edge-kit-root-{uuid.uuid4().hex[:8]}.pem"
    put_file(edge.client, root_path, root_pem)
    result = request(Edge(edge.client, edge.domain, edge.address, root_path), "/")
    assert result["error"] is None, _describe(result)
    cert = result["cert"]
    assert edge.domain in cert["san"], cert
    if issuer_contains:
        assert issuer_contains in cert["issuer"].get("commonName", ""), cert
    untrusted = request(Edge(edge.client, edge.domain, edge.address, "/etc/ssl/certs/ca-certificates.crt"), "/")
    assert untrusted["error"] and untrusted["error"].startswith("tls:"), _describe(untrusted)
    return cert


def assert_routes(edge: Edge, routes=None, blocked=None) -> list[dict]:
    """Each path reaches its upstream with the right headers; blocked paths are refused by
    the proxy (403/404) and never reach api."""
    routes = list(routes or ROUTES)
    blocked = list(blocked or BLOCKED_PATHS)
    results = requests(edge, [{"path": p, "headers": {"X-Edge-Kit": "1"}} for p, _upstream in routes]
                       + [{"path": p} for p in blocked])
    problems = []
    for (path, expected), result in zip(routes, results):
        got = _upstream_of(result)
        if result["status"] != 200 or got != expected:
            problems.append(f"{path}: expected {expected}, got status {result['status']} from {got} ({result['error']})")
            continue
        seen = result["json"]
        sent_headers = {k.lower(): v for k, v in seen["headers"].items()}
        if seen["path"] != path:
            problems.append(f"{path}: upstream saw path {seen['path']!r}")
        if sent_headers.get("host") != edge.domain:
            problems.append(f"{path}: upstream saw Host {sent_headers.get('host')!r}")
        if sent_headers.get("x-forwarded-proto") != "https":
            problems.append(f"{path}: upstream saw X-Forwarded-Proto {sent_headers.get('x-forwarded-proto')!r}")
        if not sent_headers.get("x-forwarded-for"):
            problems.append(f"{path}: upstream saw no X-Forwarded-For")
        if sent_headers.get("x-edge-kit") != "1":
            problems.append(f"{path}: the client's own header did not reach the upstream")
        hook = sent_headers.get("dify-hook-url")
        if expected == "plugin_daemon" and hook != f"{edge.url}{path}":
            problems.append(f"{path}: Dify-Hook-Url is {hook!r}, expected {edge.url}{path!r}")
        if expected != "plugin_daemon" and hook is not None:
            problems.append(f"{path}: Dify-Hook-Url {hook!r} sent to {expected}")
    for path, result in zip(blocked, results[len(routes):]):
        if result["status"] not in (403, 404) or _upstream_of(result) is not None:
            problems.append(f"{path}: must be refused by the proxy (403/404), got {result['status']} "
                            f"from {_upstream_of(result)} ({result['error']})")
    assert not problems, "\n".join(problems)
    return results


def assert_security_headers(edge: Edge, hsts_max_age: int, paths=("/", "/console/api/setup")) -> None:
    for result, path in zip(requests(edge, [{"path": p} for p in paths]), paths):
        assert result["status"] == 200, _describe(result)
        hsts = header(result, "Strict-Transport-Security") or ""
        assert f"max-age={hsts_max_age}" in [d.strip() for d in hsts.split(";")], (path, hsts)
        assert header(result, "X-Content-Type-Options") == "nosniff", (path, result["headers"])
        assert header(result, "Referrer-Policy"), (path, result["headers"])
        server = header(result, "Server") or ""
        assert not any(ch.isdigit() for ch in server), f"{path}: Server header shows a version: {server!r}"


def assert_compression(edge: Edge) -> None:
    """Large JSON is gzip-encoded for a client that accepts it; a text/event-stream never."""
    plain, sse = requests(edge, [
        {"path": "/apps?pad=4096", "headers": {"Accept-Encoding": "gzip"}},
        {"path": SSE_PATH + "?events=2&interval=0.1", "method": "POST", "body": SSE_BODY,
         "headers": {"Accept-Encoding": "gzip", "Content-Type": "application/json"}, "read": "events"},
    ])
    assert plain["status"] == 200 and header(plain, "Content-Encoding") == "gzip", _describe(plain)
    assert sse["status"] == 200 and (header(sse, "Content-Type") or "").startswith("text/event-stream"), _describe(sse)
    assert header(sse, "Content-Encoding") in (None, "identity"), _describe(sse)
    assert sse["events"] == 2, _describe(sse)


def assert_sse_not_buffered(edge: Edge, first_event_within: float = 1.0) -> dict:
    """A 6-event stream lasting 2.5 s: the first event arrives within `first_event_within` s,
    every event arrives, and the stream really lasted (it was not cut short)."""
    result = request(edge, SSE_PATH, method="POST", body=SSE_BODY, read="events", timeout=30,
                     headers={"Content-Type": "application/json", "Accept-Encoding": "gzip, br"})
    assert result["error"] is None and result["status"] == 200, _describe(result)
    assert (header(result, "Content-Type") or "").startswith("text/event-stream"), _describe(result)
    assert result["events"] == 6, _describe(result)
    assert result["t_end"] >= 2.4, result
    assert result["t_first_event"] < first_event_within, (
        f"first event after {result['t_first_event']:.2f}s of a {result['t_end']:.2f}s stream: the proxy buffers")
    return result


def assert_body_limit(edge: Edge, limit_bytes: int, path: str = "/files/upload") -> None:
    under = limit_bytes - 64 * 1024
    ok, too_big = requests(edge, [
        {"path": path, "method": "POST", "body_size": under, "headers": {"Content-Type": "application/octet-stream"}},
        {"path": path, "method": "POST", "body_size": limit_bytes + 1024 * 1024,
         "headers": {"Content-Type": "application/octet-stream"}},
    ], timeout=300)
    assert ok["status"] == 200 and ok["json"]["body_bytes"] == under, _describe(ok)
    assert too_big["status"] == 413, _describe(too_big)


def _login(edge: Edge) -> dict:
    return {"path": LOGIN_PATH, "method": "POST", "timeout": 5,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"email": "nobody@example.com", "password": "bm9wZQ==", "remember_me": False})}


def _refused(result: dict) -> bool:
    return result["status"] == 429 or (result["error"] is not None and not result["error"].startswith("tls:"))


def assert_rate_limited(edge: Edge, other: Edge, allowed: int, attempts: int, settle: float = 15.0) -> dict:
    """`edge.client` fires `attempts` login POSTs back to back: the first `allowed` reach api;
    before the end (or within `settle` seconds after it) the client is refused: status 429,
    or its connections refused, reset or dropped. Meanwhile `other` (another client
    container) still reaches api. Returns what was seen."""
    results = requests(edge, [_login(edge) for _attempt in range(attempts)], timeout=attempts * 6 + 60)
    first = results[:allowed]
    assert all(r["status"] == 200 and _upstream_of(r) == "api" for r in first), \
        [(_upstream_of(r), r["status"], r["error"]) for r in first]
    refused_at = next((i for i, r in enumerate(results) if _refused(r)), None)
    deadline = time.time() + settle
    while refused_at is None and time.time() < deadline:
        time.sleep(1)
        if _refused(request(edge, LOGIN_PATH, **{k: v for k, v in _login(edge).items() if k != "path"})):
            refused_at = attempts
    assert refused_at is not None, (
        f"{attempts} login POSTs and {settle}s later the client is still answered: "
        f"{[(r['status'], r['error']) for r in results]}")
    assert refused_at >= allowed
    other_result = request(other, LOGIN_PATH, **{k: v for k, v in _login(other).items() if k != "path"})
    assert other_result["status"] == 200 and _upstream_of(other_result) == "api", _describe(other_result)
    return {"refused_at": refused_at, "results": results}


def _values(obj):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield key, value
            yield from _values(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _values(value)


def assert_json_access_log(edge: Edge, edge_container: str, log_path: str, wait: float = 10.0) -> dict:
    """A request with a unique path shows up in the edge's access log as one JSON object per
    line holding that path, status 200 (as a number) and the client's address."""
    marker = f"/edge-kit-log-{uuid.uuid4().hex}"
    result = request(edge, marker)
    assert result["status"] == 200, _describe(result)
    client_ip = helpers.container_ip(edge.client).strip()
    deadline = time.time() + wait
    line = None
    while time.time() < deadline and line is None:
        text = helpers.docker("exec", edge_container, "cat", log_path).stdout
        line = next((candidate for candidate in text.splitlines() if marker in candidate), None)
        if line is None:
            time.sleep(0.5)
    assert line is not None, f"{marker} not in {log_path}"
    entry = json.loads(line)
    values = list(_values(entry))
    assert any(isinstance(v, str) and v.startswith(marker) for _key, v in values), entry
    assert any(k == "status" and v == 200 for k, v in values), entry
    assert any(isinstance(v, str) and v == client_ip for _key, v in values), (client_ip, entry)
    return entry
