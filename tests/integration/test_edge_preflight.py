"""The edge proxy roles refuse bad input before they change anything.

One fresh bare server (a systemd container of the Debian 13 image) serves the whole
module. Every case applies an edge role with one kind of mistake through the docker
connection and asserts that the run fails, that the output names the variable at fault,
and that the host's configuration state (helpers.fingerprint: files under /etc and
/usr/local with modes and owners, and the dpkg status) is exactly what it was before.

The cases share one ansible-playbook run (helpers.RejectionBatch): each is an inventory host of
its own, pointing at the server and carrying the case's variables, and each test reads its
host's part of the output. Each role's cases share one run.

The cases of the shared edge interface (selfhost_domain, selfhost_edge_*) run against every
role in ROLES; role-specific cases live in ROLE_CASES. To add the nginx role: append
"nginx" to ROLES and its own cases to ROLE_CASES["nginx"].

The positive control runs the same playbook with valid variables in check mode, limited to
the preflight, and shows that it passes: the cases fail for the reason they state.
"""
from __future__ import annotations

import functools

import pytest
import yaml

from tests import helpers

pytestmark = pytest.mark.docker

# The edge roles under test. nginx: add "nginx" here (and its cases to ROLE_CASES).
ROLES = ["caddy"]

# Valid settings each case starts from, so that a case fails only for its own mistake.
VALID = {
    "selfhost_domain": "dify.example.com",
    "selfhost_edge_tls": "acme",
    "selfhost_edge_acme_email": "ops@example.com",
    "selfhost_edge_upstreams": ["127.0.0.1"],
}

# name: (variables replacing VALID's, or None to remove one: {"selfhost_domain": None}),
#       texts the output must contain)
CASES = {
    "domain missing": ({"selfhost_domain": None}, ["selfhost_domain"]),
    "domain localhost": ({"selfhost_domain": "localhost"}, ["selfhost_domain"]),
    "domain given as a URL": ({"selfhost_domain": "https://x"}, ["selfhost_domain"]),
    "domain with an underscore": ({"selfhost_domain": "dify_example"}, ["selfhost_domain"]),
    "bad ACME e-mail": ({"selfhost_edge_acme_email": "ops-at-example"}, ["selfhost_edge_acme_email"]),
    "ACME without e-mail": ({"selfhost_edge_acme_email": None}, ["selfhost_edge_acme_email"]),
    "provided TLS without files": (
        {"selfhost_edge_tls": "provided"},
        ["selfhost_edge_tls_certificate", "selfhost_edge_tls_key"],
    ),
    "provided TLS with missing files": (
        {"selfhost_edge_tls": "provided", "selfhost_edge_tls_certificate": "/nonexistent/cert.pem",
         "selfhost_edge_tls_key": "/nonexistent/key.pem"},
        ["selfhost_edge_tls_certificate", "selfhost_edge_tls_key"],
    ),
    "bad body size": ({"selfhost_edge_client_max_body_size": "100 MB"}, ["selfhost_edge_client_max_body_size"]),
    "ACME directory not a URL": ({"selfhost_edge_acme_directory": "acme.example.com/dir"}, ["selfhost_edge_acme_directory"]),
    "ACME directory over plain HTTP": ({"selfhost_edge_acme_directory": "http://acme.example.com/dir"},
                                       ["selfhost_edge_acme_directory"]),
    "ACME CA root not a file": ({"selfhost_edge_acme_ca_root": "/nonexistent/root.pem"}, ["selfhost_edge_acme_ca_root"]),
    "no upstream": ({"selfhost_edge_upstreams": []}, ["selfhost_edge_upstreams"]),
    "zero rate": ({"selfhost_edge_login_rate_per_minute": 0}, ["selfhost_edge_login_rate_per_minute"]),
}

ROLE_CASES = {
    "caddy": {
        "custom binary without checksum": ({"caddy_artifact_url": "https://example.com/caddy"}, ["caddy_artifact_sha256"]),
        "custom binary not on the controller": (
            {"caddy_artifact_path": "/nonexistent/caddy", "caddy_artifact_sha256": "0" * 64}, ["caddy_artifact_path"]),
        "bad ban time": ({"caddy_login_ban_time": "ten minutes"}, ["caddy_login_ban_time"]),
        "wrong proxy chosen": ({"selfhost_edge_proxy": "nginx"}, ["selfhost_edge_proxy"]),
    },
    # "nginx": {...},
}


def role_cases(role):
    """{case: (variables, expected)} of `role`: the shared cases and its own."""
    return {**CASES, **ROLE_CASES.get(role, {})}


PARAMS = [pytest.param(role, name, id=f"{role}: {name}") for role in ROLES for name in role_cases(role)]


@pytest.fixture(scope="module")
def server():
    with helpers.throwaway_host("edge-preflight", image="selfhost-dify/debian:13") as name:
        yield name


def case_vars(variables):
    """`variables` without those whose value is None."""
    return {k: v for k, v in variables.items() if v is not None}


def write_playbook(workdir, role):
    """A playbook that applies selfhost.dify.<role> to every host of the inventory."""
    playbook = workdir / "playbook.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": f"Apply selfhost.dify.{role}",
        "hosts": "all",
        "gather_facts": True,
        "gather_subset": ["min", "network"],
        "roles": [{"role": f"selfhost.dify.{role}"}],
    }], sort_keys=False))
    return playbook


def apply_role(server, tmp_path, role, variables, *extra):
    """Apply selfhost.dify.<role> over the docker connection, as root, with `variables`
    (a None value leaves the variable out)."""
    host_vars = {"ansible_connection": "community.docker.docker", "ansible_host": server,
                 "ansible_python_interpreter": "/usr/bin/python3", **case_vars(variables)}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"target": host_vars}}}, sort_keys=False))
    return helpers.ansible_playbook(["-i", str(inventory), str(write_playbook(tmp_path, role)), *extra],
                                    env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, timeout=600)


def role_batch(server, workdir, role, cases):
    """selfhost.dify.<role> applied with every case ({case id: variables}) in one run, a host
    each (helpers.RejectionBatch)."""
    cases = {name: case_vars(variables) for name, variables in cases.items()}
    return helpers.RejectionBatch(server, write_playbook(workdir, role), cases, workdir).run()


@pytest.fixture(scope="module")
def rejections(server, tmp_path_factory):
    """role -> the run of all its cases; a role's run starts when its first case asks for it."""
    return functools.cache(lambda role: role_batch(
        server, tmp_path_factory.mktemp(f"{role}-batch"), role,
        {name: {**VALID, **variables} for name, (variables, _expected) in role_cases(role).items()}))


@pytest.mark.parametrize("role, case", PARAMS)
def test_bad_input_fails_before_any_change(rejections, role, case):
    rejections(role).assert_rejected(case, role_cases(role)[case][1])


@pytest.mark.parametrize("role", ROLES)
def test_all_problems_are_reported_at_once(server, tmp_path, role):
    proc = apply_role(server, tmp_path, role, {**VALID, "selfhost_domain": "localhost",
                                               "selfhost_edge_acme_email": "nope",
                                               "selfhost_edge_client_max_body_size": "lots"})
    assert proc.returncode != 0
    failed = [line for line in proc.stdout.splitlines() if line.startswith("fatal: [target]: FAILED! => ")]
    assert len(failed) == 1, proc.stdout[-3000:]
    for name in ("selfhost_domain", "selfhost_edge_acme_email", "selfhost_edge_client_max_body_size"):
        assert name in failed[0], failed[0]


@pytest.mark.parametrize("role", ROLES)
def test_valid_input_passes_the_preflight(server, tmp_path, role):
    before = helpers.fingerprint(server)
    proc = apply_role(server, tmp_path, role, VALID, "--check", "--tags", f"{role}_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert helpers.recap(proc.stdout)["target"]["changed"] == 0
    assert before == helpers.fingerprint(server)
