"""The single-node lab serves the whole stack over HTTPS through its edge proxy.

A user's view from another host on the lab network (the prober): TLS against the edge's
certificate (self-signed in the lab: Caddy's local CA, read from the node), every route to
the Dify service behind it, the first administrator set up, SSE streamed unbuffered, Dify's
internal endpoints hidden, and `playbooks/health.yml` green for the whole inventory.

Which images run depends on the machine: Dify's own where a registry is reachable. Where none
is, api, worker, beat and the migration still run REAL DIFY, its api image built from
upstream's source (scripts/build-dify-api.sh), and the contract double (tests/dify_double,
NOT Dify) plays only the plugin daemon, the web and the sandbox. `scripts/lab.py up` says
which; so does the `double_services` fixture below.
"""
from __future__ import annotations

import pytest

from tests import edge_kit, lab_journeys
from tests.helpers import ansible_playbook, dify_console, dify_flask, dify_worker_probe, docker, recap

pytestmark = [pytest.mark.lab, pytest.mark.docker]


@pytest.fixture(scope="module")
def node(lab):
    return lab.group("edge")[0]


@pytest.fixture(scope="module")
def double_services(lab, node) -> list[str]:
    services = list(lab.hostvars[node].get("dify_contract_double_services") or [])
    print("real Dify: api, worker, beat, migration;",
          f"the CONTRACT DOUBLE (not Dify): {', '.join(services)}" if services else "every service Dify's own")
    return services


@pytest.fixture(scope="module")
def on_node(lab, node) -> list[str]:
    """Runs a program on the node as root over SSH, stdin attached (as an operator would)."""
    return ["ssh", "-F", str(lab.inventory / ".ssh" / "config"), "-o", "BatchMode=yes", node, "sudo"]


@pytest.fixture(scope="module")
def api_url(lab, node) -> str:
    # The single-node lab: the edge is on the node, so Dify publishes its api on loopback.
    return "http://127.0.0.1:5001"


@pytest.fixture(scope="module")
def edge(lab, node, prober):
    return lab_journeys.Site(lab, node, node, node).edge(prober)


def test_health_playbook_is_green(lab):
    proc = ansible_playbook(["-i", str(lab.inventory), "playbooks/health.yml"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    for host, counts in recap(proc.stdout).items():
        assert counts["failed"] == 0 and counts["changed"] == 0, (host, counts)


def test_console_api_over_https_says_setup_is_finished(edge):
    result = edge_kit.request(edge, "/console/api/setup")
    assert result["error"] is None and result["status"] == 200, result
    assert result["json"]["step"] == "finished", result["json"]
    assert result["cert"], "no certificate was seen"


def test_http_redirects_to_https(edge):
    edge_kit.assert_https_redirect(edge)


def test_web_is_served_with_api_links_on_the_domain(edge, double_services):
    result = edge_kit.request(edge, "/")
    assert result["status"] in (200, 307), result
    if "web" in double_services:
        assert f"https://{edge.domain}/console/api" in result["body"], result["body"][:400]


def test_routes_reach_the_right_service(edge, double_services):
    """api answers carry Dify's X-Version header (api/extensions/ext_app_metrics.py); the web and
    the plugin daemon (the double where it plays them) say where a request landed."""
    for path in ("/console/api/no-such-route", "/v1/no-such-route", "/files/no-such-file", "/api/no-such-route"):
        result = edge_kit.request(edge, path)
        assert edge_kit.header(result, "X-Version"), (path, result["status"], result["headers_lower"])
    explore = edge_kit.request(edge, "/explore/apps")
    assert not edge_kit.header(explore, "X-Version") and explore["status"] in (200, 307), explore["status"]
    if "plugin_daemon" in double_services:
        hook = edge_kit.request(edge, "/e/lab-hook?x=1")
        assert hook["status"] == 200, hook
        assert hook["json"]["headers"].get("Dify-Hook-Url") == f"https://{edge.domain}/e/lab-hook?x=1", hook["json"]


def test_internal_endpoints_are_hidden(edge):
    for path in ("/threads", "/db-pool-stat"):
        result = edge_kit.request(edge, path)
        assert result["status"] == 404, (path, result["status"])


def test_database_is_at_the_head_of_the_running_release(lab, node, on_node):
    """The one-shot migration brought the empty databases to the image's alembic head (a rerun
    migrates nothing: tests/lab/test_converge.py sees changed=0)."""
    version = lab.hostvars[node].get("dify_version", "")  # the role's default unless the inventory sets it
    heads = dify_flask(on_node, "db", "heads")
    current = dify_flask(on_node, "db", "current")
    revision = next(line.split()[0] for line in heads.splitlines() if line.endswith("(head)"))
    assert f"{revision} (head)" in current, (heads[-500:], current[-500:])
    recorded = docker("exec", lab.container(node), "cat", "/opt/dify/.state/migrated-version").stdout.strip()
    assert recorded and (not version or recorded == version), recorded


def test_admin_signs_in_and_an_upload_lands_in_the_bucket(lab, node, on_node, api_url):
    email = lab.hostvars[node]["dify_admin_email"]
    password = lab_journeys.Site(lab, node, node, node).admin()[1]
    text = "a file the lab's administrator uploaded\n"
    seed = dify_console(on_node, api_url, "seed", email=email.upper(), password=password, name="lab-upload", text=text)
    assert seed["login_status"] == 200 and seed["profile_email"] == email.lower(), seed
    assert seed["upload_status"] == 201, seed
    check = dify_console(on_node, api_url, "check", email=email, password=password, file_id=seed["file_id"])
    assert check["preview_status"] == 200 and check["preview"].strip() == text.strip(), check


def test_worker_executes_what_is_sent_to_each_of_its_queues(on_node):
    report = dify_worker_probe(on_node)
    assert report and all(r["ok"] for r in report.values()), report
    assert "trigger_refresh_publisher" in report, sorted(report)
