"""Behaviour of selfhost.dify.logging on the converged molecule hosts.

logging-debian13 runs Loki (logging group) and a Promtail; logging-debian12 a Promtail that
ships to it. Both are Grafana's Loki and Promtail 3.6.15 built from source, installed from their
release zips. (Alloy's pipeline cannot run here, no binary: these hosts use Promtail; the Alloy
configuration is tested as text in tests/unit.)

Everything is checked as a user sees it: lines written to a host's journal with `logger` are
found by a LogQL query to Loki's HTTP API from this machine, filtered by the host label; what
listens where; TCP probes from the other host; lines written while Loki or Promtail was down
arrive once it is back; a hand edit is put back. The tests that edit the hosts run last.
"""
from __future__ import annotations

import json
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import helpers  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = helpers.ansible_inventory(helpers.molecule_inventory())
HOSTS = sorted(INVENTORY["_meta"]["hostvars"])
testinfra_hosts = [f"docker://{name}" for name in HOSTS]
LOKI = next(h for h in HOSTS if h.endswith("debian13"))
OTHER = next(h for h in HOSTS if h.endswith("debian12"))
PORT = 3100
GRPC_PORT = 9096
# An HTTP GET on the host (the test images have python3, not curl).
FETCH = "python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' %s"


def loki_url() -> str:
    return f"http://{helpers.container_ip(LOKI)}:{PORT}"


def query(logql: str, since: float = 900) -> list[tuple[dict, str]]:
    """(labels, line) of every line the LogQL query finds in the last `since` seconds."""
    now = time.time()
    params = urllib.parse.urlencode({"query": logql, "start": str(int((now - since) * 1e9)),
                                     "end": str(int((now + 60) * 1e9)), "limit": "1000", "direction": "forward"})
    with urllib.request.urlopen(f"{loki_url()}/loki/api/v1/query_range?{params}", timeout=20) as response:
        data = json.load(response)
    assert data["status"] == "success", data
    return [(stream["stream"], value[1]) for stream in data["data"]["result"] for value in stream["values"]]


def wait_for_lines(logql: str, count: int = 1, timeout: float = 90) -> list[tuple[dict, str]]:
    deadline = time.time() + timeout
    while True:
        try:
            found = query(logql)
        except OSError:
            found = []
        if len(found) >= count or time.time() > deadline:
            return found
        time.sleep(2)


def selector(host: str) -> str:
    """The test's lines of `host` (Loki's own journal lines quote the queries, marks included)."""
    return f'{{host="{host}", service="selfhost-test"}}'


def log_line(host: str, text: str) -> None:
    helpers.docker("exec", host, "logger", "-t", "selfhost-test", text)


def wait_ready(timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{loki_url()}/ready", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.time() < deadline, "Loki did not become ready"
        time.sleep(1)


# -- what a user sees: a journal line of each host, found by its host label ------------------

def test_a_journal_line_of_each_host_is_found_by_its_host_label():
    marks = {host: str(uuid.uuid4()) for host in HOSTS}
    for host, mark in marks.items():
        log_line(host, mark)
    for host, mark in marks.items():
        found = wait_for_lines(f'{selector(host)} |= "{mark}"')
        assert len(found) == 1, f"{host}: the line {mark} was not found exactly once in Loki: {found}"
        labels, line = found[0]
        assert mark in line
        assert labels["host"] == host and labels["env"] == "molecule" and labels["job"] == "journal"
        assert labels["service"] == "selfhost-test"
        # Under the other host's label it is not there.
        other = next(h for h in HOSTS if h != host)
        assert not query(f'{selector(other)} |= "{mark}"')


def test_loki_runs_the_rendered_retention_and_limits():
    with urllib.request.urlopen(f"{loki_url()}/config", timeout=10) as response:
        config = response.read().decode()
    assert "retention_enabled: true" in config
    assert "retention_period: 2w" in config or "retention_period: 14d" in config
    assert "ingestion_rate_mb: 4" in config


def test_loki_listens_only_on_the_private_address_and_loopback(host):
    if host.backend.get_hostname() != LOKI:
        assert not helpers.is_listening(host.backend.get_hostname(), PORT)
        return
    private = helpers.container_ip(LOKI)
    listening = host.socket.get_listening_sockets()
    assert f"tcp://{private}:{PORT}" in listening
    assert f"tcp://127.0.0.1:{GRPC_PORT}" in listening
    for sock in listening:
        if sock.endswith(f":{PORT}") or sock.endswith(f":{GRPC_PORT}"):
            assert sock in (f"tcp://{private}:{PORT}", f"tcp://127.0.0.1:{GRPC_PORT}"), sock
    # From the other host: the HTTP API answers, the gRPC port does not.
    assert helpers.probe(OTHER, private, PORT) == "open"
    assert helpers.probe(OTHER, private, GRPC_PORT) == "refused"


def test_loki_runs_as_its_own_user_with_the_managed_config(host):
    if host.backend.get_hostname() != LOKI:
        return
    assert host.user("loki").shell == "/usr/sbin/nologin"
    assert host.process.filter(comm="loki")[0].user == "loki"
    config = host.file("/etc/loki/config.yml")
    assert config.content_string.startswith("# Managed by selfhost.dify")
    assert config.user == "root" and config.group == "loki" and config.mode == 0o640


def test_the_shipper_is_ready_and_has_sent_lines(host):
    assert host.service("promtail").is_running and host.service("promtail").is_enabled
    ready = host.run(FETCH % "http://127.0.0.1:9080/ready")
    assert ready.rc == 0, ready.stderr
    metrics = host.check_output(FETCH % "http://127.0.0.1:9080/metrics")
    sent = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("promtail_sent_entries_total{"))
    assert sent > 0
    # Only on loopback.
    assert all("127.0.0.1:9080" in s for s in host.socket.get_listening_sockets() if s.endswith(":9080"))
    assert host.file("/var/lib/promtail/positions.yaml").exists


# -- idempotence seen from outside, restarts, drift (these edit the hosts: keep them last) ----

def test_check_mode_on_converged_hosts_reports_no_change():
    helpers.assert_check_mode_clean("converge.yml", hosts=HOSTS)


def test_lines_written_while_loki_was_down_arrive_after_it_is_back():
    marks = {host: [str(uuid.uuid4()) for _index in range(3)] for host in HOSTS}
    helpers.docker("exec", LOKI, "systemctl", "stop", "loki")
    try:
        for host, host_marks in marks.items():
            for mark in host_marks:
                log_line(host, f"written while loki was down {mark}")
        time.sleep(5)
    finally:
        helpers.docker("exec", LOKI, "systemctl", "restart", "loki")
    wait_ready()
    for host, host_marks in marks.items():
        for mark in host_marks:
            found = wait_for_lines(f'{selector(host)} |= "{mark}"', timeout=120)
            assert len(found) == 1, f"{host}: the line {mark} written while Loki was down did not arrive once: {found}"


def test_a_shipper_restart_loses_and_repeats_nothing():
    before = str(uuid.uuid4())
    log_line(OTHER, before)
    assert len(wait_for_lines(f'{selector(OTHER)} |= "{before}"')) == 1
    helpers.docker("exec", OTHER, "systemctl", "stop", "promtail")
    during = str(uuid.uuid4())
    log_line(OTHER, during)
    helpers.docker("exec", OTHER, "systemctl", "start", "promtail")
    assert len(wait_for_lines(f'{selector(OTHER)} |= "{during}"')) == 1
    # The positions file kept the place: the line before the restart was not sent twice.
    time.sleep(5)
    assert len(query(f'{selector(OTHER)} |= "{before}"')) == 1


def test_a_hand_edit_of_the_loki_config_is_put_back():
    path = "/etc/loki/config.yml"
    original = helpers.docker("exec", LOKI, "cat", path).stdout
    helpers.docker("exec", LOKI, "sed", "-i", "s/retention_enabled: true/retention_enabled: false/", path)
    assert helpers.docker("exec", LOKI, "cat", path).stdout != original

    converged = helpers.molecule_playbook("converge.yml").stdout
    changed = helpers.changed_tasks(converged)
    assert "selfhost.dify.logging : Loki | Write the configuration (checked with loki -verify-config)" in changed[LOKI]
    assert "selfhost.dify.logging : Restart loki" in changed[LOKI]
    assert not changed.get(OTHER)
    assert helpers.docker("exec", LOKI, "cat", path).stdout == original
    wait_ready()
    mark = str(uuid.uuid4())
    log_line(OTHER, mark)
    assert len(wait_for_lines(f'{selector(OTHER)} |= "{mark}"')) == 1
