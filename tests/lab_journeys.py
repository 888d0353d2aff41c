"""What a user of a lab does with Dify, the same on both labs (each through its own edge: Caddy on
the single-node lab, nginx on the three-host lab): signs in with a browser, and runs a workflow
whose Code node executes in Dify's real sandbox, its answer streamed through the edge. The test
files tests/lab/test_users.py and tests/lab_three/test_users.py call these with their lab.
"""
from __future__ import annotations

import concurrent.futures
import re
from dataclasses import dataclass

from tests import browser_journey, dify_workflow, edge_kit
from tests.helpers import docker, lab as lab_script, run

from selfhost_lab import browser
from selfhost_lab.inventory import EDGE_CA_ROOTS
from selfhost_lab.resources import Lab as ScriptLab

CA_IN_CLIENT = "/tmp/lab-edge-ca.pem"
# A Code node that runs longer than the 60 s a proxy gives an upstream by default (the lab lets a
# Code node run 90 s: dify_sandbox_worker_timeout in inventories/lab).
LONG_RUN_SECONDS = 65


@dataclass
class Site:
    """One lab as its users reach it: the edge host, the Dify host, the data host."""

    lab: object
    edge_host: str
    app_host: str
    data_host: str

    @property
    def proxy(self) -> str:
        return self.lab.hostvars[self.edge_host].get("selfhost_edge_proxy", "caddy")

    @property
    def domain(self) -> str:
        return self.lab.hostvars[self.edge_host]["selfhost_domain"]

    def admin(self) -> tuple[str, str, str]:
        """e-mail, password (the lab's: "Lab1" and the generated secret), name."""
        hostvars = self.lab.hostvars[self.app_host]
        password = "Lab1" + (self.lab.inventory / ".credentials" / "dify_admin_password").read_text().split()[0]
        return hostvars["dify_admin_email"], password, hostvars.get("dify_admin_name", "Administrator")

    def on_app(self) -> list[str]:
        return ["ssh", "-F", str(self.lab.inventory / ".ssh" / "config"), "-o", "BatchMode=yes", self.app_host, "sudo"]

    def api_url(self) -> str:
        """Dify's api where the Dify host publishes it (loopback when the edge is on the same host)."""
        port = self.lab.hostvars[self.app_host].get("selfhost_dify_api_port", 5001)
        address = "127.0.0.1" if self.app_host == self.edge_host else self.lab.address(self.app_host)
        return f"http://{address}:{port}"

    def edge_ca(self) -> str:
        """The root of the edge host's own CA (selfhost_edge_tls: selfsigned)."""
        return docker("exec", self.lab.container(self.edge_host), "cat", EDGE_CA_ROOTS[self.proxy]).stdout

    def edge(self, client: str) -> edge_kit.Edge:
        """The edge as `client` (a container on the lab network) reaches it, with the edge's CA."""
        edge_kit.put_file(client, CA_IN_CLIENT, self.edge_ca())
        return edge_kit.Edge(client, self.domain, self.lab.address(self.edge_host), CA_IN_CLIENT)


def browser_signs_in(site: Site, label: str) -> None:
    """README: `scripts/lab.py browser` (here --print: no display) names the URL and the profile
    that trusts the edge's CA; the browser then walks the journey with that same set-up."""
    said = lab_script("browser", "--name", site.lab.name, "--print").stdout
    assert f"https://{site.domain}/ through {site.proxy}" in said and "--host-rules=MAP" in said, said
    found = browser.setup(ScriptLab(site.lab.name, site.lab.inventory))
    assert found.proxy == site.proxy and found.domain == site.domain, found
    email, password, name = site.admin()
    browser_journey.walk(found, email, password, name, label=f"{label}-{site.proxy}")


def workflow_key(site: Site) -> str:
    email, password, _name = site.admin()
    return dify_workflow.publish(site.on_app(), site.api_url(), email, password)


def workflow_streams(site: Site, edge: edge_kit.Edge, key: str) -> dict:
    text = f"streamed through {site.proxy}"
    result = dify_workflow.run(edge, key, "streaming", text=text)
    dify_workflow.assert_streamed(result, text)
    return result


def workflow_blocks(edge: edge_kit.Edge, key: str) -> None:
    text = "answered in one piece"
    dify_workflow.assert_blocking(dify_workflow.run(edge, key, "blocking", text=text), text)


def code_node_is_refused_the_data_host(site: Site, edge: edge_kit.Edge, key: str) -> str:
    port = site.lab.hostvars[site.data_host].get("postgresql_port", 5432)
    target = f"http://{site.lab.address(site.data_host)}:{port}/"
    return dify_workflow.assert_refused(dify_workflow.run(edge, key, "blocking", action="reach", target=target,
                                                          text="x"), target)


def start_long_run(edge: edge_kit.Edge, key: str) -> concurrent.futures.Future:
    """Start a Code node of LONG_RUN_SECONDS, streamed through the edge, in the background (the
    other tests go on meanwhile; the test that asserts it waits for its end)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(dify_workflow.run, edge, key, "streaming", LONG_RUN_SECONDS + 90, action="sleep",
                         seconds=str(LONG_RUN_SECONDS), text=LONG_RUN_TEXT)
    pool.shutdown(wait=False)
    return future


LONG_RUN_TEXT = "still here"


def long_code_node_streamed_to_the_end(run: concurrent.futures.Future) -> dict:
    """The stream of the long Code node stayed open until workflow_finished, its first event early."""
    result = run.result(timeout=LONG_RUN_SECONDS + 180)
    dify_workflow.assert_streamed(result, LONG_RUN_TEXT)
    assert result["t_end"] >= LONG_RUN_SECONDS, result["t_end"]
    assert result["t_first_event"] < 10, f"the first event came after {result['t_first_event']:.1f}s"
    return result


def bench_sse_prints_its_ratios(site: Site) -> str:
    """`make bench-sse` on this lab (README): a real workflow streamed through the edge and straight
    from the api; the figures and ratios are printed, and the edge streams (first event well
    before the end of the stream)."""
    proc = run(["make", "-s", "bench-sse", f"ARGS=--name {site.lab.name} --runs 2 --seconds 2"], timeout=600)
    out = proc.stdout
    assert f"edge {site.proxy}" in out and "first event proxy/direct:" in out, out[-3000:]
    fraction = float(re.search(r"proxy first event / stream duration: ([0-9.]+)", out).group(1))
    assert fraction < 0.5, f"the edge delivered the first event only near the end of the stream:\n{out}"
    print(out)
    return out
