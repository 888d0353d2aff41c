"""The whole stack across three hosts, as `make lab LAYOUT=three` deploys it: edge1 runs the
edge proxy (nginx here; the single-node lab runs Caddy), app1 Dify, data1 PostgreSQL, Redis and SeaweedFS.

In order (pytest runs a module's tests top to bottom): the hosts and their groups; the rerun
changes nothing; a request through the edge reaches the api on app1, which signs the
administrator in and stores an upload (PostgreSQL, Redis and S3 on data1); the data ports
answer from the app host only, and Dify's published ports from the edge only; each tag whose
roles reach across hosts alone changes nothing (tests/lab/test_tags.py runs every tag on the
single-node lab); every host restarted at once comes back healthy without a rerun; and last,
a firewall rule given through the interface opens a data port to the dify group only.
"""
from __future__ import annotations

import json
import time
import urllib.parse
import uuid

import pytest

from tests import edge_kit, lab_journeys
from tests.helpers import (ansible_playbook, applied_roles, assert_tag_alone_changes_nothing, changed_tasks, container_ip,
                           dify_console, docker,
                           lab as lab_script, listening, probe, recap, site_tags)
from tests.lab.conftest import load_lab
from tests.lab_three.conftest import NAME

pytestmark = [pytest.mark.lab, pytest.mark.docker]

EXPECTED_GROUPS = {
    "edge": ["edge1"], "dify": ["app1"],
    "postgresql": ["data1"], "redis": ["data1"], "object_storage": ["data1"], "logging": ["data1"],
}
DATA_PORTS = {"PostgreSQL": 5432, "Redis": 6379, "S3 (SeaweedFS)": 8333}
DIFY_PORTS = {"api": 5001, "web": 3000, "plugin daemon": 5002}
CA_IN_CLIENT = "/tmp/lab-edge-ca.pem"


def edge_ca(three) -> str:
    """The root of the edge's own CA (nginx on this lab: tests/lab_journeys.py)."""
    return lab_journeys.Site(three, "edge1", "app1", "data1").edge_ca()


def site(three, *args):
    proc = ansible_playbook(["-i", three.inventory, "site.yml", *args])
    assert proc.returncode == 0, proc.stdout[-6000:]
    result = recap(proc.stdout)
    assert set(result) == set(three.hosts), result
    return result


@pytest.fixture
def edge(three, outsider):
    """The edge as a client on the lab network sees it, trusting the edge's local CA."""
    edge_kit.put_file(outsider, CA_IN_CLIENT, edge_ca(three))
    return edge_kit.Edge(outsider, three.hostvars["edge1"]["selfhost_domain"], three.address("edge1"), CA_IN_CLIENT)


def on_app(three) -> list[str]:
    return ["ssh", "-F", str(three.inventory / ".ssh" / "config"), "-o", "BatchMode=yes", "app1", "sudo"]


def admin(three) -> tuple[str, str]:
    email, password, _name = lab_journeys.Site(three, "edge1", "app1", "data1").admin()
    return email, password


def test_hosts_are_in_their_groups(three):
    assert three.layout == "three"
    for group, hosts in EXPECTED_GROUPS.items():
        assert three.group(group) == hosts, group
    assert three.hosts == ["app1", "data1", "edge1"]
    for host in three.hosts:
        assert three.address(host) == container_ip(three.container(host), three.network)
    assert "lab_http_port" in three.hostvars["edge1"]
    assert "lab_http_port" not in three.hostvars["data1"]


def test_rerun_changes_nothing(three):
    proc = ansible_playbook(["-i", three.inventory, "site.yml"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    result = recap(proc.stdout)
    assert set(result) == set(three.hosts), result
    assert all(r["changed"] == 0 for r in result.values()), (result, changed_tasks(proc.stdout))


def test_request_through_the_edge_reaches_dify_and_its_data_host(three, edge):
    # Through the edge on edge1 to the api on app1, which reads PostgreSQL on data1.
    result = edge_kit.request(edge, "/console/api/setup")
    assert result["error"] is None and result["status"] == 200, result
    assert result["json"]["step"] == "finished", result["json"]
    assert edge_kit.header(result, "X-Version"), result["headers_lower"]
    # Signing in keeps the session in Redis, an upload lands in S3: both on data1.
    email, password = admin(three)
    api_url = f"http://{three.address('app1')}:{three.hostvars['app1'].get('selfhost_dify_api_port', 5001)}"
    seed = dify_console(on_app(three), api_url, "seed", email=email, password=password, name="three-upload",
                        text="stored on the data host\n")
    assert seed["login_status"] == 200 and seed["upload_status"] == 201, seed
    check = dify_console(on_app(three), api_url, "check", email=email, password=password, file_id=seed["file_id"])
    assert check["preview_status"] == 200 and check["preview"].strip() == "stored on the data host", check
    keys = docker("exec", three.container("data1"), "sh", "-c",
                  "find /var/lib/seaweedfs -type f | wc -l").stdout.strip()
    assert int(keys) > 0, "SeaweedFS on data1 holds no file"


@pytest.mark.parametrize("service", sorted(DATA_PORTS))
def test_data_port_answers_the_app_host_only(three, outsider, service):
    port, data = DATA_PORTS[service], three.address("data1")
    assert probe(three.container("app1"), data, port) == "open", f"{service} does not answer app1"
    assert probe(three.container("edge1"), data, port) == "timeout", f"{service} answers the edge"
    assert probe(outsider, data, port) == "timeout", f"{service} answers a host outside the site"


@pytest.mark.parametrize("service", sorted(DIFY_PORTS))
def test_dify_published_port_answers_the_edge_only(three, outsider, service):
    """Docker publishes api, web and plugin daemon on app1's private address for the edge; the
    base role's forward chain keeps every other host off them (DNAT bypasses input)."""
    port, app = DIFY_PORTS[service], three.address("app1")
    assert probe(three.container("edge1"), app, port) == "open", f"{service} does not answer the edge"
    assert probe(three.container("data1"), app, port) == "timeout", f"{service} answers the data host"
    assert probe(outsider, app, port) == "timeout", f"{service} answers a host outside the site"


def test_journal_lines_of_every_host_arrive_at_loki_on_the_data_host(three, outsider):
    """Each host's shipper sends its journal to Loki on data1 under that host's label; Loki's
    port answers the stack's hosts and is dropped for a host outside the site."""
    marks = {host: uuid.uuid4().hex for host in three.hosts}
    for host, mark in marks.items():
        docker("exec", three.container(host), "logger", "-t", "selfhost-test", mark)
    loki = f"http://{three.address('data1')}:3100/loki/api/v1/query_range"
    get = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())"
    for host, mark in marks.items():
        params = urllib.parse.urlencode({"query": f'{{host="{host}", service="selfhost-test"}} |= "{mark}"',
                                         "start": str(int((time.time() - 900) * 1e9))})
        deadline, found = time.time() + 90, []
        while not found and time.time() < deadline:
            data = json.loads(docker("exec", three.container("app1"), "python3", "-c", get, f"{loki}?{params}").stdout)
            found = [v for s in data["data"]["result"] for v in s["values"] if s["stream"]["host"] == host]
            time.sleep(0 if found else 3)
        assert len(found) == 1, f"the journal line of {host} did not arrive at Loki under its host label"
    for host in ("app1", "edge1"):
        assert probe(three.container(host), three.address("data1"), 3100) == "open"
    assert probe(outsider, three.address("data1"), 3100) == "timeout"


# The tags whose roles read or reach another host: dify probes PostgreSQL, Redis and S3 on data1
# before it starts; the edge proxies to app1; every shipper sends to Loki on data1; the bucket is
# backed up by its holder. Every tag alone runs on the single-node lab (tests/lab/test_tags.py).
CROSS_HOST_TAGS = ["backup", "dify", "edge", "logging"]


def test_cross_host_tags_are_tags_of_site_yml():
    assert set(CROSS_HOST_TAGS) <= set(site_tags()), sorted(site_tags())


@pytest.mark.parametrize("tag", CROSS_HOST_TAGS)
def test_tag_alone_changes_nothing(three, tag):
    assert_tag_alone_changes_nothing(three.inventory, tag, three.hosts, applied_roles(three))


def test_every_host_restarted_comes_back_healthy_without_a_rerun(three, edge):
    """All three hosts restart at once (a clean shutdown and boot, as a reboot does): systemd
    units enabled, Docker's restart policy and the compose project bring the stack back; only
    the lab's inventory is refreshed (the SSH ports Docker publishes change), site.yml is not run."""
    docker("restart", "-t", "60", *[three.container(h) for h in three.hosts], timeout=600)
    proc = lab_script("up", "--name", NAME, "--layout", "three", "--debian", three.debian,
                      "--inventory", three.inventory, "--no-converge", check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    three = load_lab(NAME, three.inventory)
    health = ansible_playbook(["-i", three.inventory, "playbooks/health.yml"])
    assert health.returncode == 0, health.stdout[-6000:]
    assert all(r["failed"] == 0 and r["changed"] == 0 for r in recap(health.stdout).values())
    result = edge_kit.request(edge, "/console/api/setup")
    assert result["status"] == 200 and result["json"]["step"] == "finished", result
    email, password = admin(three)
    api_url = f"http://{three.address('app1')}:{three.hostvars['app1'].get('selfhost_dify_api_port', 5001)}"
    login = dify_console(on_app(three), api_url, "login", email=email, password=password)
    assert login["login_status"] == 200, login


def test_firewall_rule_opens_data_port_to_the_dify_group_only(three):
    """Last: it adds a rule the site does not otherwise have."""
    rules = {"selfhost_firewall_rules_probe": [{"name": "pgprobe", "port": 5433, "sources": ["dify"]}]}
    result = site(three, "--tags", "base", "-e", json.dumps(rules))
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in result.values()), result

    data = three.address("data1")
    with listening(three.container("data1"), 5433):
        assert probe(three.container("app1"), data, 5433) == "open"
        assert probe(three.container("edge1"), data, 5433) == "timeout"
        # SSH stays open to every host of the private network
        assert probe(three.container("edge1"), data, 22) == "open"
