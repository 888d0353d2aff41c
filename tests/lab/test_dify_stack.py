"""The single-node lab serves the whole stack over HTTPS through its edge proxy.

A user's view from another host on the lab network (the prober): TLS against the edge's
certificate (self-signed in the lab: Caddy's local CA, read from the node), every route to
the Dify service behind it, the first administrator set up, SSE streamed unbuffered, Dify's
internal endpoints hidden, and `playbooks/health.yml` green for the whole inventory.

Which images run depends on the machine: Dify's own where a registry is reachable, else the
contract double (tests/dify_double: a locally built stand-in that honours Dify's contract,
NOT Dify). `scripts/lab.py up` says which; the tests below say it too, and the few checks that
read the double's self-description are skipped when Dify itself runs.
"""
from __future__ import annotations

import pytest

from tests import edge_kit
from tests.helpers import ansible_playbook, docker, recap

pytestmark = [pytest.mark.lab, pytest.mark.docker]

CADDY_ROOT = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt"
CA_IN_PROBER = "/tmp/lab-edge-ca.pem"


@pytest.fixture(scope="module")
def node(lab):
    return lab.group("edge")[0]


@pytest.fixture(scope="module")
def double(lab, node) -> bool:
    running_double = bool(lab.hostvars[node].get("dify_contract_double"))
    print("images:", "the CONTRACT DOUBLE (not Dify)" if running_double else "Dify's own")
    return running_double


@pytest.fixture(scope="module")
def edge(lab, node, prober):
    root = docker("exec", lab.container(node), "cat", CADDY_ROOT).stdout
    edge_kit.put_file(prober, CA_IN_PROBER, root)
    return edge_kit.Edge(prober, lab.hostvars[node]["selfhost_domain"], lab.address(node), CA_IN_PROBER)


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


def test_web_is_served_with_api_links_on_the_domain(edge, double):
    result = edge_kit.request(edge, "/")
    assert result["status"] == 200, result
    if double:
        assert f"https://{edge.domain}/console/api" in result["body"], result["body"][:400]


def test_routes_reach_the_right_service(edge, double):
    if not double:
        pytest.skip("Dify's own images run: they do not describe where a request landed")
    for path, service in (("/console/api/no-such-route", "api"), ("/v1/no-such-route", "api"),
                          ("/files/no-such-file", "api"), ("/explore/apps", "web")):
        result = edge_kit.request(edge, path)
        served_by = (result["json"] or {}).get("served_by") if isinstance(result["json"], dict) else None
        assert served_by == service or (service == "web" and result["status"] == 200), (path, result)
    hook = edge_kit.request(edge, "/e/lab-hook?x=1")
    assert hook["status"] == 200, hook
    assert hook["json"]["headers"].get("Dify-Hook-Url") == f"https://{edge.domain}/e/lab-hook?x=1", hook["json"]


def test_internal_endpoints_are_hidden(edge):
    for path in ("/threads", "/db-pool-stat"):
        result = edge_kit.request(edge, path)
        assert result["status"] == 404, (path, result["status"])


def test_streaming_answer_is_not_buffered(edge, double):
    if not double:
        pytest.skip("a streaming answer from Dify needs a model provider")
    edge_kit.assert_sse_not_buffered(edge, first_event_within=1.5)
