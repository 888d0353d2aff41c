"""Behaviour of selfhost.dify.base on the converged molecule hosts (debian13, debian12).

converge.yml sets the time zone to Europe/Berlin, chrony to a loopback server without
clock control, the admin user opsadmin with a test-only key, base_sysctl and the example
rule variable selfhost_firewall_rules_example; molecule.yml gives debian13 fail2ban and
a rule opening 9100/tcp to debian12 only. prepare.yml created the foreign nftables table
`ip foreign_docker_like` (standing for Docker's) before the role ran.

Everything is checked the way a user of the hosts would see it: services, effective
configuration (sshd -T, apt-config, nft list), real SSH logins and TCP connections
between the two hosts. The drift tests at the end edit the hosts, so they run last.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests import helpers  # noqa: E402  pylint: disable=wrong-import-position

SCENARIO = Path(__file__).resolve().parents[1]
HOSTS = sorted(helpers.ansible_inventory(helpers.molecule_inventory())["_meta"]["hostvars"])
# The containers are named after the platforms; the docker backend is fast and needs no SSH.
testinfra_hosts = [f"docker://{name}" for name in HOSTS]
# Platform names carry the scenario name (shared config): base-debian13, base-debian12.
D13 = next(h for h in HOSTS if h.endswith("debian13"))
D12 = next(h for h in HOSTS if h.endswith("debian12"))

TEST_KEY = SCENARIO / "files" / "opsadmin_test_only_ed25519"
CLIENT_KEY_PATH = "/root/.ssh/opsadmin_test_only_ed25519"
SSH_CLIENT_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                   "-o", "ConnectTimeout=10", "-o", "BatchMode=yes"]


def name_of(host) -> str:
    return host.backend.name


def other(name: str) -> str:
    return next(h for h in HOSTS if h != name)


def ip_of(name: str) -> str:
    return helpers.container_ip(name)


@pytest.fixture(scope="module")
def ssh_client_key():
    """The test-only private key, installed as root's client key on every test host."""
    key = TEST_KEY.read_text()
    for name in HOSTS:
        helpers.run(["docker", "exec", "-i", name, "sh", "-c",
                     f"umask 077; mkdir -p /root/.ssh; cat > {CLIENT_KEY_PATH}"], input=key)
    return CLIENT_KEY_PATH


# -- time -----------------------------------------------------------------------------

def test_timezone_is_in_effect(host):
    assert host.check_output("timedatectl show -p Timezone --value") == "Europe/Berlin"
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Europe/Berlin"
    assert host.check_output("date +%Z") in ("CET", "CEST")


def test_chrony_uses_the_configured_sources_and_never_sets_the_clock(host):
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert conf.startswith("# Managed by selfhost.dify (role base); local edits are overwritten.\n")
    assert "server 127.0.0.1 iburst" in conf.splitlines()
    assert not [line for line in conf.splitlines() if line.startswith("pool ")]
    assert host.service("chrony").is_running
    assert host.service("chrony").is_enabled
    args = host.check_output("ps -o args= -C chronyd").splitlines()
    assert args and all(" -x" in a for a in args), args
    assert "127.0.0.1" in host.check_output("chronyc -n sources")


# -- automatic updates ---------------------------------------------------------------------

def test_unattended_upgrades_take_security_updates_only(host):
    codename = host.system_info.codename
    dump = host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern")
    patterns = [line.split('"')[1] for line in dump.splitlines() if line.startswith("Unattended-Upgrade::Origins-Pattern::")]
    assert patterns and all("label=Debian-Security" in p for p in patterns), patterns
    run = host.run("unattended-upgrade --dry-run --debug")
    assert run.rc == 0, run.stdout + run.stderr
    assert f"origin=Debian,codename={codename}-security,label=Debian-Security" in run.stdout + run.stderr
    periodic = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic
    assert host.service("apt-daily-upgrade.timer").is_enabled


# -- admin users and SSH -------------------------------------------------------------------

def test_opsadmin_exists_with_exactly_the_test_key_and_passwordless_sudo(host):
    user = host.user("opsadmin")
    assert user.exists and user.shell == "/bin/bash"
    keys = host.file("/home/opsadmin/.ssh/authorized_keys")
    assert keys.user == "opsadmin" and keys.mode == 0o600
    expected = (SCENARIO / "files" / "opsadmin_test_only_ed25519.pub").read_text().strip()
    assert [k for k in keys.content_string.splitlines() if k.strip()] == [expected]
    assert host.run("runuser -u opsadmin -- sudo -n true").rc == 0
    sudoers = host.file("/etc/sudoers.d/selfhost-admins")
    assert sudoers.mode == 0o440
    assert host.run("visudo -cf /etc/sudoers.d/selfhost-admins").rc == 0


def test_sshd_effective_configuration_is_hardened(host):
    effective = set(host.check_output("sshd -T").splitlines())
    for line in ("passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin without-password",
                 "permitemptypasswords no", "x11forwarding no", "maxauthtries 4", "logingracetime 30",
                 "clientaliveinterval 300", "clientalivecountmax 2", "port 22"):
        assert line in effective, line
    assert host.service("ssh").is_running
    drop_in = host.file("/etc/ssh/sshd_config.d/00-selfhost.conf")
    assert drop_in.content_string.startswith("# Managed by selfhost.dify (role base)")


@pytest.mark.parametrize("server", HOSTS)
def test_password_logins_are_refused_by_the_server(server):
    """From the other host, a client willing to use only passwords is told: publickey only."""
    out = helpers.docker("exec", other(server), "ssh", *SSH_CLIENT_OPTS,
                         "-o", "PubkeyAuthentication=no",
                         "-o", "PreferredAuthentications=password,keyboard-interactive",
                         f"opsadmin@{ip_of(server)}", "true", check=False).stdout
    assert "Permission denied (publickey)." in out, out


@pytest.mark.parametrize("server", HOSTS)
def test_key_login_works_and_gets_passwordless_sudo(server, ssh_client_key):
    out = helpers.docker("exec", other(server), "ssh", *SSH_CLIENT_OPTS, "-i", ssh_client_key,
                         f"opsadmin@{ip_of(server)}", "sudo -n id -un").stdout
    assert out.strip().splitlines()[-1] == "root"


# -- kernel settings and journal -------------------------------------------------------------

def test_ip_forwarding_stays_on_and_base_sysctl_is_written(host):
    assert host.check_output("sysctl -n net.ipv4.ip_forward") == "1"
    conf = host.file("/etc/sysctl.d/60-selfhost.conf").content_string
    assert "net.ipv4.ip_forward=1" in conf.splitlines()
    assert "net.core.somaxconn=4096" in conf.splitlines()
    assert host.check_output("sysctl -n net.core.somaxconn") == "4096"


def test_journal_is_persistent_and_capped(host):
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert host.file(f"/var/log/journal/{machine_id}/system.journal").exists
    effective = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "Storage=persistent" in effective and "SystemMaxUse=1G" in effective
    # journald states the cap it applies when it opens the system journal.
    log = host.check_output("journalctl -b -u systemd-journald -o cat --no-pager").splitlines()
    opened = [line for line in log if line.startswith("System Journal (")]
    assert opened and (", max 1G," in opened[-1] or ", max 1.0G," in opened[-1]), opened


# -- firewall ----------------------------------------------------------------------------

def test_selfhost_table_drops_by_default(host):
    table = host.check_output("nft list table inet selfhost")
    assert "type filter hook input priority filter; policy drop;" in table
    assert 'tcp dport 22 accept comment "ssh"' in table
    assert 'tcp dport { 80, 443 } accept comment "public"' in table
    assert host.service("nftables").is_enabled
    # Forwarded traffic is left alone except connections to ports Docker publishes (DNAT),
    # which only the sources of published rules may open (none here).
    assert "type filter hook forward priority filter; policy accept;" in table
    assert 'ct status dnat drop comment "published ports: only the sources above"' in table


def test_rules_from_selfhost_firewall_rules_variables_are_merged(host):
    table = host.check_output("nft list table inet selfhost")
    assert 'ip saddr 192.0.2.0/24 udp dport 60000-60010 accept comment "example-udp-range"' in table
    assert 'ip6 saddr 2001:db8::/32 udp dport 60000-60010 accept comment "example-udp-range"' in table


def test_rule_sources_name_inventory_hosts(host):
    table = host.check_output("nft list table inet selfhost")
    if name_of(host) == D13:
        assert f'ip saddr {ip_of(D12)} tcp dport 9100 accept comment "metrics-from-debian12"' in table
    else:
        assert "9100" not in table


def test_ssh_is_reachable_from_the_other_host():
    assert helpers.probe(D12, ip_of(D13), 22) == "open"
    assert helpers.probe(D13, ip_of(D12), 22) == "open"


def test_unopened_port_is_dropped():
    with helpers.listening(D13, 8080):
        assert helpers.probe(D13, "127.0.0.1", 8080) == "open"  # the listener works
        assert helpers.probe(D12, ip_of(D13), 8080) == "timeout"


def test_rule_opens_a_port_to_its_source_only():
    with helpers.listening(D13, 9100):
        assert helpers.probe(D12, ip_of(D13), 9100) == "open"
    with helpers.listening(D12, 9100):
        assert helpers.probe(D12, "127.0.0.1", 9100) == "open"
        assert helpers.probe(D13, ip_of(D12), 9100) == "timeout"


@pytest.mark.parametrize("action", ["restart", "reload"])
def test_foreign_tables_survive_nftables_service_actions(host, action):
    assert host.run(f"systemctl {action} nftables").rc == 0
    tables = host.check_output("nft list tables").splitlines()
    assert "table ip foreign_docker_like" in tables
    assert "table inet selfhost" in tables
    assert 'comment "stands for Docker' in host.check_output("nft list table ip foreign_docker_like")


def test_stopping_nftables_removes_only_the_selfhost_table(host):
    try:
        assert host.run("systemctl stop nftables").rc == 0
        tables = host.check_output("nft list tables").splitlines()
        assert "table ip foreign_docker_like" in tables
        assert "table inet selfhost" not in tables
    finally:
        assert host.run("systemctl start nftables").rc == 0
    assert "table inet selfhost" in host.check_output("nft list tables").splitlines()


def test_state_directory_is_root_only(host):
    state = host.file("/var/lib/selfhost")
    assert state.is_directory and state.user == "root" and state.mode == 0o700


# -- fail2ban ------------------------------------------------------------------------------

def test_fail2ban_guards_sshd_through_nftables(host):
    if name_of(host) != D13:
        assert not host.package("fail2ban").is_installed
        return
    assert host.service("fail2ban").is_running
    status = host.run("fail2ban-client status sshd")
    assert status.rc == 0, status.stderr
    assert "_SYSTEMD_UNIT=ssh.service" in status.stdout
    assert host.check_output("fail2ban-client get sshd maxretry") == "5"
    assert host.check_output("fail2ban-client get sshd bantime") == "3600"
    assert "nftables-multiport" in host.check_output("fail2ban-client get sshd actions")


# -- idempotence seen from outside, then drift (these edit the hosts: keep them last) ------------

def test_check_mode_on_converged_hosts_reports_no_change():
    helpers.assert_check_mode_clean("converge.yml", hosts=HOSTS)


def test_hand_edits_are_detected_and_put_back():
    # Break debian13's SSH hardening and delete its live firewall table; add a stray
    # rule to debian12's live table.
    helpers.docker("exec", D13, "sh", "-c",
                   "sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' "
                   "/etc/ssh/sshd_config.d/00-selfhost.conf && nft delete table inet selfhost")
    helpers.docker("exec", D12, "nft", "add", "rule", "inet", "selfhost", "input", "tcp", "dport", "8080", "accept")

    # Check mode notices without repairing (limited to the concerns at stake, for speed).
    checked = helpers.molecule_playbook("converge.yml", "--check", "--diff", "--tags", "base_ssh,base_firewall").stdout
    would_change = helpers.changed_tasks(checked)
    assert "selfhost.dify.base : SSH | Harden sshd" in would_change[D13]
    assert "selfhost.dify.base : Firewall | Report that the live table would be loaded again" in would_change[D13]
    assert "selfhost.dify.base : Firewall | Report that the live table would be loaded again" in would_change[D12]
    assert "table inet selfhost" not in helpers.docker("exec", D13, "nft", "list", "tables").stdout
    assert "dport 8080" in helpers.docker("exec", D12, "nft", "list", "table", "inet", "selfhost").stdout
    assert "passwordauthentication yes" in helpers.docker("exec", D13, "sshd", "-T").stdout.splitlines()

    # A normal run repairs and says so.
    converged = helpers.molecule_playbook("converge.yml").stdout
    changed = helpers.changed_tasks(converged)
    assert "selfhost.dify.base : SSH | Harden sshd" in changed[D13]
    assert "selfhost.dify.base : Firewall | Load the selfhost table" in changed[D13]
    assert "selfhost.dify.base : Firewall | Load the selfhost table" in changed[D12]
    assert "selfhost.dify.base : Reload ssh" in changed[D13]

    assert "passwordauthentication no" in helpers.docker("exec", D13, "sshd", "-T").stdout.splitlines()
    for name in HOSTS:
        table = helpers.docker("exec", name, "nft", "list", "table", "inet", "selfhost").stdout
        assert "policy drop;" in table and "dport 8080" not in table
        assert "table ip foreign_docker_like" in helpers.docker("exec", name, "nft", "list", "tables").stdout

    # And the next run has nothing left to do.
    helpers.assert_no_changes(helpers.molecule_playbook("converge.yml").stdout, hosts=HOSTS)
