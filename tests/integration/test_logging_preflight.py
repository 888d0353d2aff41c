"""selfhost.dify.logging refuses bad input before it changes anything.

One fresh bare server (a systemd container of the Debian 13 image) serves the whole module,
in the groups `logging` (Loki) and, as every host, gets a shipper. Every case applies the role
with one kind of mistake through the docker connection and asserts that the run fails, that the
output names the variable at fault, and that the host's configuration state (files under /etc
and /usr/local with their modes and owners, and the dpkg status) is exactly what it was before.

The cases share one ansible-playbook run (helpers.RejectionBatch): each is an inventory host of
its own, pointing at the server and carrying the case's variables, and each test reads its
host's part of the output.

The positive control runs the same playbook with valid variables in check mode, limited to the
preflight, and shows that it passes: the cases fail for the reason they state.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests import helpers

pytestmark = pytest.mark.docker

PLAYBOOK = helpers.ROOT / "tests" / "integration" / "playbooks" / "logging.yml"
CACHE = Path(os.environ.get("SELFHOST_CACHE_DIR") or Path.home() / ".cache" / "selfhost-dify")
LOKI_ZIP = CACHE / "artifacts" / "loki-linux-amd64-3.6.15.zip"
LOKI_SHA256 = "01c1750308cc16dd683048486861c175a6fd8715dee6dba780816816a477090e"
PROMTAIL_ZIP = CACHE / "artifacts" / "promtail-linux-amd64-3.6.15.zip"
PROMTAIL_SHA256 = "d4d2393165137c70308f079925dfef3120956b4b985a03b9995707d7188ac791"
# Valid settings each case starts from, so that a case fails only for its own mistake. The
# controller files need only exist for the preflight (it hashes them): where the cache lacks the
# release zips, small stand-ins with their own checksums are written.
VALID = {
    "logging_shipper": "promtail",
    "logging_loki_artifact_path": str(LOKI_ZIP),
    "logging_loki_artifact_sha256": LOKI_SHA256,
    "logging_promtail_artifact_path": str(PROMTAIL_ZIP),
    "logging_promtail_artifact_sha256": PROMTAIL_SHA256,
}


@pytest.fixture(scope="module")
def server():
    with helpers.throwaway_host("logging-preflight", image="selfhost-dify/debian:13") as name:
        yield name


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """VALID, with stand-ins for the release zips when the cache does not hold them."""
    import hashlib  # pylint: disable=import-outside-toplevel
    values = dict(VALID)
    for key, path in (("logging_loki_artifact", LOKI_ZIP), ("logging_promtail_artifact", PROMTAIL_ZIP)):
        if not path.is_file():
            stand_in = tmp_path_factory.mktemp("artifacts") / path.name
            stand_in.write_bytes(b"stand-in for " + path.name.encode())
            values[key + "_path"] = str(stand_in)
            values[key + "_sha256"] = hashlib.sha256(stand_in.read_bytes()).hexdigest()
    return values


def apply_role(server, tmp_path, variables, *extra):
    inventory = {"all": {"hosts": {"target": {"ansible_python_interpreter": "/usr/bin/python3",
                                              "ansible_connection": "community.docker.docker",
                                              "ansible_host": server, **variables}},
                         "children": {"logging": {"hosts": {"target": {}}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return helpers.ansible_playbook(["-i", str(path), str(PLAYBOOK), *extra],
                                    env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, timeout=600)


UNSET = object()

CASES = {
    "unknown shipper": (
        {"logging_shipper": "fluentd"},
        ["logging_shipper"],
    ),
    "unknown storage": (
        {"logging_loki_storage": "gcs"},
        ["logging_loki_storage"],
    ),
    "retention in hours": (
        {"logging_loki_retention_period": "30h"},
        ["logging_loki_retention_period: 30h is not a number of whole days or weeks"],
    ),
    "retention that is not a duration": (
        {"logging_loki_retention_period": "a month"},
        ["logging_loki_retention_period: a month is not a number of whole days or weeks"],
    ),
    "old-sample age that is not a duration": (
        {"logging_loki_reject_old_samples_max_age": "7 days"},
        ["logging_loki_reject_old_samples_max_age: 7 days is not a duration"],
    ),
    "port out of range": (
        {"logging_loki_port": 70000},
        ["logging_loki_port: 70000 is outside 1-65535"],
    ),
    "grpc port equal to the http port": (
        {"logging_loki_grpc_port": 3100},
        ["logging_loki_grpc_port: must differ from logging_loki_port"],
    ),
    "artifact without sha256": (
        {"logging_loki_artifact_sha256": UNSET},
        ["logging_loki_artifact_sha256"],
    ),
    "artifact with a wrong sha256": (
        {"logging_promtail_artifact_sha256": "0" * 64},
        ["logging_promtail_artifact_path", "is not logging_promtail_artifact_sha256"],
    ),
    "artifact by URL and by path at once": (
        {"logging_loki_artifact_url": "https://mirror.example.com/loki-linux-amd64.zip"},
        ["logging_loki_artifact_url / logging_loki_artifact_path: set only one"],
    ),
    "artifact URL that is not a URL": (
        {"logging_loki_artifact_path": UNSET, "logging_loki_artifact_url": "mirror/loki.zip"},
        ["logging_loki_artifact_url"],
    ),
    "apt key fingerprint that is not one": (
        {"logging_loki_artifact_path": UNSET, "logging_loki_artifact_sha256": UNSET,
         "logging_grafana_apt_key_fingerprint": "grafana"},
        ["logging_grafana_apt_key_fingerprint"],
    ),
    "listen address that is not an IP": (
        {"logging_loki_listen_address": "loki.internal"},
        ["logging_loki_listen_address"],
    ),
    "env label with spaces": (
        {"logging_env": "my prod"},
        ["logging_env: my prod is not a label value"],
    ),
    "s3 prefix with a slash": (
        {"logging_loki_storage": "s3", "logging_loki_s3_prefix": "logs/loki"},
        ["logging_loki_s3_prefix: logs/loki may hold only letters, digits and dashes"],
    ),
}


def case_vars(valid, variables):
    merged = {**valid, **variables}
    return {k: v for k, v in merged.items() if v is not UNSET}


@pytest.fixture(scope="module")
def rejections(server, valid, tmp_path_factory):
    """Every case in one run, a host each (helpers.RejectionBatch), each host in the logging group."""
    cases = {name: case_vars(valid, variables) for name, (variables, _expected) in CASES.items()}
    return helpers.RejectionBatch(server, PLAYBOOK, cases, tmp_path_factory.mktemp("logging-batch"),
                                  groups=["logging"]).run()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_fails_before_any_change(rejections, case):
    rejections.assert_rejected(case, CASES[case][1])


def test_valid_input_passes_the_preflight(server, valid, tmp_path):
    before = helpers.fingerprint(server)
    proc = apply_role(server, tmp_path, valid, "--check", "--tags", "logging_preflight")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "TASK [selfhost.dify.logging : Preflight | Stop before any change if a check failed]" in proc.stdout
    assert helpers.recap(proc.stdout)["target"]["changed"] == 0
    assert before == helpers.fingerprint(server)
