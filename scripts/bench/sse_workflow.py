"""`make bench-sse`: the time to the first server-sent event of a real Dify workflow through a
lab's edge, and straight from Dify's api, and their ratio.

The workflow (tests/dify_workflow.py): Start -> a Python Code node executed by Dify's sandbox
(it sleeps --seconds, so the stream lasts that long) -> End, published as the lab's
administrator; `POST /v1/workflows/run` in streaming mode with the app's API key. The timing
runs on the lab's edge host (scripts/bench/sse_first_event.py, copied there): through the edge
over HTTPS (its own name, verified against the edge's CA), and to the api port the Dify host
publishes. An edge that buffers delivers the first event only at the end of the stream (ratio
first event / stream duration about 1); one that streams adds only its own latency (about 0).

    make bench-sse                      # the lab of `make lab` (Caddy; LAYOUT=three: nginx)
    make bench-sse ARGS="--name test3 --runs 5"
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
from tests import dify_workflow, lab_journeys  # noqa: E402  pylint: disable=wrong-import-position
from tests.lab.conftest import lab_status, load_lab  # noqa: E402  pylint: disable=wrong-import-position


def bench(name: str, runs: int, seconds: float) -> tuple[str, str]:
    """(the lab's edge proxy, the timing script's report) for the lab `name`."""
    status = lab_status(name)
    if not status["running"]:
        raise SystemExit(f"lab {name!r} is not running: bring it up first (make lab)")
    lab = load_lab(name, Path(status["inventory"]))
    edge_host = lab.group("edge")[0]
    site = lab_journeys.Site(lab, edge_host=edge_host, app_host=lab.group("dify")[0],
                             data_host=lab.group("postgresql")[0])
    key = lab_journeys.workflow_key(site)
    body = json.dumps({"inputs": {"text": "benchmark", "action": "sleep", "seconds": str(seconds), "target": ""},
                       "response_mode": "streaming", "user": "sse-bench"})
    container = lab.container(edge_host)
    script = (ROOT / "scripts" / "bench" / "sse_first_event.py").read_text()
    ca = lab_journeys.EDGE_CA_ROOTS[site.proxy]
    path = dify_workflow.RUN_PATH
    proc = subprocess.run(
        ["docker", "exec", "-i", container, "python3", "-", "--proxy", f"https://{site.domain}{path}",
         "--resolve", lab.address(edge_host), "--cafile", ca, "--direct", site.api_url() + path,
         "--header", f"Authorization: Bearer {key}", "--body", body, "--runs", str(runs),
         "--timeout", str(seconds + 60)],
        input=script, capture_output=True, text=True, check=False, timeout=runs * 2 * (seconds + 60) + 60)
    if proc.returncode != 0:
        raise SystemExit(f"lab {name!r}: the benchmark failed:\n{proc.stdout}{proc.stderr}")
    return site.proxy, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--name", action="append", help="lab name (repeatable; default: the lab of make lab)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="how long the Code node runs (the stream's length)")
    args = parser.parse_args()
    for name in args.name or ["lab"]:
        proxy, report = bench(name, args.runs, args.seconds)
        print(f"== lab {name!r}, edge {proxy}: a Dify workflow streamed (its Code node runs {args.seconds:g} s "
              f"in the sandbox); proxy = through {proxy} over HTTPS, direct = Dify's api port")
        print(report.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
