"""Dify as its users meet it on the single-node lab, through Caddy: the administrator signs in
with a real browser (Debian's Chromium) against Dify's real web and api, and a workflow whose
Python Code node runs in Dify's real sandbox answers through the edge, streamed and in one piece;
the sandbox cannot reach the data services; a long Code node is not cut by the edge; the role's
sandbox settings reach the running sandbox (tests/lab_journeys.py, shared with the three-host
lab, which does the same through nginx)."""
from __future__ import annotations

import pytest

from tests import dify_workflow, lab_journeys
from tests.helpers import ansible_playbook, changed_tasks, docker

pytestmark = [pytest.mark.lab, pytest.mark.docker]


@pytest.fixture(scope="module")
def site(lab) -> lab_journeys.Site:
    node = lab.group("edge")[0]
    return lab_journeys.Site(lab, edge_host=node, app_host=node, data_host=lab.group("postgresql")[0])


@pytest.fixture(scope="module")
def edge(site, prober):
    return site.edge(prober)


@pytest.fixture(scope="module")
def key(site) -> str:
    return lab_journeys.workflow_key(site)


def test_the_single_node_lab_runs_caddy(site):
    assert site.proxy == "caddy"


@pytest.fixture(scope="module")
def long_run(edge, key):
    """A Code node of over a minute, streamed through the edge while the tests below go on."""
    return lab_journeys.start_long_run(edge, key)


def test_admin_signs_in_with_a_browser(site, long_run):
    lab_journeys.browser_signs_in(site, "lab")


def test_workflow_streams_its_code_node_output_in_order(site, edge, key):
    lab_journeys.workflow_streams(site, edge, key)


def test_workflow_answers_in_one_piece(edge, key):
    lab_journeys.workflow_blocks(edge, key)


def test_code_node_cannot_reach_the_data_host(site, edge, key):
    lab_journeys.code_node_is_refused_the_data_host(site, edge, key)


def test_code_node_longer_than_a_minute_is_not_cut_by_the_edge(long_run):
    lab_journeys.long_code_node_streamed_to_the_end(long_run)


def test_bench_sse_prints_its_ratios_against_the_real_stream(site):
    lab_journeys.bench_sse_prints_its_ratios(site)


def started_at(lab, node, container: str) -> str:
    return docker("exec", lab.container(node), "docker", "inspect", "-f", "{{.State.StartedAt}}", container).stdout


def test_sandbox_settings_reach_the_running_sandbox(lab, site, edge, key):
    """The role's sandbox limit, changed for one run, restarts the sandbox with it: a Code node
    longer than the limit is stopped; the inventory's value back, the same node runs to its end."""
    node = site.app_host
    before = started_at(lab, node, "dify-sandbox-1")
    proc = ansible_playbook(["-i", str(lab.inventory), "site.yml", "--tags", "dify", "--limit", node,
                             "-e", "dify_sandbox_worker_timeout=5"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "selfhost.dify.dify : Write the sandbox's configuration" in changed_tasks(proc.stdout)[node], proc.stdout[-4000:]
    assert started_at(lab, node, "dify-sandbox-1") != before, "the sandbox was not restarted"
    stopped = dify_workflow.run(edge, key, "blocking", action="sleep", seconds="10", text="too long")
    assert stopped["status"] == 200 and stopped["json"]["data"]["status"] == "failed", stopped
    proc = ansible_playbook(["-i", str(lab.inventory), "site.yml", "--tags", "dify", "--limit", node])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "selfhost.dify.dify : Write the sandbox's configuration" in changed_tasks(proc.stdout)[node], proc.stdout[-4000:]
    done = dify_workflow.run(edge, key, "blocking", timeout=90, action="sleep", seconds="10", text="in time")
    dify_workflow.assert_blocking(done, "in time")
