"""Behaviour of selfhost.dify.dify (with docker and the data tier) on the converged host.

dify-debian13 carries PostgreSQL, Redis, SeaweedFS, Docker and the compose project. api,
worker, beat and the migration are REAL DIFY: its api image built from upstream's source
(scripts/build-dify-api.sh), loaded through the role's archive path. Converged at release
1.11.1; the last tests upgrade to 1.13.0. The sandbox is Dify's own, built from its source; so
is the web from 1.13.0 on. The CONTRACT DOUBLE (tests/dify_double) plays only the plugin daemon,
and the web of 1.11.1; the SSRF proxy is a real squid. The database and
Redis passwords carry @ : / % # ? & + (molecule.yml), so every test also shows they work.
What is tested is what a user sees: the health playbook, the schema at the image's head, the
administrator signing in, the worker executing what is sent to each of its queues, a file
uploaded to the bucket and read back, settings as the containers receive them, ports, the
proxy's refusals and a newly allowed network, a wrong password named by the health report,
drift repaired, and the upgrade with data. Tests that change the host run last.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import dify_workflow, helpers  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = helpers.ansible_inventory(helpers.molecule_inventory())
HOST = next(h for h in INVENTORY["_meta"]["hostvars"] if h.endswith("debian13"))
HOSTVARS = INVENTORY["_meta"]["hostvars"][HOST]
testinfra_hosts = [f"docker://{HOST}"]

PROJECT = "/opt/dify"
DOMAIN = "dify.molecule.test"
BASE_URL = f"https://{DOMAIN}"
ADMIN_EMAIL_INVENTORY = HOSTVARS["dify_admin_email"]      # mixed case on purpose
ADMIN_EMAIL = ADMIN_EMAIL_INVENTORY.lower()               # as Dify stores it
ON_HOST = ["docker", "exec", "-i", HOST]
FIRST, NEXT = "1.11.1", "1.13.0"
ADMIN_PASSWORD = HOSTVARS["dify_admin_password"]
DB_PASSWORD = HOSTVARS["postgresql_dify_password"]


def host_ip() -> str:
    return helpers.container_ip(HOST)


def sh(*cmd: str, check: bool = True) -> str:
    return helpers.docker("exec", HOST, *cmd, check=check).stdout.strip()


def container_env(service: str) -> dict[str, str]:
    """The environment a service's container was started with (docker inspect)."""
    out = sh("docker", "inspect", "--format", "{{json .Config.Env}}", f"dify-{service}-1")
    return dict(item.split("=", 1) for item in json.loads(out))


HTTP = r"""
import json, sys, urllib.request, urllib.error
url, method, body, headers = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
req = urllib.request.Request(url, data=body.encode() if body else None, method=method, headers=headers)
try:
    resp = urllib.request.urlopen(req, timeout=20)
except urllib.error.HTTPError as err:
    resp = err
print(json.dumps({"status": resp.status, "headers": dict(resp.headers.items()),
                  "body": resp.read().decode(errors="replace")}))
"""


def http(url: str, method: str = "GET", body=None, headers=None) -> dict:
    """An HTTP request from the host itself (python3 is on every Debian host)."""
    payload = json.dumps(body) if body is not None else ""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    out = sh("python3", "-c", HTTP, url, method, payload, json.dumps(hdrs))
    result = json.loads(out)
    try:
        result["json"] = json.loads(result["body"])
    except ValueError:
        result["json"] = None
    return result


def api(path: str, **kwargs) -> dict:
    return http(f"http://{host_ip()}:5001{path}", **kwargs)


def superuser(sql: str, db: str = "dify") -> str:
    return sh("runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-d", db, "-c", sql)


S3_GET = r"""
import sys, boto3
from botocore.config import Config
endpoint, bucket, access, secret, key = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
sys.stdout.buffer.write(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
"""


def s3_object(key: str) -> bytes:
    """An object of Dify's bucket, read with Dify's own key (boto3 on the host)."""
    env = container_env("api")
    return helpers.docker("exec", HOST, "python3", "-c", S3_GET, env["S3_ENDPOINT"], env["S3_BUCKET_NAME"],
                          env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"], key).stdout.encode()


def converge(*args: str, check: bool = True):
    return helpers.molecule_playbook("converge.yml", *args, check=check, timeout=2400)


# -- the stack is up and says what it is ------------------------------------------------------

def test_health_playbook_is_green():
    proc = helpers.ansible_playbook(["-i", helpers.molecule_inventory(),
                                     str(helpers.ROOT / "playbooks" / "health.yml")], check=False)
    assert proc.returncode == 0, proc.stdout[-6000:]
    summary = helpers.recap(proc.stdout)
    assert summary[HOST]["failed"] == 0 and summary[HOST]["changed"] == 0, summary


def test_check_mode_on_the_converged_host_reports_no_change():
    helpers.assert_check_mode_clean("converge.yml", hosts=[HOST])


def test_api_is_real_dify_built_from_source():
    result = api("/health")
    assert result["status"] == 200, result
    assert result["json"]["status"] == "ok" and result["json"]["version"] == FIRST, result["json"]
    headers = {k.lower(): v for k, v in result["headers"].items()}
    assert headers.get("x-version") == FIRST and "x-dify-double" not in headers, headers
    image = sh("docker", "inspect", "--format", "{{.Config.Image}}", "dify-api-1")
    source = sh("docker", "image", "inspect", "--format", '{{index .Config.Labels "selfhost.dify.source"}}', image)
    assert image == f"langgenius/dify-api:{FIRST}" and source.startswith(f"dify-{FIRST}-"), (image, source)
    for service in ("worker", "worker_beat"):
        assert sh("docker", "inspect", "--format", "{{.Config.Image}}", f"dify-{service}-1") == image


def test_every_dify_service_runs_and_no_data_service_container_exists():
    running = set(sh("docker", "compose", "--project-directory", PROJECT, "ps", "--services",
                     "--status", "running").split())
    assert running == {"api", "worker", "worker_beat", "web", "sandbox", "plugin_daemon", "ssrf_proxy"}, running
    defined = set(sh("docker", "compose", "--project-directory", PROJECT, "config", "--services").split())
    assert not defined & {"db", "db_postgres", "pgvector", "redis", "weaviate", "nginx", "init_permissions"}, defined


# -- settings as the containers receive them --------------------------------------------------

def test_env_file_and_kept_keys_are_root_only(host):
    for path in (f"{PROJECT}/.env", f"{PROJECT}/.secrets/keys.json"):
        f = host.file(path)
        assert f.user == "root" and f.group == "root" and f.mode == 0o600, path
    compose = host.file(f"{PROJECT}/compose.yaml").content_string
    assert DB_PASSWORD not in compose and HOSTVARS["redis_dify_password"] not in compose


def test_generated_keys_match_on_both_sides_and_are_kept(host):
    keys = json.loads(host.file(f"{PROJECT}/.secrets/keys.json").content_string)
    api_env, daemon, sandbox = container_env("api"), container_env("plugin_daemon"), container_env("sandbox")
    assert api_env["SECRET_KEY"] == keys["secret_key"] and len(keys["secret_key"]) >= 32
    assert api_env["CODE_EXECUTION_API_KEY"] == sandbox["API_KEY"] == keys["sandbox_api_key"]
    assert api_env["PLUGIN_DAEMON_KEY"] == daemon["SERVER_KEY"] == keys["plugin_daemon_key"]
    assert api_env["INNER_API_KEY_FOR_PLUGIN"] == daemon["DIFY_INNER_API_KEY"] == keys["plugin_inner_api_key"]
    assert api_env["INIT_PASSWORD"] == keys["init_password"] and len(keys["init_password"]) <= 30
    assert len(set(keys.values())) == len(keys), "every key is its own"
    assert container_env("worker")["SECRET_KEY"] == keys["secret_key"]


def test_every_url_derives_from_the_domain():
    env = container_env("api")
    for name in ("CONSOLE_API_URL", "CONSOLE_WEB_URL", "SERVICE_API_URL", "APP_API_URL", "APP_WEB_URL",
                 "FILES_URL", "TRIGGER_URL", "CONSOLE_CORS_ALLOW_ORIGINS", "WEB_API_CORS_ALLOW_ORIGINS"):
        assert env[name] == BASE_URL, (name, env[name])
    assert env["ENDPOINT_URL_TEMPLATE"] == f"{BASE_URL}/e/{{hook_id}}"
    page = http(f"http://{host_ip()}:3000/")
    assert page["status"] == 200 and f"{BASE_URL}/console/api" in page["body"], page["body"][:500]


def test_wired_to_the_native_data_services():
    env = container_env("api")
    ip = host_ip()
    assert env["DB_HOST"] == ip and env["REDIS_HOST"] == ip and env["PGVECTOR_HOST"] == ip
    assert env["S3_ENDPOINT"] == f"http://{ip}:8333" and env["S3_ADDRESS_STYLE"] == "path"
    assert env["STORAGE_TYPE"] == "s3" and env["VECTOR_STORE"] == "pgvector"
    assert env["CELERY_BROKER_URL"].startswith("redis://dify:") and env["CELERY_BROKER_URL"].endswith(f"@{ip}:6379/1")
    daemon = container_env("plugin_daemon")
    assert daemon["DB_DATABASE"] == "dify_plugin" and daemon["S3_USE_PATH_STYLE"] == "true"


def test_pool_sizes_fit_postgresql_max_connections():
    env = container_env("api")
    pool, overflow = int(env["SQLALCHEMY_POOL_SIZE"]), int(env["SQLALCHEMY_MAX_OVERFLOW"])
    vector, workers = int(env["PGVECTOR_MAX_CONNECTION"]), int(env["SERVER_WORKER_AMOUNT"])
    daemon = int(container_env("plugin_daemon")["DB_MAX_OPEN_CONNS"])
    needed = (workers + 2) * (pool + overflow) + (workers + 1) * vector + daemon + 1
    assert int(superuser("SHOW max_connections")) >= needed, needed


def test_only_the_one_shot_migration_migrates_to_the_image_head(host):
    for service in ("api", "worker", "worker_beat"):
        assert container_env(service)["MIGRATION_ENABLED"] == "false", service
    config = sh("docker", "compose", "--project-directory", PROJECT, "--profile", "migration", "config", "migration")
    assert "MIGRATION_ENABLED: \"true\"" in config and "MODE: migration" in config, config[-1500:]
    assert host.file(f"{PROJECT}/.state/migrated-version").content_string.strip() == FIRST
    current = superuser("SELECT version_num FROM alembic_version")
    heads = helpers.dify_flask(ON_HOST, "db", "heads")
    assert len(current.split()) == 1 and f"{current} (head)" in heads, (current, heads[-800:])
    assert int(superuser("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")) > 50


def test_worker_executes_what_is_sent_to_each_of_its_queues():
    """A task sent through Redis as Dify's ACL user reaches the worker on every queue this
    release's code sends to (CELERY_QUEUES), and its result comes back from Celery."""
    queues = container_env("worker")["CELERY_QUEUES"].split(",")
    assert "trigger_refresh_publisher" in queues and "workflow_draft_var" in queues, queues
    report = helpers.dify_worker_probe(ON_HOST)
    assert set(report) == set(queues) and all(r["ok"] for r in report.values()), report
    noperm = sh("docker", "logs", "dify-worker-1", check=False) + sh("docker", "logs", "dify-worker_beat-1", check=False)
    assert "NOPERM" not in noperm, [line for line in noperm.splitlines() if "NOPERM" in line][:5]


def test_ports_published_on_the_private_address_only(host):
    listening = sh("ss", "-Htln")
    ip = host_ip()
    for port in (5001, 3000, 5002):
        assert f"{ip}:{port} " in listening, (port, listening)
        assert f"0.0.0.0:{port} " not in listening and f"*:{port} " not in listening
    assert ":5003 " not in listening, "plugin remote debugging must not be published by default"
    assert ":8194 " not in listening and ":3128 " not in listening


# -- the administrator ------------------------------------------------------------------------

def test_admin_exists_and_signs_in():
    setup = api("/console/api/setup")
    assert setup["json"]["step"] == "finished", setup
    # 1.11.1 compares the login e-mail as typed; Dify stored the inventory's address lowercased.
    login = helpers.dify_console(ON_HOST, f"http://{host_ip()}:5001", "login",
                                 email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    assert login["login_status"] == 200 and login["profile_email"] == ADMIN_EMAIL, login
    wrong = helpers.dify_console(ON_HOST, f"http://{host_ip()}:5001", "login",
                                 email=ADMIN_EMAIL, password="not-the-password-1")
    assert wrong["login_status"] in (400, 401), wrong


# -- the SSRF proxy ------------------------------------------------------------------------

def through_ssrf_proxy(url: str) -> str:
    """The HTTP status the SSRF proxy gives the api container for `url` (curl in Dify's image)."""
    return sh("docker", "exec", "dify-api-1", "curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
              "-x", "http://ssrf_proxy:3128", url, check=False)


def test_ssrf_proxy_keeps_workflows_off_internal_addresses():
    """Through the proxy, the host's PostgreSQL and Redis are refused; the sandbox has no
    other way out (it sits on the internal network only)."""
    for port in (5432, 6379):
        assert through_ssrf_proxy(f"http://{host_ip()}:{port}/") == "403", port
    direct = helpers.docker("exec", HOST, "docker", "exec", "dify-sandbox-1", "curl", "-s", "-m", "5",
                            f"http://{host_ip()}:5432/", check=False)
    assert direct.returncode != 0, "the sandbox reached the host directly"
    via_reverse = sh("docker", "exec", "dify-api-1", "curl", "-s", "http://ssrf_proxy:8194/health", check=False)
    assert "ok" in via_reverse, via_reverse


def test_the_compose_healthcheck_of_the_real_api_passes():
    """Compose runs `curl -f .../health` inside the api container (as uid 1001)."""
    status = sh("docker", "inspect", "--format", "{{.State.Health.Status}}", "dify-api-1")
    assert status == "healthy", sh("docker", "inspect", "--format", "{{json .State.Health}}", "dify-api-1")


# -- changes to the host (last) -------------------------------------------------------------
# These tests take no `host` fixture: pytest groups the tests parametrized by it together, and
# the tests that change the host must run last, in this order, the upgrade at the very end.

def test_a_newly_allowed_network_reaches_the_running_ssrf_proxy():
    """squid.conf is a mounted file: a change to it restarts the proxy, so a network allowed in
    the inventory is reachable at once, and refused again once it is taken out."""
    web = f"http://{host_ip()}:3000/"
    assert through_ssrf_proxy(web) == "403"
    allowed = converge("-e", json.dumps({"dify_ssrf_proxy_allowed_networks": [f"{host_ip()}/32"]}), "--tags", "dify")
    changed = helpers.changed_tasks(allowed.stdout).get(HOST, [])
    assert any("SSRF proxy" in t for t in changed), changed
    assert any("mounted configuration changed" in t for t in changed), changed
    assert through_ssrf_proxy(web) in ("200", "307", "308"), "the allowed network is still refused"
    converge("--tags", "dify")
    assert through_ssrf_proxy(web) == "403", "the network is still allowed after it was taken out"


def test_wrong_password_is_named_and_hand_edits_are_reverted():
    """A wrong DB password in the inventory: the health check fails and names DB_PASSWORD
    (never printing it). Then, with hand edits on top, a normal rerun puts everything back
    and reports what it changed."""
    wrong = "test-only-wrong-Password-42x"
    proc = converge("-e", f"dify_db_password={wrong}", "-e", "dify_health_timeout=30", "--tags", "dify", check=False)
    assert proc.returncode != 0
    assert "DB_PASSWORD" in proc.stdout and "password authentication failed" in proc.stdout, proc.stdout[-5000:]
    assert wrong not in proc.stdout, "the wrong password was printed"

    sh("sed", "-i", "s/^LOG_LEVEL=.*/LOG_LEVEL='DEBUG'/", f"{PROJECT}/.env")
    sh("sed", "-i", "s/http_access deny forward_port internal_dst/# removed by hand/", f"{PROJECT}/ssrf_proxy/squid.conf")
    again = converge("--tags", "dify")
    changed = helpers.changed_tasks(again.stdout).get(HOST, [])
    assert any(t.endswith("Write the settings (.env)") for t in changed), changed
    assert any("SSRF proxy" in t for t in changed), changed
    env_file = sh("cat", f"{PROJECT}/.env")
    assert "LOG_LEVEL='INFO'" in env_file and f"DB_PASSWORD='{DB_PASSWORD}'" in env_file
    assert "http_access deny forward_port internal_dst" in sh("cat", f"{PROJECT}/ssrf_proxy/squid.conf")
    assert container_env("api")["LOG_LEVEL"] == "INFO"
    assert api("/health")["json"]["status"] == "ok"


def test_upgrade_to_the_next_release_migrates_once_and_keeps_the_data():
    """Data made on 1.11.1 (the admin, an app, an uploaded file) survives the upgrade to 1.13.0,
    which runs exactly one migration; the admin then signs in with the e-mail as the
    inventory writes it (1.13.0 compares e-mails case-insensitively)."""
    url = f"http://{host_ip()}:5001"
    text = "uploaded on 1.11.1, read back on 1.13.0\n"
    seed = helpers.dify_console(ON_HOST, url, "seed", email=ADMIN_EMAIL, password=ADMIN_PASSWORD,
                                name="upgrade-probe", text=text)
    assert seed["app_status"] == 201 and seed["upload_status"] == 201, seed
    key = superuser(f"SELECT key FROM upload_files WHERE id = '{seed['file_id']}'")
    assert key and text.encode() == s3_object(key), key
    before = superuser("SELECT version_num FROM alembic_version")

    proc = converge("-e", f"dify_version={NEXT}", "--tags", "dify")
    changed = helpers.changed_tasks(proc.stdout).get(HOST, [])
    assert any("Stop api, worker and beat" in t for t in changed), changed
    assert sum("Start the one-shot migration" in t for t in changed) == 1, changed
    assert api("/health")["json"]["version"] == NEXT
    after = superuser("SELECT version_num FROM alembic_version")
    assert after != before and f"{after} (head)" in helpers.dify_flask(ON_HOST, "db", "heads")
    assert sh("cat", f"{PROJECT}/.state/migrated-version") == NEXT

    check = helpers.dify_console(ON_HOST, url, "check", email=ADMIN_EMAIL_INVENTORY, password=ADMIN_PASSWORD,
                                 file_id=seed["file_id"])
    assert check["login_status"] == 200 and check["profile_email"] == ADMIN_EMAIL, check
    assert "upgrade-probe" in check["app_names"], check
    assert check["preview_status"] == 200 and check["preview"].strip() == text.strip(), check

    again = converge("-e", f"dify_version={NEXT}", "--tags", "dify")
    helpers.assert_no_changes(again.stdout, [HOST])


def test_after_the_upgrade_the_worker_serves_every_queue_and_uploads_land_in_the_bucket():
    report = helpers.dify_worker_probe(ON_HOST)
    queues = container_env("worker")["CELERY_QUEUES"].split(",")
    assert "api_token" in queues and set(report) == set(queues), report
    assert all(r["ok"] for r in report.values()), report
    text = "uploaded on 1.13.0\n"
    seed = helpers.dify_console(ON_HOST, f"http://{host_ip()}:5001", "seed", email=ADMIN_EMAIL_INVENTORY,
                                password=ADMIN_PASSWORD, name="after-upgrade", text=text)
    assert seed["upload_status"] == 201, seed
    key = superuser(f"SELECT key FROM upload_files WHERE id = '{seed['file_id']}'")
    assert s3_object(key) == text.encode()


def test_after_the_upgrade_the_web_is_dify_s_own_and_a_code_node_runs_in_the_real_sandbox():
    """From 1.13.0 on, the web is Dify's own (built from its source; 1.11.1's is the double's), and
    the sandbox at both releases: a workflow's Python Code node answers through the api."""
    for service, source in (("web", f"dify-web-{NEXT}-"), ("sandbox", "dify-sandbox-0.2.12-")):
        image = sh("docker", "inspect", "--format", "{{.Config.Image}}", f"dify-{service}-1")
        label = sh("docker", "image", "inspect", "--format", '{{index .Config.Labels "selfhost.dify.source"}}', image)
        assert label.startswith(source), (service, image, label)
    signin = http(f"http://{host_ip()}:3000/signin")
    headers = {k.lower(): v for k, v in signin["headers"].items()}
    assert signin["status"] == 200 and "x-dify-double" not in headers, signin["status"]
    assert "/_next/static/" in signin["body"], signin["body"][:300]
    key = dify_workflow.publish(ON_HOST, f"http://{host_ip()}:5001", ADMIN_EMAIL_INVENTORY, ADMIN_PASSWORD)
    text = "run by the real sandbox"
    result = api("/v1/workflows/run", method="POST", headers={"Authorization": f"Bearer {key}"},
                 body={"inputs": {"text": text, "action": "", "seconds": "", "target": ""},
                       "response_mode": "blocking", "user": "molecule"})
    assert result["status"] == 200, result
    data = result["json"]["data"]
    assert data["status"] == "succeeded" and data["outputs"] == {"result": dify_workflow.expected(text)}, data
