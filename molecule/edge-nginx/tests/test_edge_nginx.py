"""Behaviour of selfhost.dify.nginx on the converged molecule hosts (Debian 13 and 12).

converge.yml applies the role with selfhost_edge_proxy nginx, certificates from a real ACME
CA (Debian's pebble on the third host, through certbot's webroot plugin), two stand-in app
hosts (127.0.0.1 and 127.0.0.2, tests/edge_upstream.py) behind each edge, an 8M body limit,
HSTS max-age 63072000 and a sign-in limit of 6/min with a burst of 3. debian13 also serves
a second name (nginx_extra_domains).

Everything is checked as a user of the site sees it, from client containers on the
scenario's network with TLS verified against Pebble's root (tests/edge_kit.py, the same
checks as the caddy scenario), then what is particular to nginx and certbot: load balancing
with passive health checks, renewal through certbot and its deploy hook, certbot.timer, the
configuration test that keeps a broken file out. The tests that edit the hosts run last.
"""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import edge_kit, helpers  # noqa: E402  pylint: disable=wrong-import-position

NETWORK = "selfhost-edge-nginx"
INVENTORY = helpers.ansible_inventory(helpers.molecule_inventory())
HOSTS = sorted(INVENTORY["edge"]["hosts"])
PEBBLE = INVENTORY["pebble"]["hosts"][0]
DOMAINS = {h: INVENTORY["_meta"]["hostvars"][h]["selfhost_domain"] for h in HOSTS}
EXTRA = {h: INVENTORY["_meta"]["hostvars"][h].get("nginx_extra_domains", []) for h in HOSTS}
testinfra_hosts = [f"docker://{name}" for name in HOSTS]
D13 = next(h for h in HOSTS if h.endswith("debian13"))

HSTS_MAX_AGE = 63072000
BODY_LIMIT = 8 * 1024 * 1024
LOGIN_BURST = 3
SITE_FILE = "/etc/nginx/conf.d/selfhost-dify.conf"
ACCESS_LOG = "/var/log/nginx/access.json"
CA_IN_CLIENT = "/etc/selfhost-test/pebble-root.pem"
CA_ROOT_ON_EDGE = "/etc/ssl/selfhost-nginx/acme-ca-root.pem"

# Served certificate of an edge, as the SHA-256 of its DER (run in a client container).
_PEER_CERT = r'''
import hashlib, socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2", "http/1.1"])
with socket.create_connection((sys.argv[1], 443), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=sys.argv[2]) as tls:
        print(hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest(), tls.selected_alpn_protocol())
'''


@pytest.fixture(scope="module")
def pebble_root():
    return edge_kit.pebble_root(PEBBLE)


@pytest.fixture(scope="module")
def clients(pebble_root):
    """Two client containers on the scenario's network, trusting Pebble's current root."""
    names = [f"edge-nginx-client-{uuid.uuid4().hex[:6]}" for _client in range(2)]
    with edge_kit.client_container(names[0], NETWORK), edge_kit.client_container(names[1], NETWORK):
        for name in names:
            edge_kit.put_file(name, CA_IN_CLIENT, pebble_root)
        yield names


def edge_for(name: str, client: str, domain: str | None = None) -> edge_kit.Edge:
    return edge_kit.Edge(client, domain or DOMAINS[name], edge_kit.container_address(name, NETWORK), CA_IN_CLIENT)


@pytest.fixture(params=HOSTS)
def edge(request, clients):
    """(edge container, Edge seen from the first client)."""
    return request.param, edge_for(request.param, clients[0])


def served_certificate(edge: edge_kit.Edge) -> tuple[str, str]:
    out = helpers.docker("exec", edge.client, "python3", "-c", _PEER_CERT, edge.address, edge.domain).stdout
    digest, alpn = out.split()
    return digest, alpn


def sh(name: str, script: str, check: bool = True):
    return helpers.docker("exec", name, "sh", "-c", script, check=check, timeout=600)


# -- what every edge proxy must do (the shared kit) ---------------------------------------

def test_certificate_is_issued_by_pebble_for_every_name(edge, pebble_root):
    name, site = edge
    cert = edge_kit.assert_certificate_issued_by(site, pebble_root)
    assert sorted(cert["san"]) == sorted([DOMAINS[name], *EXTRA[name]])
    for extra in EXTRA[name]:
        assert edge_kit.request(edge_for(name, site.client, extra), "/")["status"] == 200


def test_plain_http_is_redirected_to_https(edge):
    edge_kit.assert_https_redirect(edge[1])


def test_acme_challenges_are_served_over_plain_http(edge):
    name, site = edge
    token = uuid.uuid4().hex
    sh(name, f"echo {token} > /var/www/selfhost-acme/.well-known/acme-challenge/{token}")
    try:
        result = edge_kit.request(site, f"/.well-known/acme-challenge/{token}", scheme="http")
        assert result["status"] == 200 and result["body"].strip() == token, result
    finally:
        sh(name, f"rm -f /var/www/selfhost-acme/.well-known/acme-challenge/{token}")


def test_each_prefix_reaches_its_upstream(edge):
    edge_kit.assert_routes(edge[1])


def test_security_headers(edge):
    edge_kit.assert_security_headers(edge[1], HSTS_MAX_AGE)


def test_compression_but_never_of_event_streams(edge):
    edge_kit.assert_compression(edge[1])


def test_server_sent_events_are_not_buffered(edge):
    edge_kit.assert_sse_not_buffered(edge[1])


def test_body_limit(edge):
    edge_kit.assert_body_limit(edge[1], BODY_LIMIT)


def test_sign_in_is_rate_limited_per_client(edge, clients):
    name, site = edge
    seen = edge_kit.assert_rate_limited(site, edge_for(name, clients[1]), allowed=LOGIN_BURST + 1, attempts=10)
    assert any(r["status"] == 429 for r in seen["results"]), "nginx answers 429 (limit_req_status)"


def test_json_access_log(edge):
    name, site = edge
    entry = edge_kit.assert_json_access_log(site, name, ACCESS_LOG)
    assert entry["host"] == DOMAINS[name] and entry["upstream_addr"]


# -- nginx specifics ------------------------------------------------------------------------

def test_http2_is_offered(edge):
    assert served_certificate(edge[1])[1] == "h2"


def test_requests_are_spread_over_both_app_hosts_on_kept_alive_connections(edge):
    results = edge_kit.requests(edge[1], [{"path": f"/v1/spread-{i}"} for i in range(8)])
    instances = {r["json"]["instance"] for r in results}
    assert instances == {"127.0.0.1:5001", "127.0.0.2:5001"}, instances
    # proxy_http_version 1.1 with an empty Connection header: the upstream connection stays open.
    assert all("connection" not in {k.lower() for k in r["json"]["headers"]} for r in results)


def test_an_app_host_that_fails_is_passed_over(edge):
    """Passive health check: with api down on one app host every request still succeeds,
    answered by the other one."""
    name, site = edge
    unit = "edge-upstream-api-127.0.0.2.service"
    sh(name, f"systemctl stop {unit}")
    try:
        results = edge_kit.requests(site, [{"path": f"/v1/failover-{i}"} for i in range(8)])
        assert [r["status"] for r in results] == [200] * 8, [(r["status"], r["error"]) for r in results]
        assert {r["json"]["instance"] for r in results} == {"127.0.0.1:5001"}
    finally:
        sh(name, f"systemctl start {unit}")


def test_debian_default_site_is_gone(host, clients):
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    other_name = edge_kit.request(edge_for(host.backend.name, clients[0], "unknown.example.test"), "/", scheme="http")
    assert other_name["status"] == 301, other_name


def test_site_file_and_effective_settings(host):
    site = host.file(SITE_FILE)
    assert site.content_string.startswith("# Managed by selfhost.dify (role nginx); local edits are overwritten.\n")
    effective = host.check_output("nginx -T 2>/dev/null")
    for line in ("proxy_buffering off;", "proxy_ignore_headers X-Accel-Buffering;", "proxy_read_timeout 3600s;",
                 "keepalive 32;", "limit_req_status 429;", "client_max_body_size 8M;"):
        assert line in effective, line
    assert "max_fails=3 fail_timeout=10s" in effective


def test_certbot_timer_is_enabled(host):
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running
    assert host.file("/etc/letsencrypt/renewal-hooks/deploy/50-selfhost-nginx-reload").mode == 0o755
    dropin = host.check_output("systemctl show certbot.service -p Environment --value")
    assert f"REQUESTS_CA_BUNDLE={CA_ROOT_ON_EDGE}" in dropin


def test_certbot_renew_dry_run_against_pebble(host):
    """What certbot.timer runs, in certbot.service's environment, as a rehearsal."""
    env = host.check_output("systemctl show certbot.service -p Environment --value")
    # A dry run goes to Let's Encrypt's staging directory unless told the server again.
    server = host.check_output("sed -n 's/^server = //p' /etc/letsencrypt/renewal/*.conf")
    assert server == f"https://{PEBBLE}:14000/dir"
    run = host.run(f"env {env} certbot renew --dry-run --no-random-sleep-on-renew --server {server}")
    assert run.rc == 0, run.stdout + run.stderr
    assert "all simulated renewals succeeded" in (run.stdout + run.stderr).lower()


def test_renewal_is_served_after_the_deploy_hook_reloads_nginx(edge, pebble_root):
    name, site = edge
    before, _chain = served_certificate(site)
    pid = sh(name, "systemctl show nginx -p MainPID --value").stdout.strip()
    sh(name, f"REQUESTS_CA_BUNDLE={CA_ROOT_ON_EDGE} certbot renew --force-renewal --no-random-sleep-on-renew "
             "--cert-name " + DOMAINS[name])
    after, _chain = served_certificate(site)
    assert after != before, "nginx still serves the old certificate: the deploy hook did not reload it"
    assert sh(name, "systemctl show nginx -p MainPID --value").stdout.strip() == pid, "reloaded, not restarted"
    edge_kit.assert_certificate_issued_by(site, pebble_root)


def test_configuration_test_checks_a_candidate_in_the_whole_configuration(host):
    """The validate: command of the role's templates: a file valid on its own but clashing
    with the rest of /etc/nginx is refused; /etc/nginx is never touched by the test."""
    before = host.check_output("find /etc/nginx -type f -o -type l | sort | xargs sha256sum 2>/dev/null; ls -lR /etc/nginx")
    host.run("printf 'upstream selfhost_dify_api { server 127.0.0.1:9; }\\n' > /tmp/clash.conf")
    host.run("printf 'upstream another_pool { server 127.0.0.1:9; }\\n' > /tmp/fine.conf")
    clash = host.run("/usr/local/sbin/selfhost-nginx-config-test /tmp/clash.conf /etc/nginx/conf.d/zz-extra.conf")
    fine = host.run("/usr/local/sbin/selfhost-nginx-config-test /tmp/fine.conf /etc/nginx/conf.d/zz-extra.conf")
    assert clash.rc != 0 and "duplicate upstream" in clash.stderr, clash.stderr
    assert fine.rc == 0, fine.stderr
    after = host.check_output("find /etc/nginx -type f -o -type l | sort | xargs sha256sum 2>/dev/null; ls -lR /etc/nginx")
    assert before == after


# -- runs of the role (these edit the hosts: keep them last) ------------------------------

def test_a_broken_configuration_never_reaches_nginx(clients):
    """Invalid raw directives fail the run at the configuration test; the live file and the
    running nginx are untouched and keep serving."""
    site_before = sh(D13, f"sha256sum {SITE_FILE}").stdout
    pid = sh(D13, "systemctl show nginx -p MainPID --value").stdout.strip()
    proc = helpers.molecule_playbook("converge.yml", "--limit", D13, "--tags", "nginx_site", "-e",
                                     json.dumps({"nginx_server_extra_config": "this_is_not_a_directive on;"}),
                                     check=False)
    assert proc.returncode != 0
    assert "Site | Configure the Dify site" in proc.stdout and "failed to validate" in proc.stdout, proc.stdout[-3000:]
    assert sh(D13, f"sha256sum {SITE_FILE}").stdout == site_before
    assert sh(D13, "systemctl is-active nginx").stdout.strip() == "active"
    assert sh(D13, "systemctl show nginx -p MainPID --value").stdout.strip() == pid
    assert edge_kit.request(edge_for(D13, clients[0]), "/v1/still-there")["status"] == 200


def test_check_mode_on_converged_hosts_reports_no_change():
    helpers.assert_check_mode_clean("converge.yml", hosts=HOSTS)


def test_hand_edits_are_detected_and_put_back(clients):
    d12 = next(h for h in HOSTS if h != D13)
    # debian13: the site file edited by hand (buffering back on); debian12: the deploy hook
    # emptied and nginx pointed at the placeholder certificate.
    sh(D13, f"sed -i 's/proxy_buffering off;/proxy_buffering on;/' {SITE_FILE} && systemctl reload nginx")
    sh(d12, "truncate -s 0 /etc/letsencrypt/renewal-hooks/deploy/50-selfhost-nginx-reload && "
            f"ln -sfn /etc/ssl/selfhost-nginx/placeholder.crt /etc/ssl/selfhost-nginx/{DOMAINS[d12]}.crt && "
            f"ln -sfn /etc/ssl/selfhost-nginx/placeholder.key /etc/ssl/selfhost-nginx/{DOMAINS[d12]}.key && "
            "systemctl reload nginx")
    placeholder = edge_kit.request(edge_for(d12, clients[0]), "/")
    assert placeholder["error"] and placeholder["error"].startswith("tls:"), placeholder

    # Limited to the concerns at stake, for speed (the preflight runs with every tag).
    tags = ("--tags", "nginx_tls,nginx_site,nginx_acme")
    checked = helpers.molecule_playbook("converge.yml", "--check", "--diff", *tags).stdout
    would_change = helpers.changed_tasks(checked)
    assert "selfhost.dify.nginx : Site | Configure the Dify site" in would_change[D13]
    assert "selfhost.dify.nginx : ACME | Reload nginx after each renewal (deploy hook; nginx -t first)" in would_change[d12]
    assert "proxy_buffering on;" in sh(D13, f"cat {SITE_FILE}").stdout

    converged = helpers.molecule_playbook("converge.yml", *tags).stdout
    changed = helpers.changed_tasks(converged)
    assert "selfhost.dify.nginx : Site | Configure the Dify site" in changed[D13]
    assert "selfhost.dify.nginx : Reload nginx now" in changed[D13]
    assert "selfhost.dify.nginx : ACME | Reload nginx after each renewal (deploy hook; nginx -t first)" in changed[d12]
    assert "selfhost.dify.nginx : Reload nginx now" in changed[d12]
    assert "proxy_buffering off;" in sh(D13, f"cat {SITE_FILE}").stdout
    for name in HOSTS:
        assert edge_kit.request(edge_for(name, clients[0]), "/")["status"] == 200
    edge_kit.assert_sse_not_buffered(edge_for(D13, clients[0]))

    helpers.assert_no_changes(helpers.molecule_playbook("converge.yml", *tags).stdout, hosts=HOSTS)
