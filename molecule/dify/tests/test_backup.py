"""Behaviour of selfhost.dify.backup on the converged Dify host.

dify-debian13 holds PostgreSQL, Redis, SeaweedFS (Dify's bucket) and Dify's project directory,
so its backup holds all four. Its restic repository is on S3: the bucket `backups` of the same
SeaweedFS (molecule.yml, converge.yml). What is tested is what an operator sees: the service
succeeds and says so in its status file, the snapshot lists the dumps, the Redis snapshot, the
bucket's objects (with the per-tenant keys under privkeys/) and the project directory, a second
run is refused while one holds the lock, and a dump restored from the snapshot is readable by
pg_restore.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import helpers  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = helpers.ansible_inventory(helpers.molecule_inventory())
HOST = next(h for h in INVENTORY["_meta"]["hostvars"] if h.endswith("debian13"))
HOSTVARS = INVENTORY["_meta"]["hostvars"][HOST]
testinfra_hosts = [f"docker://{HOST}"]

STATUS = "/var/lib/selfhost-backup/status.json"
STAGING = f"/var/backups/selfhost/staging/{HOST}"
PROJECT = "/opt/dify"
LOCK = "/run/lock/selfhost-backup.lock"
PROBE_KEY = "backup-probe/object.txt"

S3 = r"""
import json, sys, boto3
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:8333", region_name="us-east-1",
                  aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2])
if sys.argv[3] == "put":
    s3.put_object(Bucket="dify", Key=sys.argv[4], Body=b"backed up")
else:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="dify", Prefix=sys.argv[4])
    print(json.dumps([o["Key"] for page in pages for o in page.get("Contents", [])]))
"""


def sh(*cmd: str, check: bool = True):
    return helpers.docker("exec", HOST, *cmd, check=check)


def s3(action: str, key: str) -> str:
    return sh("python3", "-c", S3, HOSTVARS["selfhost_object_storage_access_key"],
              HOSTVARS["selfhost_object_storage_secret_key"], action, key).stdout


def status() -> dict:
    return json.loads(sh("cat", STATUS).stdout)


def test_the_backup_service_succeeds_and_says_so():
    s3("put", PROBE_KEY)
    proc = sh("systemctl", "start", "selfhost-backup.service", check=False)
    assert proc.returncode == 0, sh("journalctl", "-u", "selfhost-backup", "--no-pager", "-n", "60").stdout
    result = status()
    assert result["result"] == "ok", result
    assert result["snapshot"] and result["size"] > 0
    assert set(result["holds"]) == {"postgresql", "redis", "object_storage", "dify"}
    # The staging copies are gone after a success.
    assert sh("find", STAGING, "-mindepth", "1").stdout.strip() == ""
    # The timer is there for the nightly run.
    assert sh("systemctl", "is-enabled", "selfhost-backup.timer").stdout.strip() == "enabled"


def test_the_snapshot_holds_everything_the_host_holds():
    snapshot = status()["snapshot"]
    # restic reads its password from the root-only file (the wrapper loads the job's environment).
    listing = set(sh("selfhost-backup", "restic", "ls", snapshot).stdout.splitlines())
    for path in (f"{STAGING}/postgresql/dify.dump", f"{STAGING}/postgresql/dify_plugin.dump",
                 f"{STAGING}/postgresql/globals.sql", f"{STAGING}/redis/dump.rdb",
                 f"{STAGING}/bucket/{PROBE_KEY}", f"{PROJECT}/.env", f"{PROJECT}/.secrets/keys.json",
                 f"{PROJECT}/.state/migrated-version", f"{PROJECT}/compose.yaml"):
        assert path in listing, f"{path} is not in snapshot {snapshot}"
    # Every per-tenant key Dify wrote to its bucket is in the snapshot.
    for key in json.loads(s3("list", "privkeys/")):
        assert f"{STAGING}/bucket/{key}" in listing, key
    snapshots = json.loads(sh("selfhost-backup", "restic", "snapshots", "--json").stdout)
    assert {"selfhost", HOST, "postgresql", "redis", "object_storage", "dify"} <= set(snapshots[-1]["tags"])


def test_the_password_is_in_no_process_argument_or_world_readable_file():
    mode = sh("stat", "-c", "%a %U", "/etc/selfhost-backup/env", "/etc/selfhost-backup/restic-password").stdout
    assert mode.split("\n") == ["600 root", "600 root"]
    unit = sh("systemctl", "cat", "selfhost-backup.service").stdout
    assert HOSTVARS["backup_password"] not in unit and "EnvironmentFile=/etc/selfhost-backup/env" in unit


def test_a_second_run_is_refused_while_one_holds_the_lock():
    before = sh("cat", STATUS).stdout
    proc = sh("flock", LOCK, "/usr/local/sbin/selfhost-backup", check=False)
    assert proc.returncode != 0
    assert "another run holds the lock" in proc.stderr
    # The refused run leaves the status of the running one alone.
    assert sh("cat", STATUS).stdout == before


def test_a_dump_restored_from_the_snapshot_is_readable():
    target = "/var/backups/selfhost/restore-test"
    sh("rm", "-rf", target)
    sh("selfhost-backup", "restic", "restore", "latest", "--host", HOST, "--target", target,
       "--include", f"{STAGING}/postgresql/dify.dump")
    try:
        listing = sh("pg_restore", "--list", f"{target}{STAGING}/postgresql/dify.dump").stdout
        assert "TABLE DATA public accounts" in listing
        assert "EXTENSION - vector" in listing
    finally:
        sh("rm", "-rf", target)


def test_backup_health_passes_after_the_backup():
    proc = helpers.ansible_playbook(["-i", helpers.molecule_inventory(), str(helpers.ROOT / "playbooks" / "health.yml"),
                                     "--tags", "backup"], check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Backup ok: snapshot" in proc.stdout
