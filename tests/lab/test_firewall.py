"""The firewall as another host on the private network sees it: SSH, 80 and 443 are
public; anything else that listens is dropped (a timeout, not a refusal)."""
from __future__ import annotations

import time
import urllib.request

import pytest

from tests.helpers import docker, is_listening, listening, probe

pytestmark = [pytest.mark.lab, pytest.mark.docker]


@pytest.fixture
def node(lab):
    host = lab.hosts[0]
    return host, lab.container(host), lab.address(host)


def test_ssh_answers(node, prober):
    address = node[2]
    assert probe(prober, address, 22) == "open"


def test_unlisted_port_is_dropped(node, prober):
    container, address = node[1], node[2]
    with listening(container, 8765):
        assert probe(container, "127.0.0.1", 8765) == "open", "the listener itself does not answer"
        assert probe(prober, address, 8765) == "timeout"


@pytest.mark.parametrize("port", [80, 443])
def test_web_ports_are_public_when_something_listens(lab, node, prober, port):
    host, container, address = node
    if is_listening(container, port):
        assert probe(prober, address, port) == "open"
        return
    with listening(container, port):
        assert probe(prober, address, port) == "open"
        if port == 80:
            # and from the workstation, through the port the lab publishes on loopback
            url = f"http://127.0.0.1:{lab.hostvars[host]['lab_http_port']}/"
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(url, timeout=10) as resp:
                assert resp.status == 200


def test_web_port_without_listener_is_refused_not_dropped(lab, node, prober):
    """443 is open in the firewall, not only answered by the proxy: with the edge proxy
    stopped, a client gets a refusal (the host answers), not a timeout (a drop)."""
    host, container, address = node
    service = lab.hostvars[host].get("selfhost_edge_proxy", "caddy")
    serving = is_listening(container, 443)
    if serving:
        docker("exec", container, "systemctl", "stop", service)
    try:
        assert not is_listening(container, 443), f"{service} is stopped, yet something serves 443"
        assert probe(prober, address, 443) == "refused"
    finally:
        if serving:
            docker("exec", container, "systemctl", "start", service)
            deadline = time.time() + 60
            while not is_listening(container, 443) and time.time() < deadline:
                time.sleep(1)
    assert is_listening(container, 443) == serving, f"{service} does not serve 443 again"
