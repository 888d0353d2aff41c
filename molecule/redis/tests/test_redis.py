"""Behaviour of selfhost.dify.redis on the converged molecule hosts (debian13, debian12).

molecule.yml gives both hosts a test-only Dify password and redis_kernel_settings_apply:
false (containers cannot change the shared kernel); redis-debian13 keeps the default bind
addresses (loopback and its private address), has an admin user and maxmemory 256M;
redis-debian12 binds loopback only (redis_allowed_sources: []) and has no admin user.
prepare.yml added a test-only drop-in (PrivateUsers=no) so Debian's unit starts in a container.

Everything is checked the way a client or an operator would see it: redis-cli answers
(NOAUTH, WRONGPASS, NOPERM, OOM), sockets (ss), TCP connections from the other host, files
and the effective systemd unit. The drift test at the end edits the hosts, so it runs last.

Not verifiable in a container, stated plainly: the live values of vm.overcommit_memory and
of transparent huge pages (the kernel is the machine's; /proc/sys and /sys are read-only).
The tests check the sysctl file, the THP unit and that the unit skips itself here.
"""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import helpers  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = helpers.ansible_inventory(helpers.molecule_inventory())
HOSTS = sorted(INVENTORY["_meta"]["hostvars"])
testinfra_hosts = [f"docker://{name}" for name in HOSTS]
D13 = next(h for h in HOSTS if h.endswith("debian13"))
D12 = next(h for h in HOSTS if h.endswith("debian12"))
HOSTVARS = INVENTORY["_meta"]["hostvars"]
PORT = 6379


def name_of(host) -> str:
    return host.backend.name


def ip_of(name: str) -> str:
    return helpers.container_ip(name)


def dify_password(name: str) -> str:
    return HOSTVARS[name]["redis_dify_password"]


def admin_password(name: str) -> str:
    return HOSTVARS[name]["redis_admin_password"]


def cli(container: str, *args: str, user: str | None = None, password: str | None = None,
        address: str = "127.0.0.1", raw: bool = False) -> str:
    """redis-cli in `container` against address:6379, authenticated as `user` (the password
    travels in REDISCLI_AUTH, as an operator would pass it). Returns stdout+stderr, stripped."""
    cmd = ["exec"]
    if password is not None:
        cmd += ["-e", f"REDISCLI_AUTH={password}"]
    cmd += [container, "redis-cli", "--no-auth-warning", "-h", address, "-p", str(PORT)]
    if raw:
        cmd += ["--raw"]
    if user is not None:
        cmd += ["--user", user]
    return helpers.docker(*cmd, *args, check=False).stdout.strip()


def as_dify(container: str, *args: str, **kwargs) -> str:
    return cli(container, *args, user="dify", password=dify_password(container), **kwargs)


def as_admin(*args: str) -> str:
    """The operator user exists on debian13 only."""
    return cli(D13, *args, user="admin", password=admin_password(D13))


# -- no unauthenticated access -------------------------------------------------------------

def test_a_client_without_password_is_refused(host):
    answer = cli(name_of(host), "PING")
    assert answer.startswith("NOAUTH"), answer
    assert cli(name_of(host), "GET", "anything").startswith("NOAUTH")


def test_the_default_user_is_off(host):
    # AUTH <password> (one argument) authenticates as "default": refused whatever the password.
    for guess in ("", "nopass", dify_password(name_of(host))):
        answer = cli(name_of(host), "AUTH", guess)
        assert "WRONGPASS" in answer or "ERR" in answer, (guess, answer)
    acl = host.file("/etc/redis/users.acl").content_string.splitlines()
    assert acl[0] == "user default off resetpass nocommands resetkeys resetchannels"


def test_a_wrong_password_is_refused(host):
    answer = cli(name_of(host), "PING", user="dify", password="not-the-password-at-all-123")
    assert "WRONGPASS" in answer or "AUTH failed" in answer, answer


# -- what Dify and Celery need works ---------------------------------------------------------

def test_dify_user_can_use_strings_lists_hashes_and_scripts(host):
    name = name_of(host)
    assert as_dify(name, "PING") == "PONG"
    assert as_dify(name, "SET", "selfhost:test:k", "v", "EX", "60") == "OK"
    assert as_dify(name, "GET", "selfhost:test:k") == "v"
    assert as_dify(name, "HSET", "selfhost:test:h", "f", "1") in ("0", "1", "(integer) 0", "(integer) 1")
    # A Celery queue: LPUSH by the producer, BRPOP by the worker.
    as_dify(name, "DEL", "selfhost:test:queue")
    as_dify(name, "LPUSH", "selfhost:test:queue", "task-1")
    assert as_dify(name, "BRPOP", "selfhost:test:queue", "1", raw=True).splitlines() == ["selfhost:test:queue", "task-1"]
    # Locks (redis-py Lock, kombu's Mutex) run Lua scripts.
    assert as_dify(name, "EVAL", "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', 5000)", "1",
                   "selfhost:test:lock", "token") == "OK"
    # Celery uses database 1.
    assert as_dify(name, "-n", "1", "SET", "selfhost:test:db1", "x") == "OK"
    assert as_dify(name, "-n", "1", "GET", "selfhost:test:db1") == "x"
    as_dify(name, "DEL", "selfhost:test:k", "selfhost:test:h", "selfhost:test:lock")
    as_dify(name, "-n", "1", "DEL", "selfhost:test:db1")


def test_dify_user_can_publish_and_subscribe(host):
    """Dify's event bus and Celery's fanout use pub/sub."""
    name = name_of(host)
    script = (
        f"REDISCLI_AUTH='{dify_password(name)}' timeout 5 redis-cli --no-auth-warning --user dify --raw "
        "SUBSCRIBE selfhost:test:channel > /tmp/selfhost-test-sub.out 2>&1 & "
        "sleep 1; "
        f"REDISCLI_AUTH='{dify_password(name)}' redis-cli --no-auth-warning --user dify "
        "PUBLISH selfhost:test:channel hello; wait; cat /tmp/selfhost-test-sub.out; rm -f /tmp/selfhost-test-sub.out"
    )
    out = host.run(script).stdout.splitlines()
    assert out[0].strip() in ("1", "(integer) 1"), out  # one subscriber received it
    assert "hello" in out[1:], out


# -- what the application may not do ---------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["CONFIG", "GET", "maxmemory"],
    ["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    ["FLUSHALL"],
    ["FLUSHDB"],
    ["SHUTDOWN", "NOSAVE"],
    ["ACL", "SETUSER", "intruder", "on", ">x", "+@all"],
    ["ACL", "LIST"],
    ["BGSAVE"],
    ["REPLICAOF", "192.0.2.1", "6379"],
    ["SWAPDB", "0", "1"],
    ["CLIENT", "KILL", "ID", "1"],
    ["MODULE", "LOAD", "/tmp/evil.so"],
    ["DEBUG", "SLEEP", "0"],
], ids=lambda c: " ".join(c[:2]))
def test_dify_user_is_denied_administrative_and_destructive_commands(host, command):
    name = name_of(host)
    as_dify(name, "SET", "selfhost:test:survivor", "still-here")
    answer = as_dify(name, *command)
    # DEBUG and MODULE are refused for everyone (enable-*-command no) before the ACL check.
    assert answer.startswith("NOPERM") or "not allowed" in answer, answer
    assert as_dify(name, "GET", "selfhost:test:survivor") == "still-here"
    assert as_dify(name, "PING") == "PONG"


# -- configuration in effect ---------------------------------------------------------------

def test_effective_configuration_as_the_operator_sees_it():
    def get(setting):
        return as_admin("CONFIG", "GET", setting).splitlines()[1]

    assert get("maxmemory-policy") == "noeviction"
    assert get("maxmemory") == str(256 * 1024 * 1024)
    assert get("appendonly") == "yes"
    assert get("appendfsync") == "everysec"
    assert get("protected-mode") == "yes"
    assert get("databases") == "16"
    assert get("enable-debug-command") == "no"
    assert get("enable-protected-configs") == "no"
    assert set(get("bind").split()) == {"127.0.0.1", ip_of(D13)}


def test_configuration_file_without_admin_user(host):
    """debian12 has no admin user: its file says what Redis runs with (auto maxmemory)."""
    conf = host.file("/etc/redis/redis.conf").content_string
    assert conf.startswith("# Managed by selfhost.dify (role redis); local edits are overwritten.\n")
    lines = set(conf.splitlines())
    for line in ("maxmemory-policy noeviction", "appendonly yes", "appendfsync everysec", "protected-mode yes",
                 "aclfile /etc/redis/users.acl", "enable-debug-command no", "enable-module-command no"):
        assert line in lines, line
    maxmemory = int(next(line.split()[1] for line in lines if line.startswith("maxmemory ")))
    if name_of(host) == D12:
        # auto: a quarter of the memory (as facts count it, in MiB), between 64 MiB and 2 GiB
        memtotal_mib = int(host.check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo")) // 1024
        assert maxmemory == max(min(memtotal_mib * 2**20 // 4, 2 * 2**30), 64 * 2**20)
        assert "bind 127.0.0.1" in lines


def test_aof_persistence_files_exist(host):
    aof_dir = host.file("/var/lib/redis/appendonlydir")
    assert aof_dir.is_directory and aof_dir.user == "redis"
    manifest = host.file("/var/lib/redis/appendonlydir/appendonly.aof.manifest")
    assert manifest.exists and manifest.user == "redis"
    assert "type b" in manifest.content_string and "type i" in manifest.content_string


def test_data_survives_a_restart(host):
    name = name_of(host)
    assert as_dify(name, "SET", "selfhost:test:persist", "kept") == "OK"
    assert host.run("systemctl restart redis-server").rc == 0
    deadline = time.time() + 30
    while time.time() < deadline and as_dify(name, "PING") != "PONG":
        time.sleep(0.5)
    assert as_dify(name, "GET", "selfhost:test:persist") == "kept"
    as_dify(name, "DEL", "selfhost:test:persist")


def test_noeviction_refuses_writes_at_the_limit_instead_of_evicting():
    """With a tiny limit (set at run time by the operator, put back afterwards), writes fail
    with OOM and every key written before is still there."""
    keys = [f"selfhost:test:oom:{i}" for i in range(200)]
    used = int(next(line.split(":")[1] for line in as_admin("INFO", "memory").splitlines()
                    if line.startswith("used_memory:")))
    evicted_before = int(next(line.split(":")[1] for line in as_admin("INFO", "stats").splitlines()
                              if line.startswith("evicted_keys:")))
    original = as_admin("CONFIG", "GET", "maxmemory").splitlines()[1]
    try:
        assert as_admin("CONFIG", "SET", "maxmemory", str(used + 512 * 1024)) == "OK"
        stored, answer = [], ""
        value = "x" * 16384
        for key in keys:
            answer = as_dify(D13, "SET", key, value)
            if answer != "OK":
                break
            stored.append(key)
        assert answer.startswith("OOM"), answer
        assert stored, "nothing could be written before the limit"
        for key in stored:
            assert as_dify(D13, "EXISTS", key) in ("1", "(integer) 1"), key
        evicted_after = int(next(line.split(":")[1] for line in as_admin("INFO", "stats").splitlines()
                                 if line.startswith("evicted_keys:")))
        assert evicted_after == evicted_before
    finally:
        as_dify(D13, "DEL", *keys)
        assert as_admin("CONFIG", "SET", "maxmemory", original) == "OK"


def test_the_server_cannot_rewrite_its_managed_files():
    """/etc/redis is read-only for the service: CONFIG REWRITE and ACL SAVE fail even for the admin."""
    assert "Read-only file system" in as_admin("CONFIG", "REWRITE")
    assert as_admin("ACL", "SAVE").startswith("ERR")


# -- network ---------------------------------------------------------------------------------

def test_listens_only_on_the_configured_addresses(host):
    sockets = host.check_output(f"ss -Hltn 'sport = :{PORT}'").splitlines()
    local = {line.split()[3].rsplit(":", 1)[0] for line in sockets}
    expected = {"127.0.0.1", ip_of(D13)} if name_of(host) == D13 else {"127.0.0.1"}
    assert local == expected, sockets


def test_a_remote_client_must_authenticate():
    """From the other host, as an app host would connect."""
    assert cli(D12, "PING", address=ip_of(D13)).startswith("NOAUTH")
    assert cli(D12, "PING", user="dify", password=dify_password(D13), address=ip_of(D13)) == "PONG"


def test_a_loopback_only_redis_is_not_reachable_from_elsewhere():
    assert helpers.probe(D13, ip_of(D12), PORT) == "refused"


# -- files -----------------------------------------------------------------------------------

def test_passwords_are_stored_only_as_hashes(host):
    name = name_of(host)
    acl = host.file("/etc/redis/users.acl")
    assert acl.user == "root" and acl.group == "redis" and acl.mode == 0o640
    digest = hashlib.sha256(dify_password(name).encode()).hexdigest()
    assert f"user dify on #{digest} " in acl.content_string
    # The clear passwords appear in no file under /etc/redis or in the unit configuration.
    secrets = [dify_password(name)] + ([admin_password(name)] if name == D13 else [])
    for secret in secrets:
        found = host.run(f"grep -rlF -- '{secret}' /etc/redis /etc/systemd/system /etc/sysctl.d")
        assert found.rc == 1, found.stdout


def test_configuration_files_are_root_owned_and_group_readable(host):
    conf = host.file("/etc/redis/redis.conf")
    assert conf.user == "root" and conf.group == "redis" and conf.mode == 0o640
    # Kept across package upgrades by the dpkg-statoverride the role set.
    assert host.check_output("dpkg-statoverride --list /etc/redis/redis.conf").split()[:3] == ["root", "redis", "640"]
    assert not host.file("/etc/systemd/system/redis-server.service").exists  # no mask left behind


# -- systemd and kernel --------------------------------------------------------------------------

def test_redis_runs_under_the_hardened_unit(host):
    assert host.service("redis-server").is_running
    assert host.service("redis-server").is_enabled
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show redis-server -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp "
        "-p ReadWritePaths -p MemoryDenyWriteExecute -p RestrictAddressFamilies -p UMask -p After -p Wants "
        "-p CapabilityBoundingSet -p StartLimitBurst").splitlines())
    assert props["User"] == "redis"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["MemoryDenyWriteExecute"] == "yes"
    assert set(props["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert props["ReadWritePaths"].split() == ["-/var/lib/redis", "-/var/log/redis", "-/run/redis"]
    assert props["UMask"] == "0077"
    assert props["CapabilityBoundingSet"] == ""
    assert props["StartLimitBurst"] == "5"
    assert "network-online.target" in props["After"].split()
    assert "selfhost-transparent-hugepages.service" in props["After"].split()
    dropin = host.file("/etc/systemd/system/redis-server.service.d/selfhost.conf").content_string
    assert dropin.startswith("# Managed by selfhost.dify (role redis)")
    # The production drop-in keeps Debian's PrivateUsers/ProtectProc; only the test harness relaxes them.
    assert "PrivateUsers" not in dropin and "ProtectProc" not in dropin


def test_kernel_settings_are_written_for_boot(host):
    """Live values cannot be checked in a container (the kernel is the machine's, /proc/sys and
    /sys are read-only); the files that set them at boot are checked instead."""
    sysctl = host.file("/etc/sysctl.d/60-selfhost-redis.conf").content_string
    assert "vm.overcommit_memory=1" in sysctl.splitlines()
    unit = host.file("/etc/systemd/system/selfhost-transparent-hugepages.service").content_string
    assert "echo never > /sys/kernel/mm/transparent_hugepage/enabled" in unit
    assert "Before=basic.target redis-server.service" in unit
    assert host.service("selfhost-transparent-hugepages").is_enabled
    # Here /sys is read-only, so the unit skips itself (a condition, not a failure).
    assert host.check_output("systemctl show -p ConditionResult --value selfhost-transparent-hugepages") == "no"
    assert host.check_output("systemctl is-failed selfhost-transparent-hugepages || true") != "failed"


# -- idempotence seen from outside, then drift (these edit the hosts: keep them last) ------------

def test_check_mode_on_converged_hosts_reports_no_change():
    helpers.assert_check_mode_clean("converge.yml", hosts=HOSTS)


def test_hand_edits_are_detected_and_put_back():
    # debian13: eviction turned on in redis.conf and Redis restarted with it;
    # debian12: a user added to the ACL file and Redis restarted with it.
    helpers.docker("exec", D13, "sh", "-c",
                   "sed -i 's/^maxmemory-policy noeviction$/maxmemory-policy allkeys-lru/' /etc/redis/redis.conf"
                   " && systemctl restart redis-server")
    helpers.docker("exec", D12, "sh", "-c",
                   "echo 'user intruder on nopass ~* &* +@all' >> /etc/redis/users.acl && systemctl restart redis-server")
    assert as_admin("CONFIG", "GET", "maxmemory-policy").splitlines()[1] == "allkeys-lru"
    assert cli(D12, "PING", user="intruder", password="anything") == "PONG"

    checked = helpers.molecule_playbook("converge.yml", "--check", "--diff", "--tags", "redis_config").stdout
    would_change = helpers.changed_tasks(checked)
    assert "selfhost.dify.redis : Config | Write redis.conf" in would_change[D13]
    assert "selfhost.dify.redis : Config | Write the ACL file (password hashes only)" in would_change[D12]
    assert "+maxmemory-policy noeviction" in checked

    converged = helpers.molecule_playbook("converge.yml").stdout
    changed = helpers.changed_tasks(converged)
    assert "selfhost.dify.redis : Config | Write redis.conf" in changed[D13]
    assert "selfhost.dify.redis : Restart redis-server" in changed[D13]
    assert "selfhost.dify.redis : Config | Write the ACL file (password hashes only)" in changed[D12]
    assert "selfhost.dify.redis : Restart redis-server" in changed[D12]

    assert as_admin("CONFIG", "GET", "maxmemory-policy").splitlines()[1] == "noeviction"
    intruder = cli(D12, "PING", user="intruder", password="anything")
    assert "WRONGPASS" in intruder or "AUTH failed" in intruder, intruder
    assert "intruder" not in helpers.docker("exec", D12, "cat", "/etc/redis/users.acl").stdout

    helpers.assert_no_changes(helpers.molecule_playbook("converge.yml").stdout, hosts=HOSTS)
