"""selfhost.dify.s3_bucket against a real SeaweedFS server (tests/integration/seaweedfs_server.py).

The module runs for real, through ansible-playbook on localhost with the project venv's
Python (which has boto3); each test runs one playbook of several steps (every step is
`ignore_errors`, and the ansible.posix.json callback gives each step's result). What the
steps did is then checked as a user would see it: with boto3 and the admin key, and with
unsigned HTTP requests (an anonymous GET answered 403 or 200).
"""
from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
import uuid

import pytest
import yaml

from tests import helpers
from tests.integration.seaweedfs_server import seaweedfs  # noqa: F401  pylint: disable=unused-import

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

# The Python the module runs with on "the host" (localhost): the venv's, which has boto3.
# S3_BUCKET_TEST_PYTHON points it at another one, e.g. with Debian 12's boto3 1.26.
PYTHON = os.environ.get("S3_BUCKET_TEST_PYTHON") or str(helpers.VENV_BIN / "python")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def client(server, key="admin"):
    pair = getattr(server, key)
    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=pair.access_key,
                        aws_secret_access_key=pair.secret_key, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def connection(server, key="admin") -> dict:
    pair = getattr(server, key)
    return {"endpoint_url": server.endpoint, "access_key": pair.access_key, "secret_key": pair.secret_key}


def exists(server, name: str) -> bool:
    try:
        client(server).head_bucket(Bucket=name)
        return True
    except ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise


def anonymous_get(url: str) -> int:
    """HTTP status of an unsigned GET (no credentials at all)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (test URL)
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def play(tmp_path, steps, extra=(), callback="ansible.posix.json"):
    """Run the module once per step, in one playbook. A step is a dict of module args, or
    {"args": {...}, "check": bool, "diff": bool}. Returns (results per step, process)."""
    tasks = []
    for index, step in enumerate(steps):
        args = step["args"] if "args" in step else step
        task = {"name": f"step {index}", "selfhost.dify.s3_bucket": args, "ignore_errors": True}
        if step.get("check"):
            task["check_mode"] = True
        if step.get("diff"):
            task["diff"] = True
        tasks.append(task)
    playbook = tmp_path / f"s3-{uuid.uuid4().hex[:6]}.yml"
    playbook.write_text(yaml.safe_dump([{"name": "s3_bucket", "hosts": "localhost", "gather_facts": False,
                                         "tasks": tasks}], sort_keys=False))
    proc = helpers.ansible_playbook(
        ["-i", "localhost,", "-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={PYTHON}",
         str(playbook), *extra],
        env={"ANSIBLE_STDOUT_CALLBACK": callback, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, timeout=300)
    if callback != "ansible.posix.json":
        return None, proc
    start = proc.stdout.find("{")
    report = json.loads(proc.stdout[start:])
    results = [task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]]
    assert len(results) == len(steps), proc.stdout[-3000:]
    return results, proc


def assert_ok(result, changed):
    assert not result.get("failed"), result
    assert result["changed"] is changed, result


def assert_clear_failure(result, *expected, secret=None):
    """Failed with one clear message holding every `expected` fragment; no traceback."""
    assert result.get("failed"), result
    msg = result["msg"]
    for fragment in expected:
        assert fragment in msg, msg
    text = json.dumps(result)
    # ansible-core 2.19 puts "(traceback unavailable)" into every failed result; a module
    # that crashed would carry its traceback there, or in module_stderr.
    assert result.get("exception", "(traceback unavailable)") == "(traceback unavailable)", text
    assert "Traceback (most recent call last)" not in text and "module_stderr" not in result, text
    if secret:
        assert secret not in text


def test_create_is_idempotent_and_check_mode_changes_nothing(seaweedfs, tmp_path):
    name, other = unique("create"), unique("checkonly")
    args = {**connection(seaweedfs), "name": name}
    results, dummy = play(tmp_path, [
        {"args": args, "check": True, "diff": True},
        args,
        args,
        {"args": args, "check": True, "diff": True},
        {"args": {**connection(seaweedfs), "name": other, "versioning": True}, "check": True},
    ])
    would, created, rerun, check_after, check_only = results
    assert_ok(would, changed=True)
    assert would["bucket"] == {"name": name, "exists": True, "versioning": "Disabled", "policy": None,
                               "lifecycle_rules": []}
    assert would["diff"]["before"]["exists"] is False and would["diff"]["after"]["exists"] is True
    assert_ok(created, changed=True)
    assert created["bucket"]["exists"] is True and created["bucket"]["policy"] is None
    assert_ok(rerun, changed=False)
    assert_ok(check_after, changed=False)
    assert check_after["diff"]["before"] == check_after["diff"]["after"]
    assert exists(seaweedfs, name)
    # check mode on a new name reports the change and creates nothing
    assert_ok(check_only, changed=True)
    assert check_only["bucket"]["versioning"] == "Enabled"
    assert not exists(seaweedfs, other)


def test_diff_output_shows_the_change(seaweedfs, tmp_path):
    name = unique("diff")
    dummy, proc = play(tmp_path, [{**connection(seaweedfs), "name": name, "versioning": True}],
                       extra=["--diff"], callback="default")
    assert "changed: [localhost]" in proc.stdout, proc.stdout
    assert '-    "exists": false' in proc.stdout and '+    "exists": true' in proc.stdout, proc.stdout
    assert '+    "versioning": "Enabled"' in proc.stdout, proc.stdout
    assert seaweedfs.admin.secret_key not in proc.stdout


def test_versioning_enabled_then_suspended(seaweedfs, tmp_path):
    name, fresh = unique("versioning"), unique("unversioned")
    base = {**connection(seaweedfs), "name": name}
    results, dummy = play(tmp_path, [
        {**base, "versioning": True},
        {**base, "versioning": True},
        base,                                   # null: leave as is
        {"args": {**base, "versioning": False}, "check": True},
        {**base, "versioning": False},
        {**base, "versioning": False},
        {**connection(seaweedfs), "name": fresh, "versioning": False},
    ])
    assert_ok(results[0], changed=True)
    assert results[0]["bucket"]["versioning"] == "Enabled"
    assert_ok(results[1], changed=False)
    assert_ok(results[2], changed=False)
    assert results[2]["bucket"]["versioning"] == "Enabled"
    assert_ok(results[3], changed=True)
    assert_ok(results[4], changed=True)
    assert results[4]["bucket"]["versioning"] == "Suspended"
    assert_ok(results[5], changed=False)
    assert client(seaweedfs).get_bucket_versioning(Bucket=name)["Status"] == "Suspended"
    # false on a bucket that never had versioning leaves it unversioned
    assert_ok(results[6], changed=True)
    assert results[6]["bucket"]["versioning"] == "Disabled"
    assert "Status" not in client(seaweedfs).get_bucket_versioning(Bucket=fresh)


def test_policy_private_by_default_and_public_read(seaweedfs, tmp_path):
    name = unique("policy")
    base = {**connection(seaweedfs), "name": name}
    public = {"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"}]}
    # the same policy written differently: a single statement, one-item lists
    public_again = {"Version": "2012-10-17", "Statement": {
        "Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
        "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{name}/*"]}}
    url = f"{seaweedfs.endpoint}/{name}/hello.txt"

    s3 = client(seaweedfs)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="hello.txt", Body=b"hello")
    assert anonymous_get(url) == 403

    results, dummy = play(tmp_path, [
        {**base, "policy": public},
        {**base, "policy": public_again},
    ])
    assert_ok(results[0], changed=True)
    assert results[0]["bucket"]["policy"]["Statement"][0]["Sid"] == "PublicRead"
    assert_ok(results[1], changed=False)
    assert anonymous_get(url) == 200

    results, dummy = play(tmp_path, [{"args": base, "check": True, "diff": True}, base, base])
    assert_ok(results[0], changed=True)
    assert results[0]["diff"]["after"]["policy"] is None
    assert_ok(results[1], changed=True)
    assert results[1]["bucket"]["policy"] is None
    assert_ok(results[2], changed=False)
    assert anonymous_get(url) == 403
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        client(seaweedfs).get_bucket_policy(Bucket=name)


def test_lifecycle_rules_set_changed_removed(seaweedfs, tmp_path):
    name = unique("lifecycle")
    base = {**connection(seaweedfs), "name": name, "versioning": True}
    rules = [{"id": "tmp", "prefix": "tmp/", "expiration_days": 7},
             {"id": "old-versions", "noncurrent_expiration_days": 30}]
    changed_rules = [{"id": "tmp", "prefix": "tmp/", "expiration_days": 3, "status": "Disabled"},
                     {"id": "old-versions", "noncurrent_expiration_days": 30}]
    results, dummy = play(tmp_path, [
        {**base, "lifecycle_rules": rules},
        {**base, "lifecycle_rules": list(reversed(rules))},   # order does not matter
        base,                                                  # null: leave the rules
        {**base, "lifecycle_rules": changed_rules},
        {**base, "lifecycle_rules": []},
        {**base, "lifecycle_rules": []},
    ])
    assert_ok(results[0], changed=True)
    assert results[0]["bucket"]["lifecycle_rules"] == [
        {"id": "old-versions", "prefix": "", "status": "Enabled", "expiration_days": None,
         "noncurrent_expiration_days": 30},
        {"id": "tmp", "prefix": "tmp/", "status": "Enabled", "expiration_days": 7,
         "noncurrent_expiration_days": None},
    ]
    assert_ok(results[1], changed=False)
    assert_ok(results[2], changed=False)
    assert len(results[2]["bucket"]["lifecycle_rules"]) == 2
    assert_ok(results[3], changed=True)
    # the module reads the rules back from the server after a change
    changed = {r["id"]: r for r in results[3]["bucket"]["lifecycle_rules"]}
    assert changed["tmp"]["expiration_days"] == 3 and changed["tmp"]["status"] == "Disabled"
    assert changed["old-versions"]["noncurrent_expiration_days"] == 30
    assert_ok(results[4], changed=True)
    assert results[4]["bucket"]["lifecycle_rules"] == []
    assert_ok(results[5], changed=False)
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        client(seaweedfs).get_bucket_lifecycle_configuration(Bucket=name)


def test_absent_refuses_a_non_empty_bucket_unless_forced(seaweedfs, tmp_path):
    name = unique("absent")
    s3 = client(seaweedfs)
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two"):
        s3.put_object(Bucket=name, Key="doc.txt", Body=body)
    s3.put_object(Bucket=name, Key="dir/other.txt", Body=b"x")
    s3.delete_object(Bucket=name, Key="doc.txt")        # a delete marker over two versions
    empty = unique("empty")
    s3.create_bucket(Bucket=empty)

    base = {**connection(seaweedfs), "name": name, "state": "absent"}
    results, dummy = play(tmp_path, [
        base,
        {"args": {**base, "force": True}, "check": True},
        {**base, "force": True},
        {**base, "force": True},
        {**connection(seaweedfs), "name": empty, "state": "absent"},
    ])
    assert_clear_failure(results[0], f"bucket '{name}' is not empty", "force: true")
    assert_ok(results[1], changed=True)
    assert_ok(results[2], changed=True)
    assert results[2]["bucket"]["exists"] is False
    assert_ok(results[3], changed=False)
    assert_ok(results[4], changed=True)
    assert not exists(seaweedfs, name) and not exists(seaweedfs, empty)


def test_credentials_endpoint_and_input_errors_are_clear(seaweedfs, tmp_path):
    """Wrong credentials, an unreachable endpoint, bad names and bad values: one clear
    message each, no traceback, never the secret."""
    wrong_secret = "Wrong" + uuid.uuid4().hex
    url = f"http://127.0.0.1:{closed_port()}"
    nowhere = {"endpoint_url": url, "access_key": "AKIDEXAMPLE", "secret_key": "not-used-anywhere-0123456789"}
    results, dummy = play(tmp_path, [
        {**connection(seaweedfs), "secret_key": wrong_secret, "name": "dify"},
        {**connection(seaweedfs), "access_key": "NOSUCHKEY" + uuid.uuid4().hex[:8].upper(), "name": "dify"},
        {**nowhere, "name": "dify", "timeout": 3},
        # refused before any request: the endpoint is not even reachable
        {**nowhere, "name": "Bad_Name"},
        {**nowhere, "name": "ab"},
        {**nowhere, "name": "dify", "lifecycle_rules": [{"id": "x", "expiration_days": 0}]},
        {**nowhere, "name": "dify", "policy": "public"},
    ])
    assert_clear_failure(results[0], f"the endpoint {seaweedfs.endpoint} rejected the credentials",
                         "SignatureDoesNotMatch", secret=wrong_secret)
    assert_clear_failure(results[1], "rejected the credentials", "InvalidAccessKeyId")
    assert_clear_failure(results[2], f"cannot reach the S3 endpoint {url}")
    assert_clear_failure(results[3], "name 'Bad_Name' is not a valid S3 bucket name", "uppercase letters", "'_'")
    assert_clear_failure(results[4], "name 'ab' is not a valid S3 bucket name", "2 characters long")
    assert_clear_failure(results[5], "expiration_days must be at least 1")
    assert_clear_failure(results[6], "policy must be 'private' or a policy document")


def test_limited_key_cannot_touch_another_bucket(seaweedfs, tmp_path):
    other = unique("other")
    client(seaweedfs).create_bucket(Bucket=other)
    newname = unique("newbucket")
    admin = {**connection(seaweedfs), "name": "dify"}
    limited = connection(seaweedfs, "limited")
    results, dummy = play(tmp_path, [
        admin,                                               # the admin creates Dify's bucket
        {**limited, "name": "dify"},                         # its own bucket: readable, nothing to do
        {**limited, "name": newname},                        # create another: refused
        {**limited, "name": other, "state": "absent"},       # delete another: refused
        {**limited, "name": "dify", "versioning": True},     # the limited key may not change dify...
    ])
    assert_ok(results[0], changed=results[0]["changed"])
    assert_ok(results[1], changed=False)
    assert results[1]["bucket"]["exists"] is True
    assert_clear_failure(results[2], "access denied for HeadBucket", repr(newname))
    assert_clear_failure(results[3], "access denied for HeadBucket", repr(other))
    assert not exists(seaweedfs, newname)
    assert exists(seaweedfs, other)
    # ...except what SeaweedFS counts as Write on it (PutBucketVersioning is one).
    assert_ok(results[4], changed=True)


def test_the_test_server_listens_on_loopback_only(seaweedfs):
    """The SeaweedFS fixture opens nothing beyond 127.0.0.1 (TCP or UDP)."""
    out = helpers.run(["ss", "-Hlntup"]).stdout
    mine = [line for line in out.splitlines() if f"pid={seaweedfs.pid}," in line]
    assert mine, out
    local = [line.split()[4] for line in mine]
    assert all(address.startswith("127.0.0.1:") for address in local), mine
    assert f"127.0.0.1:{seaweedfs.ports['s3']}" in local
