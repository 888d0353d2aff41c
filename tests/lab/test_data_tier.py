"""The data services of the single-node lab as their clients see them: PostgreSQL (with the
vector extension), Redis and the S3 endpoint answer Dify's credentials from the lab inventory
on the host's private address, refuse anyone without them, and the firewall keeps every
other host of the network out."""
from __future__ import annotations

import pytest

from tests.helpers import docker, probe

pytestmark = [pytest.mark.lab, pytest.mark.docker]


def credential(lab, name: str) -> str:
    """A secret the lab generated into its inventory (inventories/lab/.credentials/)."""
    return (lab.inventory / ".credentials" / name).read_text().split()[0]


@pytest.fixture
def node(lab):
    host = lab.hosts[0]
    return lab.container(host), lab.address(host)


def sh(container: str, script: str, env: dict[str, str] | None = None, check: bool = True):
    args = ["exec"]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    return docker(*args, container, "sh", "-c", script, check=check)


def test_postgresql_answers_dify_with_pgvector(lab, node):
    container, address = node
    password = credential(lab, "postgresql_dify_password")
    out = sh(container, f"psql -h {address} -U dify -d dify -Atc "
                        "\"select current_user, (select extname from pg_extension where extname = 'vector')\"",
             env={"PGPASSWORD": password}).stdout.strip()
    assert out == "dify|vector"
    refused = sh(container, f"psql -h {address} -U dify -d dify -Atc 'select 1'",
                 env={"PGPASSWORD": "not-the-password"}, check=False)
    assert refused.returncode != 0 and "password authentication failed" in refused.stdout


def test_redis_needs_dify_credentials(lab, node):
    container, address = node
    password = credential(lab, "redis_dify_password")
    assert sh(container, f"redis-cli -h {address} --user dify ping",
              env={"REDISCLI_AUTH": password}).stdout.strip() == "PONG"
    anonymous = sh(container, f"redis-cli -h {address} ping", check=False).stdout
    assert "NOAUTH" in anonymous or "NOPERM" in anonymous, anonymous


S3_CHECK = r"""
import sys, urllib.error, urllib.request
import boto3
from botocore.config import Config
endpoint, bucket, key, secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
s3.head_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="lab-test/object.txt", Body=b"hello")
try:
    urllib.request.urlopen(f"{endpoint}/{bucket}/lab-test/object.txt", timeout=10)
    print("anonymous-read-allowed")
except urllib.error.HTTPError as e:
    print(f"anonymous-{e.code}")
s3.delete_object(Bucket=bucket, Key="lab-test/object.txt")
"""


def test_object_storage_serves_difys_key_and_denies_anonymous_reads(lab, node):
    container, address = node
    out = docker("exec", container, "python3", "-c", S3_CHECK, f"http://{address}:8333", "dify",
                 credential(lab, "s3_dify_access_key"), credential(lab, "s3_dify_secret_key")).stdout
    assert out.strip().splitlines()[-1] == "anonymous-403"


@pytest.mark.parametrize("port", [5432, 6379, 8333])
def test_data_ports_are_closed_to_other_hosts(node, prober, port):
    container, address = node
    assert probe(container, address, port) == "open"   # it serves (the host itself is its Dify client)
    assert probe(prober, address, port) == "timeout"   # a host outside the dify group does not
