"""Send a task to each of Dify's worker queues, as Dify's code sends its own.

Run inside a one-off container of Dify's api image with the project's environment (so with
the broker URL, i.e. Redis' ACL user for Dify and the command restrictions the redis role
sets), e.g. on a Dify host:

    docker compose --project-directory /opt/dify run --rm -T --no-deps --entrypoint python worker - \
        < tests/dify_celery_probe.py

For every queue the worker is told to consume (CELERY_QUEUES, else the queues given as
arguments) it sends Celery's built-in `celery.accumulate` task with a unique argument and
prints one JSON object {queue: task id}. Dify's Celery app ignores task results
(task_ignore_result), so the evidence that the worker took each task off its queue and ran it
is Celery's own worker log: "Task celery.accumulate[<id>] succeeded in ...: ('<queue>:...',)"
(tests/helpers.py: dify_worker_probe reads it).
"""
from __future__ import annotations

import json
import os
import sys
import uuid

from celery import Celery


def main(argv: list[str]) -> int:
    queues = [q for q in (os.environ.get("CELERY_QUEUES") or ",".join(argv[1:])).split(",") if q]
    app = Celery("selfhost-dify-probe", broker=os.environ["CELERY_BROKER_URL"])
    sent = {}
    for queue in queues:
        result = app.send_task("celery.accumulate", args=(f"{queue}:{uuid.uuid4().hex}",), queue=queue)
        sent[queue] = result.id
    print(json.dumps(sent))
    return 0 if sent else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
