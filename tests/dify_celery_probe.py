"""Does Dify's worker execute what is sent to each of its queues?

Run inside a one-off container of Dify's api image with the project's environment (so with
the broker URL, i.e. Redis' ACL user for Dify and the command restrictions the redis role
sets), e.g. on a Dify host:

    docker compose --project-directory /opt/dify run --rm -T --no-deps --entrypoint python api - \
        < tests/dify_celery_probe.py

For every queue the worker is told to consume (CELERY_QUEUES, else the queues given as
arguments) it sends Celery's built-in `celery.accumulate` task with a unique argument and
waits for the worker's result through the result backend (Dify's: the broker's Redis), then
prints one JSON object {queue: {"ok": bool, "result"|"error": ...}}. The result can only
come from a worker that took the task off that queue and ran it: evidence from Celery itself,
not a heartbeat.
"""
from __future__ import annotations

import json
import os
import sys
import uuid

from celery import Celery

TIMEOUT = float(os.environ.get("PROBE_TIMEOUT", "60"))


def main(argv: list[str]) -> int:
    queues = [q for q in (os.environ.get("CELERY_QUEUES") or ",".join(argv[1:])).split(",") if q]
    broker = os.environ["CELERY_BROKER_URL"]
    app = Celery("selfhost-dify-probe", broker=broker, backend=broker)
    pending = {}
    for queue in queues:
        token = f"{queue}:{uuid.uuid4().hex}"
        pending[queue] = (token, app.send_task("celery.accumulate", args=(token,), queue=queue, ignore_result=False))
    report = {}
    for queue, (token, result) in pending.items():
        try:
            value = result.get(timeout=TIMEOUT)
            report[queue] = {"ok": list(value) == [token], "result": list(value)}
        except Exception as exc:  # pylint: disable=broad-except  # reported per queue, not raised
            report[queue] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(report))
    return 0 if report and all(r["ok"] for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
