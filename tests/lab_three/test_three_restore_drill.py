"""The restore drill on the three-host lab, as README tells a user to run it: data in Dify, a
backup (playbooks/backup-now.yml), data1 and app1 lost with their disks, fresh hosts converged
from the same inventory, playbooks/restore.yml, and everything back as it was.

The lab's backups live on its backups volume (mounted at /var/backups/selfhost on every host,
like a backup share that outlives the machines): destroying hosts keeps it.

Runs last in tests/lab_three (conftest.py orders it so): it replaces two of the lab's hosts.
The tests depend on each other in file order; `DRILL` carries what one step leaves the next.
Reports "restore drill: RTO <s> s, RPO <s> s" in the terminal summary, in
tests/output/restore-drill.txt and as junit properties.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import time
import uuid

import pytest

from tests import edge_kit
from tests.helpers import ansible_playbook, changed_tasks, dify_console, docker, lab as lab_script, recap, run
from tests.lab.conftest import load_lab
from tests.lab_three.conftest import NAME
from tests.lab_three.test_three_hosts import CA_IN_CLIENT, admin, edge_ca, on_app

pytestmark = [pytest.mark.lab, pytest.mark.docker]

DRILL: dict = {}
PROJECT = "/opt/dify"
KEYS = f"{PROJECT}/.secrets/keys.json"
BACKUP_STATUS = "/var/lib/selfhost-backup/status.json"
APP_NAME = "restore-drill"
VECTOR_DIM = 16
VECTOR_ROWS = 400
PROBE_VECTOR = "[" + ",".join(f"{(i * 37 % 100) / 100:.2f}" for i in range(VECTOR_DIM)) + "]"


def step(name: str):
    """What an earlier step of the drill left; fails (never skips) when that step did not finish."""
    if name not in DRILL:
        pytest.fail(f"the drill stopped before this step: {name!r} is missing")
    return DRILL[name]


# -- PostgreSQL on data1, as the Dify role (its password from the lab's inventory, in the
# environment of `docker exec`, never on a command line) -------------------------------------

def psql(three, database: str, sql: str) -> str:
    password = (three.inventory / ".credentials" / "postgresql_dify_password").read_text().split()[0]
    proc = run(["docker", "exec", "-i", "-e", "PGPASSWORD", three.container("data1"),
                "psql", "-h", "127.0.0.1", "-U", "dify", "-d", database, "-X", "-q", "-A", "-t",
                "-v", "ON_ERROR_STOP=1", "-f", "-"],
               input="SET client_min_messages = warning;\n" + sql, env={"PGPASSWORD": password}, check=False)
    assert proc.returncode == 0, f"psql on {database} failed:\n{proc.stdout[-3000:]}"
    return proc.stdout.strip()


TABLE_COUNTS = """
SELECT coalesce(json_object_agg(name, rows ORDER BY name), '{}') FROM (
  SELECT format('%I.%I', schemaname, tablename) AS name,
         (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', schemaname, tablename),
                                               false, true, '')))[1]::text::bigint AS rows
  FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')) t;
"""
# Tables whose every row must come back as it was (row text, ordered).
CHECKSUMMED = {"dify": ["accounts", "tenants", "apps", "upload_files", "drill_vectors"],
               "dify_plugin": ["drill_marks"]}
VECTOR_TABLE = f"""
DROP TABLE IF EXISTS drill_vectors;
CREATE TABLE drill_vectors (id integer PRIMARY KEY, embedding vector({VECTOR_DIM}) NOT NULL);
SELECT setseed(0.42);
INSERT INTO drill_vectors
  SELECT i, (SELECT array_agg(random()) FROM generate_series(1, {VECTOR_DIM}) WHERE i > 0)::vector({VECTOR_DIM})
  FROM generate_series(1, {VECTOR_ROWS}) AS i;
CREATE INDEX drill_vectors_hnsw ON drill_vectors USING hnsw (embedding vector_l2_ops);
"""
PLUGIN_TABLE = """
DROP TABLE IF EXISTS drill_marks;
CREATE TABLE drill_marks (id integer PRIMARY KEY, mark text NOT NULL);
INSERT INTO drill_marks SELECT i, md5(i::text) FROM generate_series(1, 250) AS i;
"""
NEAREST = f"""
SET enable_seqscan = off;
SELECT json_build_object(
  'ids', (SELECT json_agg(id) FROM (SELECT id FROM drill_vectors
                                    ORDER BY embedding <-> '{PROBE_VECTOR}' LIMIT 5) n));
"""
NEAREST_PLAN = f"""
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM drill_vectors ORDER BY embedding <-> '{PROBE_VECTOR}' LIMIT 5;
"""


def database_state(three) -> dict:
    state = {}
    for database, tables in CHECKSUMMED.items():
        state[database] = {
            "counts": json.loads(psql(three, database, TABLE_COUNTS)),
            "checksums": {t: psql(three, database, f"SELECT md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text),"
                                                   f" '')) FROM {t} r;") for t in tables},
        }
    state["hnsw"] = psql(three, "dify", "SELECT indexdef FROM pg_indexes WHERE indexname = 'drill_vectors_hnsw';")
    state["nearest"] = json.loads(psql(three, "dify", NEAREST).splitlines()[-1])["ids"]
    state["nearest_plan"] = psql(three, "dify", NEAREST_PLAN)
    return state


# -- the Dify bucket, read on app1 with Dify's own key (the api container's environment) ------

BUCKET_SCRIPT = r'''
import hashlib, json, os, sys
import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name=os.environ.get("S3_REGION") or None,
                  aws_access_key_id=os.environ["S3_ACCESS_KEY"], aws_secret_access_key=os.environ["S3_SECRET_KEY"],
                  config=Config(s3={"addressing_style": "path"}))
bucket, objects = os.environ["S3_BUCKET_NAME"], {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    for o in page.get("Contents", []):
        objects[o["Key"]] = {"size": o["Size"], "etag": o["ETag"]}
digest = {}
for key in sys.argv[1:]:
    digest[key] = hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
print(json.dumps({"objects": objects, "sha256": digest}))
'''


def bucket(three, *keys: str) -> dict:
    proc = run([*on_app(three), "docker", "compose", "--project-directory", PROJECT, "exec", "-T", "api",
                "python", "-", *keys], input=BUCKET_SCRIPT, check=False, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"listing the bucket failed:\n{proc.stdout[-3000:]}"
    return json.loads(lines[-1])


def dify_keys(three) -> dict:
    return json.loads(run([*on_app(three), "cat", KEYS]).stdout)


# -- the console through the edge, over HTTPS, from a host outside the site -----------------

def through_edge(three, outsider) -> tuple[list[str], str]:
    """How tests/dify_console.py reaches Dify as a browser does: https://<domain>/ resolved to
    the edge on edge1, verified against the edge's CA."""
    edge_kit.put_file(outsider, CA_IN_CLIENT, edge_ca(three))
    domain = three.hostvars["edge1"]["selfhost_domain"]
    docker("exec", outsider, "sh", "-c",
           f"grep -v ' {domain}$' /etc/hosts > /tmp/hosts.new; echo '{three.address('edge1')} {domain}' "
           f">> /tmp/hosts.new; cat /tmp/hosts.new > /etc/hosts")
    return ["docker", "exec", "-i", "-e", f"SSL_CERT_FILE={CA_IN_CLIENT}", outsider], f"https://{domain}"


def signed_file_path(file_id: str, secret_key: str) -> str:
    """Dify's signed download path of an upload (/files/<id>/file-preview), signed with the
    SECRET_KEY the site had before the disaster: it opens only if that key came back."""
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
    sign = hmac.new(secret_key.encode(), f"file-preview|{file_id}|{timestamp}|{nonce}".encode(), hashlib.sha256)
    return (f"/files/{file_id}/file-preview?timestamp={timestamp}&nonce={nonce}"
            f"&sign={base64.urlsafe_b64encode(sign.digest()).decode()}")


def edge_of(three, outsider) -> edge_kit.Edge:
    return edge_kit.Edge(outsider, three.hostvars["edge1"]["selfhost_domain"], three.address("edge1"), CA_IN_CLIENT)


# -- the drill --------------------------------------------------------------------------------

def test_data_in_every_store(three, outsider):
    """The administrator signs in through the edge, creates an app and uploads a file; a
    pgvector table with an HNSW index in the dify database and a table in dify_plugin."""
    email, password = admin(three)
    on_client, url = through_edge(three, outsider)
    text = "restore drill\n" + "\n".join(hashlib.sha256(os.urandom(16)).hexdigest() for _line in range(200)) + "\n"
    seed = dify_console(on_client, url, "seed", email=email, password=password, name=APP_NAME, text=text)
    assert seed["login_status"] == 200 and seed["app_status"] == 201 and seed["upload_status"] == 201, seed
    psql(three, "dify", VECTOR_TABLE)
    psql(three, "dify_plugin", PLUGIN_TABLE)
    key = psql(three, "dify", f"SELECT key FROM upload_files WHERE id = '{seed['file_id']}';")
    assert key.startswith("upload_files/"), key
    DRILL["seeded"] = {"app_id": seed["app_id"], "file_id": seed["file_id"], "file_key": key,
                       "sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text}


def test_backup_now(three, figure):
    """Record the data, then `ansible-playbook -i <inventory> playbooks/backup-now.yml` (README)."""
    seeded = step("seeded")
    before = database_state(three)
    assert before["dify"]["counts"]["public.drill_vectors"] == VECTOR_ROWS, before["dify"]["counts"]
    assert before["dify_plugin"]["counts"]["public.drill_marks"] == 250
    assert "USING hnsw" in before["hnsw"], before["hnsw"]
    assert "drill_vectors_hnsw" in before["nearest_plan"], before["nearest_plan"]
    assert len(before["nearest"]) == 5
    objects = bucket(three, seeded["file_key"])
    assert objects["sha256"][seeded["file_key"]] == seeded["sha256"]
    keys = dify_keys(three)

    started = time.time()
    proc = ansible_playbook(["-i", three.inventory, "playbooks/backup-now.yml"], timeout=1800)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap(proc.stdout).values()), recap(proc.stdout)
    newest = newest_backup_time(three)
    assert newest >= started - 5, "the status file is not of this backup"
    DRILL["backup"] = {"state": before, "objects": objects["objects"], "keys_sha256": sha256_of(keys),
                       "secret_key": keys["secret_key"], "newest": newest, "took": time.time() - started}
    figure("backup_now_seconds", round(time.time() - started))


def sha256_of(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def newest_backup_time(three) -> float:
    """When the site's newest backup was taken: each data host's status file says when its
    last run started (the dumps are taken after that); the site is as old as its oldest part."""
    started = []
    for host in ("data1", "app1"):
        status = json.loads(docker("exec", three.container(host), "cat", BACKUP_STATUS).stdout)
        assert status["result"] == "ok", (host, status)
        started.append(datetime.datetime.strptime(status["started"], "%Y-%m-%dT%H:%M:%SZ")
                       .replace(tzinfo=datetime.timezone.utc).timestamp())
    return min(started)


def test_hosts_lost_and_replaced_then_restored(three, figure):
    """data1 and app1 are gone with their disks (the backups volume is not): fresh hosts come up
    and are converged from the same inventory as a user would (scripts/lab.py up), then
    playbooks/restore.yml restores the newest backup onto them."""
    step("backup")
    proc = lab_script("destroy", "--name", NAME, "--host", "data1", "--host", "app1", check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]
    left = docker("volume", "ls", "-q", "--filter", f"label=selfhost.lab.name={NAME}").stdout.split()
    assert f"selfhost-lab-{NAME}-backups" in left and f"selfhost-lab-{NAME}-data1-docker" not in left, left
    started = time.time()
    proc = lab_script("up", "--name", NAME, "--layout", "three", "--debian", three.debian,
                      "--inventory", three.inventory, check=False)
    assert proc.returncode == 0, f"scripts/lab.py up (fresh hosts) failed:\n{proc.stdout[-6000:]}"
    figure("fresh_hosts_converge_seconds", round(time.time() - started))
    fresh = load_lab(NAME, three.inventory)
    # Fresh indeed: nothing of the drill's data before the restore.
    assert "drill_vectors" not in psql(fresh, "dify", "SELECT string_agg(tablename, ' ') FROM pg_tables;")
    assert dify_keys(fresh)["secret_key"] != step("backup")["secret_key"]

    restore_start = time.time()
    proc = ansible_playbook(["-i", fresh.inventory, "playbooks/restore.yml"], timeout=3600)
    assert proc.returncode == 0, proc.stdout[-8000:]
    deadline = time.time() + 600
    while True:
        health = ansible_playbook(["-i", fresh.inventory, "playbooks/health.yml"])
        if health.returncode == 0 or time.time() > deadline:
            break
        time.sleep(5)
    assert health.returncode == 0, health.stdout[-6000:]
    rto = time.time() - restore_start
    rpo = restore_start - step("backup")["newest"]
    DRILL["restored"] = {"rto": rto, "rpo": rpo}
    figure("restore_rto_seconds", round(rto))
    figure("restore_rpo_seconds", round(rpo))
    figure("restore drill", f"RTO {rto:.0f} s, RPO {rpo:.0f} s (age of the newest backup at restore)")


def test_databases_come_back_identical(three):
    step("restored")
    before = step("backup")["state"]
    after = database_state(three)
    for database in CHECKSUMMED:
        counts_before, counts_after = before[database]["counts"], after[database]["counts"]
        differing = {t: (counts_before.get(t), counts_after.get(t))
                     for t in set(counts_before) | set(counts_after) if counts_before.get(t) != counts_after.get(t)}
        assert not differing, f"{database}: row counts differ (before, after): {differing}"
        assert after[database]["checksums"] == before[database]["checksums"], database
    assert after["hnsw"] == before["hnsw"]
    assert "drill_vectors_hnsw" in after["nearest_plan"], after["nearest_plan"]
    assert after["nearest"] == before["nearest"]


def test_bucket_comes_back_identical(three):
    step("restored")
    seeded = step("seeded")
    after = bucket(three, seeded["file_key"])
    assert after["objects"] == step("backup")["objects"]
    assert after["sha256"][seeded["file_key"]] == seeded["sha256"]


def test_admin_signs_in_and_finds_the_app_and_the_file(three, outsider):
    """Through the edge, with the password of before: the app is there, the file reads back
    byte for byte through Dify's signed download, signed with the SECRET_KEY of before."""
    step("restored")
    seeded = step("seeded")
    email, password = admin(three)
    on_client, url = through_edge(three, outsider)
    check = dify_console(on_client, url, "check", email=email, password=password, file_id=seeded["file_id"])
    assert check["login_status"] == 200, check
    assert APP_NAME in check["app_names"], check
    assert check["preview_status"] == 200 and check["preview"].startswith("restore drill"), check
    result = edge_kit.request(edge_of(three, outsider), signed_file_path(seeded["file_id"],
                                                                         step("backup")["secret_key"]))
    assert result["status"] == 200, {k: result[k] for k in ("status", "error", "body")}
    assert hashlib.sha256(result["body"].encode()).hexdigest() == seeded["sha256"]


def test_site_rerun_after_restore_changes_nothing(three):
    """The keys came back with the project directory; site.yml on the restored hosts changes
    nothing (health was green after the restore: nothing changed, nothing to re-check)."""
    step("restored")
    proc = ansible_playbook(["-i", three.inventory, "site.yml", "--limit", "data1,app1"], timeout=3600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    result = recap(proc.stdout)
    assert all(result[h]["changed"] == 0 for h in ("app1", "data1")), (result, changed_tasks(proc.stdout))
    assert sha256_of(dify_keys(three)) == step("backup")["keys_sha256"]
