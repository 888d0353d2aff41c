"""Logs in one place on the single-node lab: Loki (the logging group) and Promtail on the node.

A user's view: a request through the edge is found in Loki by a LogQL query, as the edge's
JSON access-log line with the labels host and service; the Dify project's api container is
found by its compose service label; Loki's port answers on the lab host and is dropped for
another host of the lab network (the prober), which is not a host of the stack. (The lab ships
with Promtail: Alloy cannot run on the machines the lab is tested on.)
"""
from __future__ import annotations

import json
import time
import urllib.parse
import uuid

import pytest

from tests import edge_kit, lab_journeys
from tests.helpers import docker, probe

pytestmark = [pytest.mark.lab, pytest.mark.docker]

LOKI_PORT = 3100
_GET = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())"


@pytest.fixture(scope="module")
def node(lab):
    assert lab.group("logging"), "the lab has no logging group"
    return lab.group("logging")[0]


@pytest.fixture(scope="module")
def edge(lab, prober):
    host = lab.group("edge")[0]
    return lab_journeys.Site(lab, host, host, host).edge(prober)


def query(lab, node, logql: str, since: float = 1800) -> list[tuple[dict, str]]:
    """(labels, line) of every line the LogQL query finds, asked on the logging host itself."""
    now = time.time()
    params = urllib.parse.urlencode({"query": logql, "start": str(int((now - since) * 1e9)),
                                     "end": str(int((now + 60) * 1e9)), "limit": "500"})
    url = f"http://{lab.address(node)}:{LOKI_PORT}/loki/api/v1/query_range?{params}"
    data = json.loads(docker("exec", lab.container(node), "python3", "-c", _GET, url).stdout)
    assert data["status"] == "success", data
    return [(s["stream"], v[1]) for s in data["data"]["result"] for v in s["values"]]


def wait_for(lab, node, logql: str, timeout: float = 90, since: float = 1800) -> list[tuple[dict, str]]:
    deadline = time.time() + timeout
    while True:
        found = query(lab, node, logql, since=since)
        if found or time.time() > deadline:
            return found
        time.sleep(3)


def test_a_request_through_the_edge_is_found_in_loki_with_host_and_service(lab, node, edge):
    mark = uuid.uuid4().hex
    edge_kit.request(edge, f"/console/api/setup?selfhost-log={mark}")
    edge_host = lab.group("edge")[0]
    found = wait_for(lab, node, f'{{host="{edge_host}", service="edge"}} |= "{mark}"')
    assert len(found) == 1, f"the access-log line of the request was not found once: {found}"
    labels, line = found[0]
    assert labels["host"] == edge_host and labels["service"] == "edge" and labels["env"] == "lab"
    entry = json.loads(line)
    assert mark in json.dumps(entry)


def test_the_dify_api_container_is_found_by_its_service_label(lab, node):
    dify_host = lab.group("dify")[0]
    # Dify's api prints at start-up and on errors, not per request: look back over the lab's
    # life (a lab kept between runs may have started days ago), not only the last minutes.
    found = wait_for(lab, node, f'{{host="{dify_host}", service="api"}}', since=7 * 86400)
    assert found, "no line of Dify's api container in Loki"
    labels = found[0][0]
    assert labels["job"] == "docker" and "api" in labels["container"], labels


def test_loki_answers_on_the_lab_host_and_is_dropped_for_others(lab, node, prober):
    container, address = lab.container(node), lab.address(node)
    assert probe(container, address, LOKI_PORT) == "open"
    assert probe(prober, address, LOKI_PORT) == "timeout"
    assert probe(container, "127.0.0.1", 9096) == "open"
    assert probe(prober, address, 9096) == "timeout"
