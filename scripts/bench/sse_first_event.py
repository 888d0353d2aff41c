"""Time to the first server-sent event through the edge proxy vs straight from the upstream.

A proxy that buffers responses delivers the first event only when the whole stream is over,
so its first-event time equals the stream's duration; one that streams adds only its own
latency. This script measures both paths several times and prints the medians, the ratio
proxy/direct of the first-event times, and the proxy's first-event time as a fraction of
the stream's duration (about 0 when streaming, about 1 when buffering). Standard library only.

The upstream must answer POST <path> with a text/event-stream, like Dify's
/v1/chat-messages in streaming mode or the test stand-in tests/edge_upstream.py (which
takes ?events=N&interval=S).

Against the molecule scenario edge-caddy (the stand-in api listens on 127.0.0.1:5001 inside
the edge container, Caddy on 443):

    molecule converge -s edge-caddy
    docker cp scripts/bench/sse_first_event.py edge-caddy-debian13:/root/
    docker exec edge-caddy-debian13 python3 /root/sse_first_event.py \\
        --proxy https://dify.edge-caddy.test/v1/chat-messages --resolve 127.0.0.1 --insecure \\
        --direct http://127.0.0.1:5001/v1/chat-messages --runs 5

(--insecure because the timing, not the certificate, is measured here; give --cafile with
Pebble's root to verify it too.) Against a real Dify, use an app's API key with --header
"Authorization: Bearer app-..." and the api port the dify role publishes as --direct, and the
request --body of the endpoint; `make bench-sse` (scripts/bench/sse_workflow.py) does that
on a lab with a workflow whose Code node runs in Dify's sandbox.
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import statistics
import sys
import time
from urllib.parse import urlsplit


def measure(url: str, resolve: str | None, cafile: str | None, insecure: bool, headers: dict, body: bytes,
            timeout: float) -> tuple[float, float, int]:
    """(seconds to the first `data:` line, seconds to the end of the stream, events) of one POST."""
    parts = urlsplit(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    sock = socket.create_connection((resolve or host, port), timeout=timeout)
    if parts.scheme == "https":
        ctx = ssl.create_default_context(cafile=cafile)
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPSConnection(host, port, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = sock
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"{url}: HTTP {resp.status} {resp.read()[:300]!r}")
    first, events = None, 0
    while True:
        line = resp.readline()
        if not line:
            break
        if line.startswith(b"data:"):
            events += 1
            if first is None:
                first = time.monotonic() - started
    end = time.monotonic() - started
    conn.close()
    if first is None:
        raise SystemExit(f"{url}: no event in the answer")
    return first, end, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--proxy", required=True, help="URL through the edge, e.g. https://dify.example.com/v1/chat-messages")
    parser.add_argument("--direct", required=True, help="URL of the upstream itself, e.g. http://127.0.0.1:5001/v1/chat-messages")
    parser.add_argument("--resolve", help="connect to this address for the proxy URL's host (like curl --resolve)")
    parser.add_argument("--cafile", help="CA file to verify the proxy's certificate")
    parser.add_argument("--insecure", action="store_true", help="do not verify the proxy's certificate")
    parser.add_argument("--header", action="append", default=[], help="extra request header 'Name: value' (repeatable)")
    parser.add_argument("--body", help="the JSON request body (a real Dify endpoint's); without it the stand-in's "
                        "chat body, with --events and --interval as query parameters")
    parser.add_argument("--events", type=int, default=6, help="events the stand-in sends (query parameter)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between events (query parameter)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()

    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    body = (args.body or json.dumps({"inputs": {}, "query": "benchmark", "response_mode": "streaming",
                                     "user": "sse-bench"})).encode()
    query = f"events={args.events}&interval={args.interval}"

    def with_query(url):
        return url if args.body else url + ("&" if "?" in url else "?") + query

    results = {"direct": [], "proxy": []}
    for _run in range(args.runs):
        results["direct"].append(measure(with_query(args.direct), None, None, False, headers, body, args.timeout))
        results["proxy"].append(measure(with_query(args.proxy), args.resolve, args.cafile, args.insecure, headers, body,
                                        args.timeout))

    med = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[0][2])
           for name, runs in results.items()}
    for name in ("direct", "proxy"):
        first, end, events = med[name]
        print(f"{name:6}: first event {first * 1000:8.1f} ms, end of stream {end * 1000:8.1f} ms, "
              f"{events} events (median of {args.runs})")
    ratio = med["proxy"][0] / med["direct"][0]
    fraction = med["proxy"][0] / med["proxy"][1]
    print(f"first event proxy/direct: {ratio:.2f}x (+{(med['proxy'][0] - med['direct'][0]) * 1000:.1f} ms)")
    print(f"proxy first event / stream duration: {fraction:.3f} (0 = streamed, 1 = buffered)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
