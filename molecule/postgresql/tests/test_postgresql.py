"""Behaviour of selfhost.dify.postgresql on the converged molecule hosts.

postgresql-debian13 runs the role (group postgresql, Debian 13 distro packages: PostgreSQL
17 + pgvector); postgresql-client13 is a plain Debian 13 container in the dify group with
the PostgreSQL client (prepare.yml), standing for a Dify app host. molecule.yml gives the
test-only password and sizes the server for 2048 MB.

Everything is checked the way Dify and an operator see it: logins over TCP with the
password (from the client host), vector search with an HNSW index, refused logins, the
sockets the server listens on, and the settings PostgreSQL reports. The drift tests at
the end edit the server, so they run last.
"""
from __future__ import annotations

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import helpers  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = helpers.ansible_inventory(helpers.molecule_inventory())
HOSTS = sorted(INVENTORY["_meta"]["hostvars"])
SERVER = next(h for h in HOSTS if h.endswith("debian13"))
CLIENT = next(h for h in HOSTS if h.endswith("client13"))
testinfra_hosts = [f"docker://{SERVER}"]

PASSWORD = INVENTORY["_meta"]["hostvars"][SERVER]["postgresql_dify_password"]
MEMORY_MB = 2048
CONF_D = "/etc/postgresql/17/main/conf.d"
PG_HBA = "/etc/postgresql/17/main/pg_hba.conf"
# Reruns in the drift tests are limited to the concern at stake (preflight runs with it).
CONFIGURE = ("--tags", "postgresql_configure")


def server_ip() -> str:
    return helpers.container_ip(SERVER)


def psql(container, sql, *, host=None, user="dify", password=PASSWORD, db="dify", check=True):
    """psql in `container` over TCP to the server (its address unless `host`); stdout+stderr."""
    conninfo = f"host={host or server_ip()} port=5432 user={user} dbname={db} connect_timeout=10"
    return helpers.run(["docker", "exec", "-e", f"PGPASSWORD={password}", container,
                        "psql", conninfo, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], check=check)


def superuser(sql, db="postgres") -> str:
    """A query as the postgres superuser over the server's socket."""
    return helpers.docker("exec", SERVER, "runuser", "-u", "postgres", "--",
                          "psql", "-X", "-At", "-d", db, "-c", sql).stdout.strip()


def show(setting: str) -> str:
    return superuser(f"SHOW {setting}")


def postmaster_start() -> str:
    return superuser("SELECT pg_postmaster_start_time()")


# -- Dify's view: its role, databases and vector search ----------------------------------------

def test_the_dify_host_runs_a_vector_search_with_an_hnsw_index():
    sql = """
    DROP TABLE IF EXISTS selfhost_test_embeddings;
    CREATE TABLE selfhost_test_embeddings (id int PRIMARY KEY, embedding vector(3));
    INSERT INTO selfhost_test_embeddings
      SELECT i, ARRAY[i, i * 2, i * 3]::real[]::vector FROM generate_series(1, 500) AS i;
    INSERT INTO selfhost_test_embeddings VALUES (9001, '[-100, 50, 7]');
    CREATE INDEX selfhost_test_embeddings_hnsw ON selfhost_test_embeddings
      USING hnsw (embedding vector_l2_ops);
    ANALYZE selfhost_test_embeddings;
    SET enable_seqscan = off;
    SELECT 'nearest:' || id FROM selfhost_test_embeddings ORDER BY embedding <-> '[-99, 49, 6]' LIMIT 1;
    EXPLAIN SELECT id FROM selfhost_test_embeddings ORDER BY embedding <-> '[-99, 49, 6]' LIMIT 1;
    DROP TABLE selfhost_test_embeddings;
    """
    out = psql(CLIENT, sql).stdout
    assert "nearest:9001" in out.splitlines(), out
    assert "Index Scan using selfhost_test_embeddings_hnsw" in out, out


def test_the_vector_extension_was_created_by_the_superuser_in_the_vector_database():
    assert superuser("SELECT r.rolname || ':' || e.extversion FROM pg_extension e "
                     "JOIN pg_roles r ON r.oid = e.extowner WHERE e.extname = 'vector'", db="dify") == "postgres:0.8.0"
    assert superuser("SELECT count(*) FROM pg_extension WHERE extname = 'vector'", db="dify_plugin") == "0"


def test_the_dify_role_is_no_superuser_and_cannot_create_extensions():
    assert psql(CLIENT, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user").stdout.strip() == "f|f|f"
    denied = psql(CLIENT, "CREATE EXTENSION vector", db="dify_plugin", check=False)
    assert denied.returncode != 0
    assert 'permission denied to create extension "vector"' in denied.stdout


def test_the_databases_are_utf8_and_owned_by_the_dify_role():
    rows = superuser("SELECT datname || ':' || pg_get_userbyid(datdba) || ':' || pg_encoding_to_char(encoding) "
                     "FROM pg_database WHERE datname IN ('dify', 'dify_plugin') ORDER BY datname").splitlines()
    assert rows == ["dify:dify:UTF8", "dify_plugin:dify:UTF8"]
    # The owner can work in both: Dify's migrations and the plugin daemon create tables.
    out = psql(CLIENT, "CREATE TABLE selfhost_probe (id int); DROP TABLE selfhost_probe; SELECT 'ok'", db="dify_plugin")
    assert out.stdout.strip().endswith("ok")


def test_the_password_is_a_scram_verifier_and_a_wrong_one_is_refused():
    assert show("password_encryption") == "scram-sha-256"
    assert superuser("SELECT rolpassword FROM pg_authid WHERE rolname = 'dify'").startswith("SCRAM-SHA-256$4096:")
    refused = psql(CLIENT, "SELECT 1", password="not-the-password-at-all", check=False)
    assert refused.returncode != 0
    assert 'password authentication failed for user "dify"' in refused.stdout


def test_new_clusters_have_data_checksums():
    assert show("data_checksums") == "on"
    conf = helpers.docker("exec", SERVER, "cat", "/etc/postgresql-common/createcluster.d/50-selfhost.conf").stdout
    assert conf.startswith("# Managed by selfhost.dify (role postgresql)")


# -- network: where it listens, whom it admits ----------------------------------------------------

def test_the_server_listens_on_loopback_and_its_private_address_only(host):
    sockets = host.check_output("ss -Hltn 'sport = :5432'").splitlines()
    addresses = sorted(line.split()[3].rsplit(":", 1)[0] for line in sockets)
    assert addresses == sorted(["127.0.0.1", server_ip()])


def test_a_source_that_is_not_allowed_gets_no_pg_hba_entry():
    # From the server itself through its private address: that source is not a Dify host.
    own = psql(SERVER, "SELECT 1", check=False)
    assert own.returncode != 0
    assert f'no pg_hba.conf entry for host "{server_ip()}", user "dify", database "dify"' in own.stdout
    # From the Dify host, only Dify's role to Dify's databases.
    as_postgres = psql(CLIENT, "SELECT 1", user="postgres", db="postgres", check=False)
    assert as_postgres.returncode != 0 and "no pg_hba.conf entry" in as_postgres.stdout
    other_db = psql(CLIENT, "SELECT 1", db="postgres", check=False)
    assert other_db.returncode != 0 and "no pg_hba.conf entry" in other_db.stdout


def test_loopback_logins_use_the_password():
    assert psql(SERVER, "SELECT current_user", host="127.0.0.1").stdout.strip() == "dify"
    refused = psql(SERVER, "SELECT 1", host="127.0.0.1", password="not-the-password-at-all", check=False)
    assert refused.returncode != 0 and "password authentication failed" in refused.stdout


# -- sizing ---------------------------------------------------------------------------------------

def test_max_connections_follows_the_documented_formula():
    # roles/selfhost defaults: 1 api worker, pool 30 + overflow 10, pgvector 5, plugin daemon 30.
    per_host = (1 + 2) * (30 + 10) + (1 + 1) * 5 + 30 + 1
    dify_hosts = len(INVENTORY["dify"]["hosts"])
    assert dify_hosts == 1
    assert int(show("max_connections")) == per_host * max(dify_hosts, 1) + 20 == 181


def test_memory_settings_follow_the_host_size():
    assert show("shared_buffers") == f"{MEMORY_MB // 4}MB"
    assert show("effective_cache_size") == f"{MEMORY_MB * 3 // 4}MB"
    assert show("maintenance_work_mem") == f"{MEMORY_MB // 16}MB"
    # (2048 - 512) / (181 x 3 x 1) is below PostgreSQL's default: the floor applies.
    assert show("work_mem") == "4MB"
    assert show("random_page_cost") == "1.1"
    assert superuser("SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


# -- idempotence seen from outside, then drift (these edit the server: keep them last) ------------

def test_check_mode_on_the_converged_hosts_reports_no_change():
    helpers.assert_check_mode_clean("converge.yml", hosts=HOSTS)


def test_hand_edits_are_reported_and_put_back_with_a_reload_only():
    started = postmaster_start()
    helpers.docker("exec", SERVER, "sh", "-c",
                   f"sed -i \"s/^work_mem = .*/work_mem = '64MB'/\" {CONF_D}/51-selfhost.conf"
                   f" && echo 'host all all 0.0.0.0/0 trust' >> {PG_HBA} && systemctl reload postgresql@17-main")
    assert show("work_mem") == "64MB"
    assert psql(SERVER, "SELECT 'in'", password="anything-goes-now").stdout.strip() == "in"

    checked = helpers.changed_tasks(helpers.molecule_playbook("converge.yml", "--check", "--diff", *CONFIGURE).stdout)
    assert "selfhost.dify.postgresql : Configure | Settings applied by a reload" in checked[SERVER]
    assert "selfhost.dify.postgresql : Configure | Client authentication (pg_hba.conf)" in checked[SERVER]
    assert show("work_mem") == "64MB"

    changed = helpers.changed_tasks(helpers.molecule_playbook("converge.yml", *CONFIGURE).stdout)[SERVER]
    assert "selfhost.dify.postgresql : Configure | Settings applied by a reload" in changed
    assert "selfhost.dify.postgresql : Configure | Client authentication (pg_hba.conf)" in changed
    assert "selfhost.dify.postgresql : Reload postgresql" in changed
    assert "selfhost.dify.postgresql : Restart postgresql" not in changed
    assert show("work_mem") == "4MB"
    assert psql(SERVER, "SELECT 1", password="anything-goes-now", check=False).returncode != 0
    assert postmaster_start() == started, "a reloadable change restarted the server"


def test_a_restart_only_change_restarts_the_server():
    started = postmaster_start()
    helpers.docker("exec", SERVER, "sed", "-i", "s/^shared_buffers = .*/shared_buffers = '128MB'/",
                   f"{CONF_D}/50-selfhost-restart.conf")
    changed = helpers.changed_tasks(helpers.molecule_playbook("converge.yml", *CONFIGURE).stdout)[SERVER]
    assert "selfhost.dify.postgresql : Configure | Settings that need a restart" in changed
    assert "selfhost.dify.postgresql : Restart postgresql" in changed
    assert show("shared_buffers") == f"{MEMORY_MB // 4}MB"
    assert postmaster_start() != started


def test_a_restart_only_extra_setting_restarts_the_server_once():
    extra = ["-e", '{"postgresql_settings": {"max_locks_per_transaction": 128}}', *CONFIGURE]
    first = helpers.changed_tasks(helpers.molecule_playbook("converge.yml", *extra).stdout)[SERVER]
    assert "selfhost.dify.postgresql : Configure | Restart PostgreSQL for the settings waiting for it" in first
    assert show("max_locks_per_transaction") == "128"
    helpers.assert_no_changes(helpers.molecule_playbook("converge.yml", *extra).stdout, hosts=HOSTS)
    # Back to the scenario's settings.
    back = helpers.changed_tasks(helpers.molecule_playbook("converge.yml", *CONFIGURE).stdout)[SERVER]
    assert "selfhost.dify.postgresql : Configure | Restart PostgreSQL for the settings waiting for it" in back
    assert show("max_locks_per_transaction") == "64"
