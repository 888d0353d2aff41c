"""Dify as its users meet it on the three-host lab, through nginx on edge1 (the single-node lab
does the same through Caddy: tests/lab/test_users.py): the administrator signs in with a real
browser against Dify's real web and api on app1; a workflow whose Python Code node runs in
Dify's real sandbox on app1 answers through the edge, streamed and in one piece; the sandbox
cannot reach PostgreSQL on data1; a Code node longer than a minute is not cut by nginx."""
from __future__ import annotations

import pytest

from tests import lab_journeys

pytestmark = [pytest.mark.lab, pytest.mark.docker]


@pytest.fixture(scope="module")
def site(three) -> lab_journeys.Site:
    return lab_journeys.Site(three, edge_host="edge1", app_host="app1", data_host="data1")


@pytest.fixture(scope="module")
def edge(site, outsider):
    return site.edge(outsider)


@pytest.fixture(scope="module")
def key(site) -> str:
    return lab_journeys.workflow_key(site)


def test_the_three_host_lab_runs_nginx(site):
    assert site.proxy == "nginx"


@pytest.fixture(scope="module")
def long_run(edge, key):
    """A Code node of over a minute, streamed through the edge while the tests below go on."""
    return lab_journeys.start_long_run(edge, key)


def test_admin_signs_in_with_a_browser(site, long_run):
    lab_journeys.browser_signs_in(site, "lab-three")


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
