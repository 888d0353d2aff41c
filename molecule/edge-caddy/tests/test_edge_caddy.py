"""Behaviour of selfhost.dify.caddy on the converged molecule edge, seen by its clients.

The edge (edge-caddy-debian13) runs the role with ACME against Pebble (edge-caddy-pebble, a
real ACME CA validating HTTP-01 over the scenario's Docker network), in front of the
stand-in Dify services of tests/edge_upstream.py on 127.0.0.1 and 127.0.0.2 (two "app hosts").
Requests come from the Pebble container (or throwaway client containers) with TLS verified
against Pebble's root, through tests/edge_kit.py, the kit the nginx scenario uses too.
The tests that edit the host (broken config, drift, self-signed variant) run last.
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import edge_kit, helpers  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = helpers.ansible_inventory(helpers.molecule_inventory())
HOSTS = sorted(INVENTORY["_meta"]["hostvars"])
EDGE = next(h for h in HOSTS if h.endswith("debian13"))
PEBBLE = next(h for h in HOSTS if h.endswith("pebble"))
VARS = INVENTORY["_meta"]["hostvars"][EDGE]
DOMAIN = VARS["selfhost_domain"]
NETWORK = f"selfhost-{Path(__file__).resolve().parents[1].name}"
testinfra_hosts = [f"docker://{EDGE}"]

CADDYFILE = "/etc/caddy/Caddyfile"
ACCESS_LOG = "/var/log/caddy/access.json"
ROOT_IN_CLIENT = "/tmp/edge-kit-pebble-root.pem"
CHAIN_IN_CLIENT = "/tmp/edge-kit-pebble-chain.pem"


def edge_exec(*args, check=True):
    return helpers.docker("exec", EDGE, *args, check=check)


@pytest.fixture(scope="module")
def pebble_root_pem():
    return edge_kit.pebble_root(PEBBLE)


@pytest.fixture(scope="module")
def edge(pebble_root_pem):
    """The edge seen from the Pebble container, trusting Pebble's root only."""
    edge_kit.put_file(PEBBLE, ROOT_IN_CLIENT, pebble_root_pem)
    return edge_kit.Edge(PEBBLE, DOMAIN, helpers.container_ip(EDGE, NETWORK), ROOT_IN_CLIENT)


# -- certificates ------------------------------------------------------------------------------

def test_certificate_comes_from_pebble_through_http01(edge, pebble_root_pem):
    cert = edge_kit.assert_certificate_issued_by(edge, pebble_root_pem, issuer_contains="Pebble Intermediate")
    assert cert["san"] == [DOMAIN]
    log = edge_exec("journalctl", "-u", "caddy", "--no-pager", "-o", "cat").stdout
    assert '"challenge_type":"http-01"' in log and '"msg":"certificate obtained successfully"' in log
    assert "tls-alpn-01" not in log


def test_http_redirects_to_https(edge):
    edge_kit.assert_https_redirect(edge)


# -- routes, headers, streaming, limits ---------------------------------------------------------

def test_each_prefix_reaches_its_upstream_and_internal_endpoints_are_refused(edge):
    edge_kit.assert_routes(edge)


def test_security_headers(edge):
    edge_kit.assert_security_headers(edge, hsts_max_age=31536000)


def test_compression_but_never_for_event_streams(edge):
    edge_kit.assert_compression(edge)


def test_server_sent_events_are_not_buffered(edge):
    result = edge_kit.assert_sse_not_buffered(edge)
    print(f"first event {result['t_first_event']:.3f}s, end {result['t_end']:.3f}s")


def test_body_limit(edge):
    edge_kit.assert_body_limit(edge, 2 * 1024 * 1024)


def test_load_is_spread_over_both_app_hosts_and_survives_one_going_down(edge):
    paths = [{"path": f"/v1/probe?{n}"} for n in range(8)]
    seen = {r["json"]["instance"] for r in edge_kit.requests(edge, paths)}
    assert seen == {"127.0.0.1:5001", "127.0.0.2:5001"}, seen
    edge_exec("systemctl", "stop", "edge-upstream-api-127.0.0.2.service")
    try:
        results = edge_kit.requests(edge, paths)
        assert [r["status"] for r in results] == [200] * len(paths), [(r["status"], r["error"]) for r in results]
        assert {r["json"]["instance"] for r in results} == {"127.0.0.1:5001"}
    finally:
        edge_exec("systemctl", "start", "edge-upstream-api-127.0.0.2.service")


def test_admin_api_has_no_tcp_port_and_only_80_443_listen(host):
    listeners = [line.split()[3] for line in host.check_output("ss -Hltn").splitlines()]
    assert "*:443" in listeners and "*:80" in listeners, listeners
    assert not [a for a in listeners if a.endswith(":2019")], listeners
    sock = host.file("/run/caddy/admin.sock")
    assert sock.is_socket and sock.user == "caddy"
    assert host.run("caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile").rc == 0


def test_json_access_log(edge):
    entry = edge_kit.assert_json_access_log(edge, EDGE, ACCESS_LOG)
    assert entry["request"]["host"] == DOMAIN


def test_login_rate_limit_bans_the_hammering_client_only(edge):
    allowed = VARS["selfhost_edge_login_rate_per_minute"] + VARS["selfhost_edge_login_rate_burst"]
    tag = uuid.uuid4().hex[:6]
    with edge_kit.client_container(f"edge-caddy-client-a-{tag}", NETWORK) as a, \
            edge_kit.client_container(f"edge-caddy-client-b-{tag}", NETWORK) as b:
        for client in (a, b):
            edge_kit.put_file(client, ROOT_IN_CLIENT, helpers.docker("exec", PEBBLE, "cat", ROOT_IN_CLIENT).stdout)
        try:
            seen = edge_kit.assert_rate_limited(edge.using(a), edge.using(b), allowed=allowed, attempts=allowed + 4)
            status = edge_exec("fail2ban-client", "status", "selfhost-caddy-login").stdout
            assert helpers.container_ip(a, NETWORK) in status and helpers.container_ip(b, NETWORK) not in status, status
            print(f"refused from request {seen['refused_at'] + 1}")
        finally:
            edge_exec("fail2ban-client", "set", "selfhost-caddy-login", "unbanip", "--report-absent",
                      helpers.container_ip(a, NETWORK), check=False)


# -- idempotence seen from outside, failures, drift (these edit the host: keep them last) -------------

def test_check_mode_on_the_converged_edge_reports_no_change():
    helpers.assert_check_mode_clean("converge.yml", hosts=[EDGE])


def test_an_invalid_configuration_is_refused_and_the_running_proxy_keeps_serving(edge):
    before = edge_exec("sha256sum", CADDYFILE).stdout
    proc = helpers.molecule_playbook("converge.yml", "-e", "caddy_extra_site_config='reverse_proxy {'",
                                     "--tags", "caddy_config", check=False)
    assert proc.returncode != 0
    assert "Write the Caddyfile (validated first)" in proc.stdout and "failed to validate" in proc.stdout, proc.stdout[-3000:]
    assert edge_exec("sha256sum", CADDYFILE).stdout == before
    # A hand-broken file: the reload fails, the running configuration stays.
    edge_exec("cp", CADDYFILE, "/root/Caddyfile.good")
    try:
        edge_exec("sh", "-c", f"echo 'this is not a directive {{' >> {CADDYFILE}")
        assert edge_exec("systemctl", "reload", "caddy", check=False).returncode != 0
        assert edge_exec("systemctl", "is-active", "caddy").stdout.strip() == "active"
        edge_kit.assert_routes(edge)
    finally:
        edge_exec("cp", "/root/Caddyfile.good", CADDYFILE)


def test_a_hand_edit_is_put_back_and_reported(edge):
    edge_exec("sed", "-i", "s/Referrer-Policy strict-origin-when-cross-origin/Referrer-Policy unsafe-url/", CADDYFILE)
    edge_exec("systemctl", "reload", "caddy")
    assert edge_kit.header(edge_kit.request(edge, "/"), "Referrer-Policy") == "unsafe-url"
    out = helpers.molecule_playbook("converge.yml", "--tags", "caddy_config").stdout
    changed = helpers.changed_tasks(out)[EDGE]
    assert "selfhost.dify.caddy : Configuration | Write the Caddyfile (validated first)" in changed
    assert "selfhost.dify.caddy : Reload caddy" in changed
    assert edge_kit.header(edge_kit.request(edge, "/"), "Referrer-Policy") == "strict-origin-when-cross-origin"


def test_selfsigned_mode_serves_a_caddy_local_certificate_then_acme_again(edge, pebble_root_pem):
    tags = ("--tags", "caddy_preflight,caddy_tls,caddy_config")
    helpers.molecule_playbook("converge.yml", "-e", "selfhost_edge_tls=selfsigned", *tags)
    try:
        insecure = edge_kit.request(edge, "/", insecure=True)
        assert insecure["status"] == 200 and insecure["json"]["upstream"] == "web"
        verified = edge_kit.request(edge, "/")
        assert verified["error"] and verified["error"].startswith("tls:"), verified
        chain = edge_exec("sh", "-c", "cat /var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt").stdout
        edge_kit.put_file(PEBBLE, CHAIN_IN_CLIENT, chain)
        local = edge_kit.request(edge_kit.Edge(PEBBLE, DOMAIN, edge.address, CHAIN_IN_CLIENT), "/")
        assert local["error"] is None and "Caddy Local Authority" in local["cert"]["issuer"]["commonName"], local
    finally:
        helpers.molecule_playbook("converge.yml", *tags)
    edge_kit.assert_certificate_issued_by(edge, pebble_root_pem, issuer_contains="Pebble Intermediate")
