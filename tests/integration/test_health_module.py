"""selfhost.dify.health against real services: SeaweedFS (tests/integration/seaweedfs_server.py)
and a throwaway Debian 13 host with Debian's PostgreSQL and Redis, password-protected
(PostgreSQL with SCRAM-SHA-256, Redis with requirepass and an ACL user).

The module runs through ansible-playbook, on localhost (the venv's Python, with psycopg2,
redis-py and botocore) and on the Debian host itself (its /usr/bin/python3): first without
the client libraries, which the module names with their Debian packages, then with
Debian's python3-psycopg2 and python3-redis. Each test runs one playbook of several steps (each `ignore_errors`);
the ansible.posix.json callback gives each step's result, and the whole output is searched
for the secrets, which must never appear.
"""
from __future__ import annotations

import json
import secrets
import socket
import time
import uuid

import pytest
import yaml

from tests import helpers
from tests.integration.seaweedfs_server import seaweedfs  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.docker

PG_PASSWORD = "pg-" + secrets.token_urlsafe(16)
REDIS_PASSWORD = "redis-" + secrets.token_urlsafe(16)
REDIS_ACL_PASSWORD = "acl-" + secrets.token_urlsafe(16)
WRONG = "wrong-" + secrets.token_urlsafe(12)

# Debian's PostgreSQL and Redis, listening on the container's address with passwords.
# Debian's redis-server.service asks for a private user namespace (PrivateUsers=), which an
# unprivileged container cannot set up; the drop-in turns that off for this test host.
SETUP = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql redis-server >/dev/null
conf=$(ls -d /etc/postgresql/*/main)
echo "listen_addresses = '*'" >> "$conf/postgresql.conf"
printf 'local all postgres peer\nhost all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' > "$conf/pg_hba.conf"
systemctl restart postgresql
su postgres -c "psql -q -v ON_ERROR_STOP=1" <<SQL
CREATE ROLE dify LOGIN PASSWORD '$PG_PASSWORD';
CREATE DATABASE dify OWNER dify;
SQL
sed -i 's/^bind .*/bind 0.0.0.0/' /etc/redis/redis.conf
echo "requirepass $REDIS_PASSWORD" >> /etc/redis/redis.conf
echo "user dify on >$REDIS_ACL_PASSWORD ~* +@all" >> /etc/redis/redis.conf
mkdir -p /etc/systemd/system/redis-server.service.d
printf '[Service]\nPrivateUsers=false\n' > /etc/systemd/system/redis-server.service.d/test.conf
systemctl daemon-reload
systemctl restart redis-server
"""


@pytest.fixture(scope="module")
def services():
    with helpers.throwaway_host("health") as host:
        helpers.docker("exec", "-e", f"PG_PASSWORD={PG_PASSWORD}", "-e", f"REDIS_PASSWORD={REDIS_PASSWORD}",
                       "-e", f"REDIS_ACL_PASSWORD={REDIS_ACL_PASSWORD}", host, "bash", "-c", SETUP, timeout=600)
        yield host, helpers.container_ip(host)


@pytest.fixture(scope="module")
def bucket(seaweedfs):  # noqa: F811 (the fixture)
    """The bucket `dify`, created with the admin key."""
    import boto3  # pylint: disable=import-outside-toplevel
    from botocore.config import Config  # pylint: disable=import-outside-toplevel
    client = boto3.client("s3", endpoint_url=seaweedfs.endpoint, aws_access_key_id=seaweedfs.admin.access_key,
                          aws_secret_access_key=seaweedfs.admin.secret_key, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
    try:
        client.create_bucket(Bucket="dify")
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return "dify"


@pytest.fixture(scope="module")
def libraries(services):
    """Debian's client libraries on the test host (after the test that runs without them)."""
    host, dummy = services
    helpers.docker("exec", host, "bash", "-c", "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                   "--no-install-recommends python3-psycopg2 python3-redis >/dev/null", timeout=600)
    return services


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SECRETS = (PG_PASSWORD, REDIS_PASSWORD, REDIS_ACL_PASSWORD, WRONG)


def play(tmp_path, steps, host=None):
    """Run the module once per step (a dict of module args, or {"args": ..., "check": true}),
    on localhost or on the container `host`. Returns (results per step, output)."""
    tasks = []
    for index, step in enumerate(steps):
        task = {"name": f"step {index}", "selfhost.dify.health": step.get("args", step), "ignore_errors": True}
        if step.get("check"):
            task["check_mode"] = True
        tasks.append(task)
    playbook = tmp_path / f"health-{uuid.uuid4().hex[:6]}.yml"
    playbook.write_text(yaml.safe_dump([{"name": "health", "hosts": "all", "gather_facts": False, "tasks": tasks}],
                                       sort_keys=False))
    if host:
        target = ["-i", f"{host},", "-e", "ansible_connection=community.docker.docker",
                  "-e", "ansible_python_interpreter=/usr/bin/python3"]
    else:
        target = ["-i", "localhost,", "-e", "ansible_connection=local",
                  "-e", f"ansible_python_interpreter={helpers.VENV_BIN / 'python'}"]
    proc = helpers.ansible_playbook([*target, str(playbook)], timeout=300, env={
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_COLLECTIONS_PATH": str(helpers.ROOT / "collections")})
    for secret in SECRETS:
        assert secret not in proc.stdout, "a secret was shown in the output"
    report = json.loads(proc.stdout[proc.stdout.find("{"):])
    results = [list(task["hosts"].values())[0] for task in report["plays"][0]["tasks"]]
    assert len(results) == len(steps), proc.stdout[-3000:]
    return results, proc.stdout


def by_name(result):
    return {check["name"]: check for check in result["checks"]}


def test_without_the_client_libraries_the_module_names_their_packages(services, tmp_path):
    """On the bare Debian host (python3 without psycopg2 or redis-py) the module fails
    before any probe and names each missing library with its Debian package; checks that
    need no library still run there."""
    host, dummy = services
    checks = [
        {"name": "database", "type": "postgresql", "host": "127.0.0.1", "user": "dify", "password": PG_PASSWORD},
        {"name": "redis", "type": "redis", "host": "127.0.0.1", "password": REDIS_PASSWORD},
    ]
    tcp = [{"name": "ssh", "type": "tcp", "host": "127.0.0.1", "port": 22}]
    (missing, plain), dummy = play(tmp_path, [{"args": {"checks": checks, "timeout": 5}},
                                              {"args": {"checks": tcp, "timeout": 5}}], host=host)
    assert missing["failed"] is True and missing["checks"] == [], missing
    assert "Failed to import the required Python library (psycopg2)" in missing["msg"]
    assert "the postgresql checks (Debian package python3-psycopg2)" in missing["msg"]
    assert "Failed to import the required Python library (redis)" in missing["msg"]
    assert "the redis checks (Debian package python3-redis)" in missing["msg"]
    assert plain["healthy"] is True and not plain.get("failed"), plain


def test_on_the_debian_host_with_debians_client_libraries(libraries, tmp_path):
    """The module on the Debian host, with Debian's python3-psycopg2 and python3-redis, logs
    in to PostgreSQL (whose pg_hba.conf allows only SCRAM-SHA-256) and to Redis, as the
    default user and an ACL user."""
    host, dummy = libraries
    checks = [
        {"name": "database", "type": "postgresql", "host": "127.0.0.1", "user": "dify", "password": PG_PASSWORD},
        {"name": "redis", "type": "redis", "host": "127.0.0.1", "password": REDIS_PASSWORD},
        {"name": "redis acl", "type": "redis", "host": "127.0.0.1", "username": "dify",
         "password": REDIS_ACL_PASSWORD},
        {"name": "ssh", "type": "tcp", "host": "127.0.0.1", "port": 22},
    ]
    (result,), dummy = play(tmp_path, [{"args": {"checks": checks, "timeout": 30}}], host=host)
    assert result["healthy"] is True and result["changed"] is False, result
    checks = by_name(result)
    assert checks["database"]["target"] == "postgresql://dify@127.0.0.1:5432/dify"
    assert checks["database"]["detail"].startswith("logged in as dify to dify, PostgreSQL ")
    assert checks["database"]["detail"].endswith(", SELECT 1 answered")
    assert checks["redis"]["detail"] == "PING answered PONG (logged in as default)"
    assert checks["redis acl"]["detail"] == "PING answered PONG (logged in as dify)"
    assert checks["redis acl"]["target"] == "redis://dify@127.0.0.1:6379"
    assert all(c["attempts"] == 1 for c in checks.values())


def test_healthy_from_the_controller_and_in_check_mode(services, seaweedfs, bucket, tmp_path):  # noqa: F811
    dummy, address = services
    checks = [
        {"name": "database", "type": "postgresql", "host": address, "user": "dify", "password": PG_PASSWORD,
         "database": "dify"},
        {"name": "redis", "type": "redis", "host": address, "password": REDIS_PASSWORD},
        {"name": "object storage", "type": "s3", "endpoint": seaweedfs.endpoint, "bucket": bucket,
         "access_key": seaweedfs.limited.access_key, "secret_key": seaweedfs.limited.secret_key},
        # What Dify's storage role also promises: anonymous requests are refused.
        {"name": "anonymous refused", "type": "http", "url": f"{seaweedfs.endpoint}/{bucket}", "status": [403]},
    ]
    results, output = play(tmp_path, [{"args": {"checks": checks}}, {"args": {"checks": checks}, "check": True}])
    assert seaweedfs.limited.secret_key not in output
    for result in results:
        assert result["healthy"] is True and result["changed"] is False and not result.get("failed"), result
        assert by_name(result)["object storage"]["detail"] == "bucket dify exists and the key can read it"
        assert by_name(result)["object storage"]["target"] == f"{seaweedfs.endpoint}/dify"


def test_wrong_passwords_and_a_closed_port_are_reported(services, seaweedfs, bucket, tmp_path):  # noqa: F811
    dummy, address = services
    port = closed_port()
    checks = [
        {"name": "database", "type": "postgresql", "host": address, "user": "dify", "password": WRONG},
        {"name": "redis", "type": "redis", "host": address, "password": WRONG},
        {"name": "redis acl", "type": "redis", "host": address, "username": "dify", "password": WRONG},
        {"name": "redis without password", "type": "redis", "host": address},
        {"name": "object storage", "type": "s3", "endpoint": seaweedfs.endpoint, "bucket": bucket,
         "access_key": seaweedfs.limited.access_key, "secret_key": WRONG},
        {"name": "other bucket", "type": "s3", "endpoint": seaweedfs.endpoint, "bucket": "not-dify",
         "access_key": seaweedfs.limited.access_key, "secret_key": seaweedfs.limited.secret_key},
        {"name": "good database", "type": "postgresql", "host": address, "user": "dify", "password": PG_PASSWORD},
        {"name": "closed", "type": "tcp", "host": "127.0.0.1", "port": port},
    ]
    started = time.monotonic()
    (result,), output = play(tmp_path, [{"args": {"checks": checks, "timeout": 4}}])
    took = time.monotonic() - started
    assert seaweedfs.limited.secret_key not in output
    assert result["failed"] is True and result["healthy"] is False and result["changed"] is False
    lines = result["msg"].splitlines()
    assert lines[0].startswith("7 of 8 health checks failed after ") and lines[0].endswith("s:")
    assert lines[1:] == [
        f'database | postgresql://dify@{address}:5432/dify | password authentication failed for user "dify"',
        f"redis | redis://{address}:6379 | AUTH as default refused: WRONGPASS invalid username-password pair "
        "or user is disabled.",
        f"redis acl | redis://dify@{address}:6379 | AUTH as dify refused: WRONGPASS invalid username-password "
        "pair or user is disabled.",
        f"redis without password | redis://{address}:6379 | PING refused: NOAUTH Authentication required.",
        f"object storage | {seaweedfs.endpoint}/dify | 403 Forbidden: the key is refused or has no access to "
        "bucket dify (SignatureDoesNotMatch: The request signature we calculated does not match the signature "
        "you provided. Check your key and signing method.)",
        f"other bucket | {seaweedfs.endpoint}/not-dify | 403 Forbidden: the key is refused or has no access to "
        "bucket not-dify (AccessDenied: Access Denied.)",
        f"closed | tcp://127.0.0.1:{port} | cannot connect: connection refused",
    ]
    checks = by_name(result)
    assert checks["good database"]["healthy"] is True and checks["good database"]["attempts"] == 1
    assert checks["closed"]["attempts"] >= 3 and checks["closed"]["seconds"] <= 5
    assert took < 30


def test_a_service_that_comes_up_during_the_wait(services, tmp_path):
    """Redis is stopped and starts 8 seconds later (ansible-playbook itself takes a few of
    them to start the module): the check passes on a later attempt."""
    host, address = services
    helpers.docker("exec", host, "systemctl", "stop", "redis-server")
    helpers.docker("exec", "-d", host, "bash", "-c", "sleep 8; systemctl start redis-server")
    check = {"name": "redis", "type": "redis", "host": address, "password": REDIS_PASSWORD}
    (result,), dummy = play(tmp_path, [{"args": {"checks": [check], "timeout": 60}}])
    assert result["healthy"] is True, result
    redis = result["checks"][0]
    assert redis["attempts"] >= 2 and 1 <= redis["seconds"] < 30, redis


def test_bad_options_fail_before_any_probe(tmp_path):
    (result,), dummy = play(tmp_path, [{"args": {"checks": [
        {"name": "database", "type": "postgresql", "host": "192.0.2.1", "password": WRONG},
        {"name": "api", "type": "http", "url": "http://192.0.2.1/health", "host": "192.0.2.1"},
    ]}}])
    assert result["failed"] is True
    assert result["msg"] == ("health: check 'database' (postgresql) needs user; "
                             "check 'api' (http) does not use host (options of other check types)")
