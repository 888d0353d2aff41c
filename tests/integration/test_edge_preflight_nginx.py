"""selfhost.dify.nginx refuses bad input before it changes anything.

The shared edge cases (selfhost_domain, selfhost_edge_*: tests/integration/test_edge_preflight.py,
CASES) and the cases particular to nginx (NGINX_CASES) are applied to the nginx role, with
the same machinery: one fresh bare Debian 13 server for the module, the role applied over
the docker connection with one kind of mistake, the run must fail naming the variable, change
nothing (PLAY RECAP changed=0) and leave the host's fingerprint (files under /etc and
/usr/local with modes and owners, and the dpkg status) exactly as it was.

Once test_edge_preflight.py runs nginx itself (ROLES, ROLE_CASES, and valid settings per
role), this module is redundant.
"""
from __future__ import annotations

import json

import pytest

from tests import helpers
from tests.integration.test_edge_preflight import (  # noqa: F401  # pylint: disable=unused-import
    CASES, VALID, apply_role, role_batch, server)

pytestmark = pytest.mark.docker

ROLE = "nginx"
# The shared valid settings, with this role chosen as the edge proxy.
VALID_NGINX = {**VALID, "selfhost_edge_proxy": "nginx"}

NGINX_CASES = {
    "caddy chosen as the edge proxy": ({"selfhost_edge_proxy": "caddy"}, ["selfhost_edge_proxy: is caddy"]),
    # Refused by selfhost.dify.selfhost's argument specs (choices), before this role's preflight.
    "scheme neither https nor http": ({"selfhost_scheme": "ftp"}, ["selfhost_scheme", "ftp"]),
    "TLS mode unknown": ({"selfhost_edge_tls": "letsencrypt"}, ["selfhost_edge_tls", "letsencrypt"]),
    "extra domain malformed": ({"nginx_extra_domains": ["www.example.com", "bad_name"]}, ["nginx_extra_domains: 'bad_name'"]),
    "body size with a suffix nginx does not know": (
        {"selfhost_edge_client_max_body_size": "1T"}, ["selfhost_edge_client_max_body_size: 1T is not a size nginx takes"]),
    "read timeout zero": ({"selfhost_edge_read_timeout": 0}, ["selfhost_edge_read_timeout: must be a whole number"]),
    "certbot key type unknown": ({"nginx_certbot_key_type": "dsa"}, ["nginx_certbot_key_type"]),
    "upstream address malformed": ({"selfhost_edge_upstreams": ["10.0.0.300"]}, ["selfhost_edge_upstreams[0]"]),
    "passive health check window zero": ({"nginx_upstream_fail_timeout": 0}, ["nginx_upstream_fail_timeout: must be at least 1"]),
    "access log path with a space": ({"nginx_access_log": "/var/log/nginx/access log.json"}, ["nginx_access_log: must be an absolute path"]),
}

ALL_CASES = {**CASES, **NGINX_CASES}


@pytest.fixture(scope="module")
def rejections(server, tmp_path_factory):  # noqa: F811
    """Every case in one run, a host each."""
    return role_batch(server, tmp_path_factory.mktemp("nginx-batch"), ROLE,
                      {name: {**VALID_NGINX, **variables} for name, (variables, _expected) in ALL_CASES.items()})


@pytest.mark.parametrize("case", list(ALL_CASES), ids=list(ALL_CASES))
def test_bad_input_fails_before_any_change(rejections, case):
    rejections.assert_rejected(case, ALL_CASES[case][1])


def test_all_problems_are_reported_at_once(server, tmp_path):  # noqa: F811
    proc = apply_role(server, tmp_path, ROLE, {**VALID_NGINX, "selfhost_domain": "localhost",
                                               "selfhost_edge_acme_email": "nope",
                                               "selfhost_edge_client_max_body_size": "lots",
                                               "nginx_extra_domains": ["bad_name"]})
    assert proc.returncode != 0
    failed = [json.loads(line.split("=> ", 1)[1]) for line in proc.stdout.splitlines()
              if line.startswith("fatal: [target]: FAILED! => ")]
    assert len(failed) == 1, proc.stdout[-3000:]
    messages = failed[0]["msg"]
    assert messages[0].startswith("selfhost.dify.nginx preflight: nothing was changed")
    assert [m.split(":", 1)[0] for m in messages[1:]] == [
        "selfhost_domain", "nginx_extra_domains", "selfhost_edge_acme_email", "selfhost_edge_client_max_body_size"]


def test_valid_input_passes_the_preflight(server, tmp_path):  # noqa: F811
    before = helpers.fingerprint(server)
    proc = apply_role(server, tmp_path, ROLE, VALID_NGINX, "--check", "--tags", "nginx_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "TASK [selfhost.dify.nginx : Preflight | Stop before any change if a check failed]" in proc.stdout
    assert helpers.recap(proc.stdout)["target"]["changed"] == 0
    assert before == helpers.fingerprint(server)
