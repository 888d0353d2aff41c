"""selfhost.dify.dify refuses bad input before it changes anything.

One fresh bare server (a systemd container of the Debian 13 image) serves the whole
module. It is the single-node layout: the one host is in the groups postgresql, redis,
object_storage and dify, so the role finds its data services (and their credentials) there.
Every case applies the role with one kind of mistake through the docker connection and
asserts that the run fails, that the output names the variable at fault (and never shows a
secret), and that the host's configuration state (files under /etc and /usr/local with
their modes and owners, and the dpkg status) is exactly what it was before.

The cases share one ansible-playbook run (helpers.RejectionBatch): each is an inventory host of
its own, pointing at the server and carrying the case's variables, and each test reads its
host's part of the output. The cases that change a data service's setting run alone: the role
reads those from the first host of the group, which in a shared run is another case's host.

The positive controls run the same playbook with valid variables in check mode, limited
to the preflight, and show that it passes: the cases fail for the reason they state.
"""
from __future__ import annotations

import json

import pytest
import yaml

from tests import helpers

pytestmark = pytest.mark.docker

PLAYBOOK = helpers.ROOT / "tests" / "integration" / "playbooks" / "dify.yml"
# The single-node layout: the one host serves Dify and each of its data services.
GROUPS = ("postgresql", "redis", "object_storage", "dify")
# The releases the role knows, as the message of an unknown one must list them.
RELEASES = sorted(yaml.safe_load((helpers.ROOT / "roles" / "dify" / "vars" / "main.yml").read_text())["dify__releases"])
# Valid settings each case starts from, so that a case fails only for its own mistake.
# Test-only values.
VALID = {
    "selfhost_domain": "dify.preflight.test",
    "dify_admin_email": "admin@preflight.test",
    "dify_admin_password": "test-only-Admin-7q2w9e4r",
    # The data services' credentials, given to their roles on the same host.
    "postgresql_dify_password": "test-only-pg-5b8e1d7c3a90",
    "redis_dify_password": "test-only-redis-c4a91f0e6d27",
    "selfhost_object_storage_access_key": "test-only-s3-dify-key",
    "selfhost_object_storage_secret_key": "test-only-s3-secret-8d2f6a1c",
}
SECRETS = tuple(v for k, v in VALID.items() if k not in ("selfhost_domain", "dify_admin_email"))
# Secrets the cases use, wrong for another reason than being known.
SHORT = "Sh0rt-but-r4nd"
NO_DIGIT = "Correct-Horse-Battery-Staple"
QUOTED = "test-only-redis-'quoted'-5e7d1c"
SPACED = "test-only-pg with-a-space-9d4e"
LONG_INIT = "test-only-init-7c1e9a3f5b2d8e4f6a0b"
HIDDEN = (*SECRETS, SHORT, NO_DIGIT, QUOTED, SPACED, LONG_INIT)
SHA256 = "0" * 64


@pytest.fixture(scope="module")
def server():
    with helpers.throwaway_host("dify-preflight", image="selfhost-dify/debian:13") as name:
        yield name


def apply_role(server, tmp_path, variables, *extra):
    """Apply the role to the one host `target` (the container, over the docker connection),
    member of every group the role reads: postgresql, redis, object_storage and dify."""
    inventory = {"all": {"hosts": {"target": {"ansible_python_interpreter": "/usr/bin/python3",
                                              "ansible_connection": "community.docker.docker",
                                              "ansible_host": server, **variables}},
                         "children": {group: {"hosts": {"target": {}}} for group in GROUPS}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    # JSON results keep each message on one line (the YAML format wraps long ones).
    return helpers.ansible_playbook(["-i", str(path), str(PLAYBOOK), *extra],
                                    env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, timeout=600)


# A case value that removes the variable from the valid settings.
UNSET = object()
# A case value that stands for a file on the controller (an image archive the case writes).
ARCHIVE = "<an archive file on the controller>"


def case_vars(variables, tmp_path):
    """VALID with the case's variables on top (UNSET removes one, ARCHIVE becomes a real file)."""
    archive = tmp_path / "dify-images.tar"
    archive.write_bytes(b"not really an image archive; the preflight only checks that it exists\n")

    def resolve(value):
        if value == ARCHIVE:
            return str(archive)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    merged = {**VALID, **variables}
    return {k: resolve(v) for k, v in merged.items() if v is not UNSET}


CASES = {
    "missing admin password": (
        {"dify_admin_password": UNSET},
        ["dify_admin_password: is missing: set it in the inventory"],
    ),
    "sample admin password": (
        {"dify_admin_password": "difyai123456"},
        ["dify_admin_password: is a published sample or default value"],
    ),
    "short admin password": (
        {"dify_admin_password": SHORT},
        ["dify_admin_password: is too short (14 characters; at least 16)"],
    ),
    "admin password without a digit (Dify's rule)": (
        {"dify_admin_password": NO_DIGIT},
        ["dify_admin_password: Dify requires at least 8 characters with a letter and a digit"],
    ),
    "admin e-mail that is not one": (
        {"dify_admin_email": "admin-at-preflight.test"},
        ["dify_admin_email: 'admin-at-preflight.test' is not an e-mail address"],
    ),
    "admin name over 30 characters": (
        {"dify_admin_name": "A" * 31},
        ["dify_admin_name: must be 1 to 30 characters"],
    ),
    "missing domain": (
        {"selfhost_domain": UNSET},
        ["selfhost_domain: is missing"],
    ),
    "domain that is an IP": (
        {"selfhost_domain": "192.0.2.10"},
        ["selfhost_domain: '192.0.2.10' is not a fully qualified domain name"],
    ),
    "unknown release": (
        {"dify_version": "0.9.9"},
        ["dify_version: 0.9.9 is not a release this collection knows (%s)" % ", ".join(RELEASES)],
    ),
    "image archives: none given": (
        {"dify_image_source": "archive"},
        ["dify_image_archives: archive needs at least one {path, sha256}"],
    ),
    "image archive without sha256": (
        {"dify_image_source": "archive", "dify_image_archives": [{"path": ARCHIVE}]},
        ["dify_image_archives: ", "dify-images.tar needs its sha256 (64 hex digits)"],
    ),
    "image archive that is not on the controller": (
        {"dify_image_source": "archive",
         "dify_image_archives": [{"path": "/nonexistent/dify-images.tar", "sha256": SHA256}]},
        ["dify_image_archives: /nonexistent/dify-images.tar is not a file on the controller"],
    ),
    "image for an unknown service": (
        {"dify_images": {"nginx": "nginx:latest"}},
        ["dify_images: nginx is not a service (api, web, sandbox, plugin_daemon, ssrf_proxy)"],
    ),
    "registry mirror without a trailing slash": (
        {"dify_registry_mirror": "mirror.preflight.test"},
        ['dify_registry_mirror: must end with "/"'],
    ),
    "Dify's sample database password": (
        {"postgresql_dify_password": "difyai123456"},
        ["dify_db_password (postgresql_dify_password): is a published sample or default value"],
    ),
    "Redis password with a single quote": (
        {"redis_dify_password": QUOTED},
        ["dify_redis_password (redis_dify_password): may not contain a single quote or a line break"],
    ),
    "database password with a space (the plugin daemon's libpq string cannot carry it)": (
        {"postgresql_dify_password": SPACED},
        ["dify_db_password (postgresql_dify_password): may not contain a space, a quote or a backslash"],
    ),
    "database password with a backslash": (
        {"postgresql_dify_password": "test-only-pg-back\\slash-3c8e"},
        ["dify_db_password (postgresql_dify_password): may not contain a space, a quote or a backslash"],
    ),
    "the contract double playing Dify's api": (
        {"dify_contract_double_services": ["api"]},
        ["dify_contract_double_services", "api"],
    ),
    "init password over 30 characters": (
        {"dify_init_password": LONG_INIT},
        ["dify_init_password: Dify accepts at most 30 characters"],
    ),
    "SMTP mail without a server": (
        {"dify_mail_type": "smtp", "dify_mail_default_send_from": "dify@preflight.test"},
        ["dify_smtp_server: "],
    ),
    "wrong type: admin_create maybe": (
        {"dify_admin_create": "maybe"},
        ["dify_admin_create", "bool"],
    ),
    "wrong type: images as a list": (
        {"dify_images": ["langgenius/dify-api:1.13.3"]},
        ["dify_images", "dict"],
    ),
}


# The role reads the data services' settings (postgresql_*, redis_*) from the first host of their
# group, not from the host it runs on: in a batch, another case's host. The cases that change
# one of them run alone, on the one host `target`; the others in one run (helpers.RejectionBatch).
ALONE = [name for name, (variables, _expected) in CASES.items()
         if any(key.startswith(("postgresql_", "redis_")) for key in variables)]


@pytest.fixture(scope="module")
def rejections(server, tmp_path_factory):
    """The cases but ALONE in one run, a host each, each host in every group of GROUPS."""
    workdir = tmp_path_factory.mktemp("dify-batch")
    cases = {name: case_vars(variables, workdir) for name, (variables, _expected) in CASES.items()
             if name not in ALONE}
    return helpers.RejectionBatch(server, PLAYBOOK, cases, workdir, groups=GROUPS).run()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_fails_before_any_change(request, server, tmp_path, case):
    variables, expected = CASES[case]
    # (difyai123456 is public and quoted in the role's documentation, so it is not checked.)
    if case in ALONE:
        helpers.assert_rejected_unchanged(server, lambda: apply_role(server, tmp_path, case_vars(variables, tmp_path)),
                                          expected, hidden=HIDDEN)
    else:
        request.getfixturevalue("rejections").assert_rejected(case, expected, hidden=HIDDEN)


def test_all_problems_are_reported_at_once(server, tmp_path):
    """Several mistakes: one failed run lists each of them, naming each variable."""
    proc = apply_role(server, tmp_path, case_vars({"dify_version": "0.9.9", "selfhost_domain": "10.0.0.1",
                                                   "dify_admin_email": "nobody", "dify_registry_mirror": "mirror"},
                                                  tmp_path))
    assert proc.returncode != 0
    failed = [json.loads(line.split("=> ", 1)[1]) for line in proc.stdout.splitlines()
              if line.startswith("fatal: [target]: FAILED! => ")]
    assert len(failed) == 1, proc.stdout[-3000:]
    messages = failed[0]["msg"]
    assert messages[0].startswith("selfhost.dify.dify preflight: nothing was changed")
    named = [m.split(":", 1)[0] for m in messages[1:]]
    assert named == ["dify_version", "selfhost_domain", "dify_admin_email", "dify_registry_mirror"]
    for secret in HIDDEN:
        assert secret not in proc.stdout


VALID_MORE = {
    # Images from archives (the preflight checks the controller's file and the checksum's
    # form; the images task compares the checksum), one image replaced.
    "dify_image_source": "archive",
    "dify_image_archives": [{"path": ARCHIVE, "sha256": "sha256:" + SHA256}],
    "dify_images": {"ssrf_proxy": "selfhost-dify/squid:trixie"},
    # Mail through an SMTP server.
    "dify_mail_type": "smtp",
    "dify_smtp_server": "smtp.preflight.test",
    "dify_smtp_port": 465,
    "dify_smtp_use_tls": True,
    "dify_mail_default_send_from": "dify@preflight.test",
    # An intranet network workflows may reach through the SSRF proxy; keys chosen by hand.
    "dify_ssrf_proxy_allowed_networks": ["10.20.0.0/16"],
    "dify_init_password": "test-only-init-4b7e2c9a1f",
    "dify_secret_key": "test-only-secret-key-0c5d8b3e7a",
    "dify_plugin_debugging_address": "10.8.0.1",
    # URL characters in the database and Redis passwords: Dify and this role quote them.
    "postgresql_dify_password": "test-only-pg@:/%#?&+5b8e1d7c",
    "redis_dify_password": "test-only-redis@:/%#?&+c4a91f",
}


@pytest.mark.parametrize("more", [{}, VALID_MORE], ids=["defaults", "archives, mail, keys and networks set"])
def test_valid_input_passes_the_preflight(server, tmp_path, more):
    before = helpers.fingerprint(server)
    proc = apply_role(server, tmp_path, case_vars(more, tmp_path), "--check", "--tags", "dify_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "TASK [selfhost.dify.dify : Preflight | Stop before any change if a check failed]" in proc.stdout
    assert helpers.recap(proc.stdout)["target"]["changed"] == 0
    assert before == helpers.fingerprint(server)
    for secret in (*SECRETS, *(v for k, v in more.items() if k in ("dify_init_password", "dify_secret_key"))):
        assert secret not in proc.stdout
