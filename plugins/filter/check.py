# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``selfhost.dify.check`` and ``selfhost.dify.checks`` filters: preflight checks that
return error messages (``<variable>: <reason>``).

``check`` checks one value; ``checks`` runs the check entries a role's preflight declares as
data (``{name, kind, value, when, roles, ...}``), the kinds that compare several values
included. Documentation: check.yml and checks.yml next to this file.
"""

from __future__ import annotations

import inspect
import ipaddress
import os
import re
import zoneinfo
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.selfhost.dify.plugins.filter.firewall import firewall_rules_errors, source_networks_errors
from ansible_collections.selfhost.dify.plugins.module_utils.validation import (
    describe,
    entry_shape_errors,
    is_domain,
    is_email,
    is_hostname,
    is_posix_name,
    is_sha256,
    is_size,
    is_sql_identifier,
    parse_address,
    parse_port,
    secret_error,
    ssh_public_key_error,
    type_name,
    url_error,
)

_TIME_OF_DAY_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_ADMIN_USER_KEYS = ("name", "authorized_keys", "sudo", "shell", "state")
# Settings other roles rely on: base_sysctl may not turn them off.
_REQUIRED_SYSCTL = {"net.ipv4.ip_forward": "1"}


def _timezones():
    zones = zoneinfo.available_timezones()
    if not zones:
        raise AnsibleFilterError(
            "selfhost.dify.check: the controller has no IANA time zone database to check time zones "
            "against; install the tzdata package (apt) or the tzdata Python package on the controller"
        )
    return zones


def _check_timezone(value, name):
    if not isinstance(value, str) or not value:
        return ["%s: must be a time zone name such as Etc/UTC or Europe/Berlin, got %s" % (name, describe(value))]
    if value not in _timezones():
        return ["%s: %s is not a time zone in the IANA database (e.g. Etc/UTC, Europe/Berlin)" % (name, describe(value))]
    return []


def _parsed_by(parse):
    """A check that accepts what ``parse`` accepts and reports the reason it gives."""
    def check_value(value, name):
        try:
            parse(value)
        except ValueError as exc:
            return ["%s: %s %s" % (name, describe(value), exc)]
        return []
    return check_value


_check_port = _parsed_by(parse_port)
_check_ip_address = _parsed_by(parse_address)


def _satisfying(predicate, what):
    """A check that accepts what ``predicate`` accepts and otherwise says the value "is not <what>"."""
    def check_value(value, name):
        return [] if predicate(value) else ["%s: %s is not %s" % (name, describe(value), what)]
    return check_value


_check_size = _satisfying(is_size, "a size such as 500M or 1G (a number with an optional K, M, G, T suffix)")
_check_time_of_day = _satisfying(lambda value: isinstance(value, str) and bool(_TIME_OF_DAY_RE.match(value)),
                                 "a time of day HH:MM (00:00-23:59)")
_check_domain = _satisfying(is_domain, "a fully qualified domain name such as dify.example.com")
_check_email = _satisfying(is_email, "an e-mail address such as ops@example.com")
_check_sha256 = _satisfying(is_sha256, "a SHA-256 checksum (64 hex digits, optionally prefixed sha256:)")
_check_sql_identifier = _satisfying(is_sql_identifier, "a plain PostgreSQL name (lower case letters, digits and _, "
                                                       "starting with a letter or _, at most 63 characters)")


def _check_ports(value, name):
    if not isinstance(value, (list, tuple)):
        return ["%s: must be a list of port numbers, got %s" % (name, type_name(value))]
    errors = []
    for index, item in enumerate(value):
        errors.extend(_check_port(item, "%s[%d]" % (name, index)))
    return errors


def _check_hosts(value, name):
    if not isinstance(value, (list, tuple)):
        return ["%s: must be a list of host names or IP addresses, got %s" % (name, type_name(value))]
    errors = []
    for index, item in enumerate(value):
        if is_hostname(item):
            continue
        try:
            parse_address(item)
        except ValueError:
            errors.append("%s[%d]: %s is neither a host name nor an IP address" % (name, index, describe(item)))
    return errors


def _check_sysctl(value, name):
    if not isinstance(value, Mapping):
        return ["%s: must be a dict of sysctl name to value, got %s" % (name, type_name(value))]
    errors = []
    for key, setting in value.items():
        where = "%s[%s]" % (name, describe(key))
        if not isinstance(key, str) or not key or any(c.isspace() or c == "=" for c in key):
            errors.append("%s: %s is not a sysctl name (e.g. net.core.somaxconn)" % (where, describe(key)))
            continue
        if isinstance(setting, bool):
            setting = "1" if setting else "0"
        if not isinstance(setting, (str, int, float)) or "\n" in str(setting) or not str(setting).strip():
            errors.append("%s: the value must be a non-empty string or number, got %s" % (where, describe(setting)))
            continue
        required = _REQUIRED_SYSCTL.get(key.replace("/", "."))
        if required is not None and str(setting).strip() != required:
            errors.append("%s: must stay %s (Docker needs IP forwarding); remove it from %s" % (where, required, name))
    return errors


def _check_admin_users(value, name):
    if not isinstance(value, (list, tuple)):
        return ["%s: must be a list of users ({name, authorized_keys, sudo, shell, state}), got %s"
                % (name, type_name(value))]
    errors = []
    seen = {}
    for index, user in enumerate(value):
        where = "%s[%d]" % (name, index)
        shape_errors, is_dict = entry_shape_errors(user, where, _ADMIN_USER_KEYS, "with at least a name")
        errors.extend(shape_errors)
        if not is_dict:
            continue
        username = user.get("name")
        if not is_posix_name(username):
            errors.append("%s.name: %s is not a valid user name (lower case letters, digits, _ and -, "
                          "starting with a letter or _, at most 32 characters)" % (where, describe(username)))
        elif username in seen:
            errors.append("%s.name: %s is listed twice (also %s[%d])" % (where, describe(username), name, seen[username]))
        else:
            seen[username] = index
        if username == "root":
            errors.append("%s.name: root cannot be managed as an admin user" % where)
        state = user.get("state", "present")
        if state not in ("present", "absent"):
            errors.append("%s.state: must be present or absent, got %s" % (where, describe(state)))
        sudo = user.get("sudo", True)
        if not isinstance(sudo, bool):
            errors.append("%s.sudo: must be true or false, got %s" % (where, describe(sudo)))
        shell = user.get("shell", "/bin/bash")
        if not isinstance(shell, str) or not shell.startswith("/") or any(c.isspace() for c in shell):
            errors.append("%s.shell: must be an absolute path such as /bin/bash, got %s" % (where, describe(shell)))
        keys = user.get("authorized_keys", [])
        if not isinstance(keys, (list, tuple)):
            errors.append("%s.authorized_keys: must be a list of public keys, got %s" % (where, type_name(keys)))
            continue
        for key_index, key in enumerate(keys):
            reason = ssh_public_key_error(key)
            if reason:
                errors.append("%s.authorized_keys[%d]: %s %s" % (where, key_index, describe(key), reason))
    return errors


def _check_secret(value, name):
    reason = secret_error(value)
    return ["%s: %s" % (name, reason)] if reason else []


def _check_url(value, name):
    reason = url_error(value)
    return ["%s: %s %s" % (name, describe(value), reason)] if reason else []


# -- kinds that take more than the value (extra keys of a check entry) -----------------------

_FAIL2BAN_TIME_RE = re.compile(r"^(-1|[0-9]+(y|mo|w|d|h|m|s)?)$")


def _check_fail2ban_time(value, name):
    if isinstance(value, (str, int)) and not isinstance(value, bool) and _FAIL2BAN_TIME_RE.match(str(value)):
        return []
    return ["%s: %s is not a fail2ban time such as 10m, 1h, 1d or -1" % (name, value)]


def _check_required_domain(value, name):
    """The site's own name: set, and a fully qualified domain name."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ["%s: is missing: set the public name of the Dify site, such as dify.example.com "
                "(every URL derives from it)" % name]
    return _check_domain(value, name)


def _check_domains(value, name):
    if not isinstance(value, (list, tuple)):
        return ["%s: must be a list of domain names, got %s" % (name, type_name(value))]
    errors = []
    for item in value:
        errors.extend(_check_domain(item, name))
    return errors


def _check_rule(value, name, ok, reason):
    """A rule of one clause, decided by the caller: ``ok`` false reports ``name: reason``."""
    del value
    return [] if _truthy(ok) else ["%s: %s" % (name, reason)]


# The Debian package of each client library the health module's probes use on the host.
_PROBE_PACKAGES = {"postgresql": "python3-psycopg2", "redis": "python3-redis", "s3": "python3-botocore"}
_DATA_PLAYS = "site.yml --tags postgresql,redis,object_storage"


def _check_dify_prerequisites(value, name, files=(), probes=(), result=None):
    """What a Dify host needs from the other plays: the Docker socket and a compose plugin among
    ``files`` (paths found on the host), and the data services ``probes`` (health module checks)
    answering in ``result`` (the module's registered result; without checks, its message names
    the client libraries the host lacks)."""
    del value, name
    files = [str(item) for item in (files or [])]
    errors = []
    if "/run/docker.sock" not in files:
        errors.append("Docker: the engine does not run here (no /run/docker.sock): converge the docker play first"
                      " (site.yml --tags docker)")
    if not any(re.search(r"/cli-plugins/docker-compose$", item) for item in files):
        errors.append("Docker Compose: no compose plugin here: converge the docker play first (site.yml --tags docker)")
    result = result if isinstance(result, Mapping) else {}
    answered = result.get("checks") or []
    if not answered:
        message = str(result.get("msg") or "")
        missing = {kind for kind, package in _PROBE_PACKAGES.items() if package in message}
        for probe in probes or []:
            if isinstance(probe, Mapping) and probe.get("type") in missing:
                errors.append("%s cannot be probed: this host lacks %s (site.yml --tags base installs it; converge the"
                              " postgresql, redis and object_storage plays too if the service is missing: %s)"
                              % (probe.get("name"), _PROBE_PACKAGES[probe["type"]], _DATA_PLAYS))
    for check_result in answered:
        if isinstance(check_result, Mapping) and not check_result.get("healthy"):
            errors.append("%s does not answer: %s (converge the postgresql, redis and object_storage plays first: %s)"
                          % (check_result.get("name"), check_result.get("detail"), _DATA_PLAYS))
    return errors


def _check_at_least(value, name, minimum, unit=""):
    """A number of at least ``minimum`` (``| int`` semantics: a non-number is 0)."""
    try:
        number = int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is not None and number >= minimum:
        return []
    if minimum == 0:
        return ["%s: must be 0 or more%s, got %s" % (name, " (%s)" % unit if unit else "", value)]
    return ["%s: must be at least %d%s, got %s" % (name, minimum, " (%s)" % unit if unit else "", value)]


def _check_firewall_rules(value, name, hostvars=None, groups=None):
    """Firewall rule sets ``{variable: rules}`` (``name`` is not used: each message names its set)."""
    del name
    return firewall_rules_errors(value, hostvars, groups)


def _check_source_networks(value, name, hostvars=None, groups=None):
    return source_networks_errors(value, name, hostvars, groups)


def _check_whole_number(value, name, minimum=0, unit=""):
    """A whole number written as digits (no sign, no fraction) of at least ``minimum``."""
    text = str(value)
    if not isinstance(value, bool) and text.isdigit() and text.isascii() and int(text) >= minimum:
        return []
    of = " of %s" % unit if unit else ""
    if minimum == 0:
        return ["%s: must be a whole number%s (0 or more), got %s" % (name, of, text)]
    if unit:
        return ["%s: must be a whole number%s (at least %d), got %s" % (name, of, minimum, text)]
    return ["%s: must be a whole number of at least %d, got %s" % (name, minimum, text)]


def _check_artifact(value, name, url="", path="", sha256=None, stat=None, required=False, what="binary", hint=""):
    """A binary from ``<name>_url`` (the host downloads it) or ``<name>_path`` (a file on the
    controller, whose ``stat`` with a sha256 checksum is given) and its ``<name>_sha256``;
    ``hint`` says where such a URL points (e.g. a release page on a mirror)."""
    del value
    url_name, path_name, sha_name = name + "_url", name + "_path", name + "_sha256"
    url, path = url or "", path or ""
    errors = []
    if (url and path) or (required and not url and not path):
        errors.append("%s / %s: set %s (a URL the host downloads the %s from%s, or a file on the controller)"
                      % (url_name, path_name, "exactly one" if required else "only one", what,
                         ", " + hint if hint else ""))
    if not url and not path:
        return errors
    if url:
        errors.extend(_check_url(url, url_name))
    stat = stat if isinstance(stat, Mapping) else {}
    is_file = bool(stat.get("isreg", stat.get("exists", False)))
    if path and not url and not is_file:
        errors.append("%s: %s is not a file on the controller" % (path_name, path))
    sha_errors = _check_sha256(sha256, sha_name)
    errors.extend(sha_errors)
    if path and not url and is_file and not sha_errors:
        expected = sha256.lower()
        expected = expected[len("sha256:"):] if expected.startswith("sha256:") else expected
        if stat.get("checksum") != expected:
            errors.append("%s: %s has the SHA-256 %s, which is not %s (%s)"
                          % (path_name, path, stat.get("checksum"), sha_name, expected))
    return errors


def _check_ssh_lockout(value, name, over_ssh, login, password_authentication, permit_root_login,
                       login_keys_on_host=False, root_keys_on_host=False):
    """The SSH settings would not lock out the login user of this connection (or, on a local
    connection, everybody). ``value``: the admin users with their defaults filled in."""
    users = [u for u in (value or []) if isinstance(u, Mapping) and "name" in u]
    key_users = [u["name"] for u in users if u.get("state", "present") == "present" and u.get("authorized_keys")]
    removed = [u["name"] for u in users if u.get("state", "present") == "absent"]
    guard = "(set base_ssh_lockout_guard: false only if keys come from elsewhere)."
    errors = []
    if not _truthy(password_authentication):
        if _truthy(over_ssh) and login not in key_users and not _truthy(login_keys_on_host):
            errors.append("base_ssh_password_authentication: false would lock out the login user %s of this "
                          "connection: it has no ~/.ssh/authorized_keys on the host and no authorized_keys in "
                          "%s. Add its public key to %s, or keep base_ssh_password_authentication: true %s"
                          % (login, name, name, guard))
        elif not _truthy(over_ssh) and not key_users and not _truthy(root_keys_on_host):
            errors.append("base_ssh_password_authentication: false, but nobody could log in by SSH afterwards: "
                          "no user in %s has authorized_keys and root has no ~/.ssh/authorized_keys. Add a user "
                          "with a public key to %s, or keep base_ssh_password_authentication: true %s"
                          % (name, name, guard))
    if _truthy(over_ssh) and login == "root" and permit_root_login == "no":
        errors.append("base_ssh_permit_root_login: no would lock out root, the login user of this connection. "
                      "Connect as a user from %s (they get sudo) instead, or keep prohibit-password." % name)
    if _truthy(over_ssh) and login in removed:
        errors.append("%s: %s is the login user of this connection and cannot be removed (state: absent) in "
                      "the same run." % (name, login))
    return errors


_IPV4_CIDR_RE = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$")
_POOLS_SHAPE = "{base: 172.20.0.0/14, size: 24}"


def _check_docker_networks(value, name, bip="", dify_subnet="", host_networks=()):
    """Docker's address pools (``value``) and bridge address (``bip``) must be well formed and
    overlap neither each other, the Dify subnet nor the host's own IPv4 networks
    (``host_networks``: ``[{iface, cidr}]``)."""
    errors = []
    nets = []
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)) or not value:
        errors.append("%s: must be a non-empty list of {base, size}: an IPv4 network and the prefix length of the "
                      "subnets cut from it, such as %s" % (name, _POOLS_SHAPE))
    else:
        for index, pool in enumerate(value):
            where = "%s[%d]" % (name, index)
            if not isinstance(pool, Mapping) or "base" not in pool or "size" not in pool:
                errors.append("%s: must be a dict {base, size} such as %s" % (where, _POOLS_SHAPE))
            else:
                nets.append({"label": where, "value": str(pool["base"]), "kind": "pool", "size": str(pool["size"])})
    if bip:
        nets.append({"label": "docker_bip", "value": str(bip), "kind": "bip"})
    nets.append({"label": "selfhost_dify_subnet", "value": str(dify_subnet), "kind": "dify"})
    for net in host_networks or ():
        nets.append({"label": "this host's network", "value": str(net["cidr"]), "kind": "host",
                     "iface": net.get("iface", "")})
    parsed = []
    for pos, net in enumerate(nets):
        text = net["value"]
        well_formed = bool(_IPV4_CIDR_RE.match(text))
        if well_formed:
            address, prefix = text.split("/")
            octets = [int(o) for o in address.split(".")]
            prefix = int(prefix)
            well_formed = max(octets) <= 255 and prefix <= 32
        if not well_formed:
            if net["kind"] != "host":
                errors.append("%s: %s is not an IPv4 %s" % (
                    net["label"], text, "address with prefix length, such as 172.19.0.1/24" if net["kind"] == "bip"
                    else "network in CIDR notation, such as 172.20.0.0/14"))
            continue
        addr = int(ipaddress.IPv4Address(".".join(str(o) for o in octets)))
        block = 2 ** (32 - prefix)
        start = addr - addr % block
        usable = True
        if net["kind"] == "pool" and addr != start:
            usable = False
            errors.append("%s: %s has host bits set; the network is %s/%d"
                          % (net["label"], text, ipaddress.IPv4Address(start), prefix))
        elif net["kind"] == "pool" and (not net["size"].isdigit() or int(net["size"]) < prefix
                                        or int(net["size"]) > 30 or prefix < 8):
            errors.append("%s: size %s must be a prefix length between the base's (%d, at least 8) and 30, such as 24"
                          % (net["label"], net["size"], prefix))
        elif net["kind"] == "bip" and (addr == start or prefix > 30 or addr == start + block - 1):
            usable = False
            errors.append("docker_bip: %s must be the bridge's own address (not the network or broadcast address) "
                          "with a prefix length up to 30, such as 172.19.0.1/24" % text)
        if usable:
            parsed.append(dict(net, start=start, prefix=prefix, pos=pos))
    for a in parsed:
        if a["kind"] not in ("pool", "bip"):
            continue
        for b in parsed:
            if a["kind"] == "pool":
                relevant = b["kind"] in ("dify", "host") or (b["kind"] == "pool" and b["pos"] < a["pos"])
            else:
                relevant = b["kind"] in ("pool", "dify", "host")
            if not relevant:
                continue
            common = 2 ** (32 - min(a["prefix"], b["prefix"]))
            if a["start"] // common != b["start"] // common:
                continue
            if b["kind"] == "pool":
                other = "%s (%s)" % (b["label"], b["value"])
            elif b["kind"] == "dify":
                other = "selfhost_dify_subnet (%s), the fixed subnet of the Dify compose network" % b["value"]
            else:
                other = "this host's network %s (%s); containers could not reach that network" % (b["value"], b["iface"])
            errors.append("%s: %s overlaps %s" % (a["label"], a["value"], other))
    return errors


# daemon.json settings that have a variable of their own (which is checked).
_DOCKER_OWN_SETTINGS = (
    ("default-address-pools", "set docker_default_address_pools instead (it is checked against the host's "
                              "networks and the Dify subnet)"),
    ("bip", "set docker_bip instead (it is checked against the host's networks)"),
    ("registry-mirrors", "set docker_registry_mirrors instead (its URLs are checked)"),
)


def _check_docker_daemon_extra(value, name):
    if not isinstance(value, Mapping):
        return ["%s: must be a dict of daemon.json settings" % name]
    errors = []
    if "hosts" in value:
        errors.append("%s.hosts: conflicts with -H fd:// of the packaged docker.service, so dockerd would not "
                      "start; add listeners with a systemd drop-in instead" % name)
    for key, reason in _DOCKER_OWN_SETTINGS:
        if key in value:
            errors.append("%s.%s: %s" % (name, key, reason))
    return errors


def _check_registry_mirrors(value, name):
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        return ["%s: must be a list of URLs" % name]
    errors = []
    for item in value:
        errors.extend(_check_url(item, name))
    for item in value:
        if isinstance(item, str) and re.search(r"[?#@]", item):
            errors.append("%s: %s must not contain a query, a fragment or user:password (the daemon refuses it)"
                          % (name, item))
    return errors


def _check_docker_users(value, name, passwd=None):
    """User names that exist on the host (``passwd``: getent's passwd database)."""
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        return ["%s: must be a list of user names" % name]
    passwd = passwd if isinstance(passwd, Mapping) else {}
    errors = ["%s: %s is not a user name (lower case letters, digits, _ and -)" % (name, user)
              for user in value if not is_posix_name(user)]
    errors.extend("%s: %s is not a user on this host; create it first (the base role manages admin users), the "
                  "docker role only adds it to the docker group" % (name, user)
                  for user in value if is_posix_name(user) and user not in passwd)
    return errors


def _check_openpgp_fingerprint(value, name):
    if re.match(r"^[0-9A-Fa-f]{40}$", str(value).replace(" ", "")):
        return []
    return ["%s: %s is not an OpenPGP fingerprint (40 hexadecimal digits)" % (name, value)]


def _check_acme(value, name, directory="", ca_root=""):
    """ACME settings: the account e-mail (``value``), the directory URL (https) and an optional
    CA root certificate on the controller."""
    errors = _check_email(value, name)
    directory_errors = _check_url(directory, "selfhost_edge_acme_directory")
    errors.extend(directory_errors)
    if not directory_errors and not str(directory).startswith("https://"):
        errors.append("selfhost_edge_acme_directory: must be an https:// URL (ACME directories are served over TLS)")
    if ca_root:
        if not os.path.isfile(ca_root):
            errors.append("selfhost_edge_acme_ca_root: %s is not a file on the controller" % ca_root)
        else:
            with open(ca_root, encoding="utf-8", errors="replace") as handle:
                if "-----BEGIN CERTIFICATE-----" not in handle.read():
                    errors.append("selfhost_edge_acme_ca_root: %s holds no PEM certificate" % ca_root)
    return errors


def _check_tls_files(value, name, key=""):
    """A certificate chain (``value``) and its key given as files on the controller."""
    errors = []
    for variable, path, what in ((name, value, "PEM certificate (full chain)"),
                                 ("selfhost_edge_tls_key", key, "PEM private key")):
        if not isinstance(path, str) or not path or not os.path.isfile(path):
            errors.append("%s: selfhost_edge_tls is provided, so this must name the %s file on the controller; got %s"
                          % (variable, what, path or "nothing"))
    return errors


def _check_upstreams(value, name):
    if isinstance(value, (list, tuple)) and not value:
        return ["%s: is empty; the edge needs at least one Dify host (put a host in the dify group, or 127.0.0.1 "
                "when Dify runs on the edge host)" % name]
    return _check_hosts(value, name)


def _check_simple_path(value, name):
    if isinstance(value, str) and re.match(r"^/[A-Za-z0-9/_.-]+$", value):
        return []
    return ["%s: must be an absolute path (letters, digits, /, _, . and -), got %s" % (name, value)]


def _check_url_paths(value, name, example="/path", nonempty=False):
    ok = isinstance(value, (list, tuple)) and all(isinstance(p, str) and re.match(r"^/[A-Za-z0-9/_.-]*$", p)
                                                  for p in value)
    if ok and (value or not nonempty):
        return []
    return ["%s: every entry must be a URL path such as %s%s" % (name, example, " (at least one)" if nonempty else "")]


def _check_nginx_size(value, name):
    if re.match(r"^[1-9][0-9]*[kKmMgG]?$", str(value)):
        return []
    return ["%s: %s is not a size nginx takes, such as 100M or 1G (a number with an optional k, m or g suffix)"
            % (name, value)]


_ACCESS_KEY_RE = re.compile(r"^[A-Za-z0-9._-]{3,128}$")


def _check_access_key(value, name):
    """An S3 access key or user name: not a secret, but set and not a published sample or a
    placeholder."""
    return [message for message in _check_secret(value, name)
            if re.search("missing|published sample|placeholder", message)]


def _check_plain_key(value, name):
    """When set, 3 to 128 letters, digits, dots, dashes or underscores (MinIO user names,
    access keys that go into JSON and URLs)."""
    if isinstance(value, str) and value and not _ACCESS_KEY_RE.match(value):
        return ["%s: must be 3 to 128 letters, digits, dots, dashes or underscores" % name]
    return []


def _check_image_archives(value, name, required=False, on_controller=False):
    """Image tarballs ``[{path, sha256}]`` on the controller; ``required``: at least one;
    ``on_controller``: each path is a file of the controller."""
    if not isinstance(value, (list, tuple)):
        return ["%s: must be a list of {path, sha256}, got %s" % (name, type_name(value))]
    errors = []
    if required and not value:
        errors.append("%s: archive needs at least one {path, sha256} (docker save tarballs on the controller)" % name)
    with_path = [entry for entry in value if isinstance(entry, Mapping) and "path" in entry]
    errors.extend("%s: an entry has no path: %s" % (name, entry) for entry in value if entry not in with_path)
    errors.extend("%s: %s needs its sha256 (64 hex digits)" % (name, entry["path"])
                  for entry in with_path if not is_sha256(entry.get("sha256", "")))
    if on_controller:
        errors.extend("%s: %s is not a file on the controller" % (name, entry["path"])
                      for entry in with_path if not os.path.isfile(str(entry["path"])))
    return errors


def _check_known_keys(value, name, known=(), what="a known key"):
    """The keys of a dict are among ``known``."""
    if not isinstance(value, Mapping):
        return ["%s: must be a dict, got %s" % (name, type_name(value))]
    return ["%s: %s is not %s (%s)" % (name, key, what, ", ".join(known)) for key in value if key not in known]


def _check_env_values(value, name, extra=None, extra_name="extra"):
    """Values that go into a .env file in single quotes (``value``: variable name to value;
    ``extra``: further settings, named ``<extra_name>.<key>``). The values are never shown."""
    del name
    values = list((value or {}).items()) if isinstance(value, Mapping) else []
    if isinstance(extra, Mapping):
        values.extend(("%s.%s" % (extra_name, key), setting) for key, setting in extra.items())
    return ["%s: may not contain a single quote or a line break (.env quotes values in single quotes)" % variable
            for variable, setting in values if re.search("['\n\r]", str(setting if setting is not None else ""))]


def _check_required_host(value, name, missing="is missing"):
    """A host name or IP address that must be set (``missing``: what to say when it is not)."""
    if value is None or value == "":
        return ["%s: %s" % (name, missing)]
    return _check_hosts([value], name)


def _check_ip_addresses(value, name):
    """A list of IP addresses (none: an empty list), each reported by its index."""
    if value is None:
        return []
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        return ["%s: must be a list of IP addresses, got %s" % (name, type_name(value))]
    errors = []
    for index, item in enumerate(value):
        errors.extend(_check_ip_address(item, "%s[%d]" % (name, index)))
    return errors


def _check_controller_files(value, name):
    """Results of a looped stat on the controller: each item must be a regular file."""
    return ["%s: %s is not a file on the controller" % (name, result.get("item"))
            for result in (value or []) if not (result.get("stat") or {}).get("isreg")]


_S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _check_s3_bucket(value, name):
    if isinstance(value, str) and _S3_BUCKET_RE.match(value) and not re.search(r"\.\.|^[0-9.]+$", value):
        return []
    return ["%s: %s is not an S3 bucket name (3-63 lower case letters, digits, dots and dashes)" % (name, value)]


def _check_data_dir(value, name):
    """An absolute directory path without spaces, not / and without . or .. parts."""
    if isinstance(value, str) and re.match(r"^/[^\s]*[^/\s]$", value) and not re.search(r"/\.\.?(/|$)", value):
        return []
    return ["%s: %s must be an absolute path (no spaces, not /)" % (name, value)]


_RESTIC_S3_RE = re.compile(r"^s3:https?://[^/\s]+/([^/\s]+)(/[^\s]*)?$")


def _check_restic_repository(value, name):
    """A restic repository: an absolute local path (as ``data_dir``), or
    ``s3:http(s)://<host>[:port]/<bucket>[/<prefix>]`` with a valid bucket name."""
    if isinstance(value, str) and value.startswith("s3:"):
        match = _RESTIC_S3_RE.match(value)
        if match and not _check_s3_bucket(match.group(1), name):
            return []
        return ["%s: %s is not an S3 repository of the form s3:https://<host>[:port]/<bucket>[/<prefix>]" % (name, value)]
    if isinstance(value, str) and not _check_data_dir(value, name):
        return []
    return ["%s: %s is neither an absolute path nor s3:https://<host>[:port]/<bucket>[/<prefix>]" % (name, value)]


def _check_user_name(value, name):
    return [] if is_posix_name(value) else ["%s: %s is not a valid user name" % (name, value)]


def _check_grpc_ports(value, name):
    """Ports of servers that also listen on port + 10000 (gRPC): ``value`` maps each variable
    to its port (``name`` is not used: each message names its variable); none may collide."""
    del name
    errors = []
    seen = {}
    for variable, port in (value or {}).items():
        found = _check_port(port, variable)
        if found:
            errors.extend(found)
        elif int(port) > 55535:
            errors.append("%s: %s is above 55535 (its gRPC port is %s + 10000)" % (variable, port, port))
        else:
            for number in (int(port), int(port) + 10000):
                if number in seen:
                    errors.append("%s: port %d is also used by %s" % (variable, number, seen[number]))
                else:
                    seen[number] = variable
    return errors


def _check_free_port(value, name, taken=None):
    """A port (0: off) that none of ``taken`` (variable: port, each also using port + 10000) uses."""
    if str(value) == "0":
        return []
    errors = _check_port(value, name)
    if errors:
        return errors
    for variable, port in (taken or {}).items():
        try:
            used = (int(port), int(port) + 10000)
        except (TypeError, ValueError):
            continue
        if int(value) in used:
            return ["%s: port %s is also used by %s" % (name, value, variable)]
    return []


def _check_redis_bind(value, name, local_addresses=(), host_ipv4=(), host_address="", remote_clients=False):
    """Addresses Redis binds to: IP addresses of this host (``local_addresses``), among them
    ``host_address`` (the address clients are given) when ``remote_clients`` connect."""
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)) or not value:
        return ["%s: must be a non-empty list of IP addresses" % name]
    errors = []
    for item in value:
        errors.extend(_check_ip_address(item, name))
    if errors:
        return errors
    errors.extend("%s: %s is not an address of this host (it has %s); Redis could not listen there"
                  % (name, item, ", ".join(host_ipv4 or ())) for item in value if item not in local_addresses)
    if _truthy(remote_clients) and host_address not in value and not {"0.0.0.0", "::"} & set(value):
        errors.append("%s: must contain %s (selfhost_host_address, the address clients are given) while clients "
                      "connect from elsewhere (redis_allowed_sources, or selfhost_data_client_sources when unset); "
                      "or set redis_allowed_sources: [] for local clients only" % (name, host_address))
    return errors


_REDIS_SIZE_RE = re.compile(r"^([1-9][0-9]*)([KMGTPE]?)$")


def _check_redis_maxmemory(value, name, memtotal_mb=0):
    """``auto`` or a size of at least 64M and at most the host's memory (``memtotal_mb``)."""
    if value == "auto":
        return []
    match = _REDIS_SIZE_RE.match(str(value))
    if not match:
        return ["%s: %s is neither auto nor a size such as 512M or 4G (a number with an optional K, M, G or T suffix)"
                % (name, value)]
    size = int(match.group(1)) * 1024 ** "_KMGTPE".index(match.group(2) or "_")
    if size < 64 * 1024 ** 2:
        return ["%s: %s is below the minimum of 64M" % (name, value)]
    if size > int(memtotal_mb or 0) * 1024 ** 2:
        return ["%s: %s is more than the memory of this host (%s MB)" % (name, value, memtotal_mb)]
    return []


def _check_snapshot_points(value, name):
    """Redis save points "<seconds> <changes>"."""
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        return ["%s: must be a list of snapshot points such as \"300 100\", got %s" % (name, type_name(value))]
    return ["%s: %s is not a snapshot point \"<seconds> <changes>\" such as \"300 100\"" % (name, item)
            for item in value if not re.match(r"^[1-9][0-9]* [1-9][0-9]*$", str(item))]


def _check_ip_address_list(value, name):
    """A non-empty list of IP addresses (the messages name the list, not the index)."""
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)) or not value:
        return ["%s: must be a non-empty list of IP addresses" % name]
    errors = []
    for item in value:
        errors.extend(_check_ip_address(item, name))
    return errors


def _check_postgresql_settings(value, name):
    """postgresql.conf settings: a dict of setting names to values without line breaks."""
    if not isinstance(value, Mapping):
        return ["%s: must be a dict of postgresql.conf setting name to value" % name]
    errors = ["%s: '%s' is not a setting name" % (name, key)
              for key in value if not re.match(r"^[a-z][a-z0-9_.]*$", str(key))]
    errors.extend("%s.%s: the value contains a line break" % (name, key)
                  for key, setting in value.items() if isinstance(setting, str) and re.search(r"[\n\r]", setting))
    return errors


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


def _names(value):
    return [value] if isinstance(value, str) else list(value or [])


def _check_checks(value, name, role=None):
    """A nested list of check entries (``name`` is not used: each entry names its variable),
    those for ``role`` only when it is given: the inputs several roles share."""
    del name
    return checks(value, roles=None if role is None else _names(role))


_CHECKS = {
    "admin_users": _check_admin_users,
    "domain": _check_domain,
    "email": _check_email,
    "secret": _check_secret,
    "sha256": _check_sha256,
    "sql_identifier": _check_sql_identifier,
    "url": _check_url,
    "hosts": _check_hosts,
    "ip_address": _check_ip_address,
    "port": _check_port,
    "ports": _check_ports,
    "size": _check_size,
    "sysctl": _check_sysctl,
    "time_of_day": _check_time_of_day,
    "timezone": _check_timezone,
    "access_key": _check_access_key,
    "checks": _check_checks,
    "controller_files": _check_controller_files,
    "data_dir": _check_data_dir,
    "free_port": _check_free_port,
    "grpc_ports": _check_grpc_ports,
    "ip_address_list": _check_ip_address_list,
    "ip_addresses": _check_ip_addresses,
    "plain_key": _check_plain_key,
    "postgresql_settings": _check_postgresql_settings,
    "redis_bind": _check_redis_bind,
    "redis_maxmemory": _check_redis_maxmemory,
    "restic_repository": _check_restic_repository,
    "s3_bucket": _check_s3_bucket,
    "snapshot_points": _check_snapshot_points,
    "user_name": _check_user_name,
    "acme": _check_acme,
    "env_values": _check_env_values,
    "image_archives": _check_image_archives,
    "known_keys": _check_known_keys,
    "required_host": _check_required_host,
    "artifact": _check_artifact,
    "at_least": _check_at_least,
    "dify_prerequisites": _check_dify_prerequisites,
    "docker_daemon_extra": _check_docker_daemon_extra,
    "docker_networks": _check_docker_networks,
    "docker_users": _check_docker_users,
    "domains": _check_domains,
    "fail2ban_time": _check_fail2ban_time,
    "firewall_rules": _check_firewall_rules,
    "source_networks": _check_source_networks,
    "nginx_size": _check_nginx_size,
    "openpgp_fingerprint": _check_openpgp_fingerprint,
    "registry_mirrors": _check_registry_mirrors,
    "required_domain": _check_required_domain,
    "rule": _check_rule,
    "simple_path": _check_simple_path,
    "ssh_lockout": _check_ssh_lockout,
    "tls_files": _check_tls_files,
    "upstreams": _check_upstreams,
    "url_paths": _check_url_paths,
    "whole_number": _check_whole_number,
}
# The keys of a check entry that are not arguments of its kind.
_ENTRY_KEYS = ("name", "kind", "value", "when", "roles")


def check(value, kind, name):
    """Error messages (a list of str, empty when valid) for ``value`` checked as ``kind``.

    Every message starts with ``name`` (the variable, e.g. ``base_ssh_port``).
    """
    try:
        func = _CHECKS[kind]
    except (KeyError, TypeError):
        raise AnsibleFilterError(
            "selfhost.dify.check: unknown kind %s (known: %s)" % (describe(kind), ", ".join(sorted(_CHECKS)))
        ) from None
    if not isinstance(name, str) or not name:
        raise AnsibleFilterError("selfhost.dify.check: the variable name must be a non-empty string")
    try:
        inspect.signature(func).bind(value, name)
    except TypeError:
        raise AnsibleFilterError("selfhost.dify.check: the kind %s needs more arguments than a value; "
                                 "use selfhost.dify.checks" % describe(kind)) from None
    return func(value, name)


def checks(entries, roles=None):
    """Error messages of a list of check entries ``{name, kind, value, when, roles, ...}``.

    An entry whose ``when`` is false is skipped, and so is one whose ``roles`` (the roles that
    use the input) has none of ``roles`` (when given); its other keys are the arguments of its kind.
    """
    if isinstance(entries, (str, Mapping)) or not isinstance(entries, (list, tuple)):
        raise AnsibleFilterError("selfhost.dify.checks: expects a list of check entries {name, kind, value, when}")
    errors = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry.get("name"):
            raise AnsibleFilterError("selfhost.dify.checks: entry %d must be a dict with a name and a kind" % index)
        if not _truthy(entry.get("when", True)):
            continue
        if roles is not None and "roles" in entry and not set(_names(entry["roles"])) & set(_names(roles)):
            continue
        kind = entry.get("kind")
        try:
            func = _CHECKS[kind]
        except (KeyError, TypeError):
            raise AnsibleFilterError("selfhost.dify.checks: %s: unknown kind %s (known: %s)" % (
                entry["name"], describe(kind), ", ".join(sorted(_CHECKS)))) from None
        arguments = {key: value for key, value in entry.items() if key not in _ENTRY_KEYS}
        try:
            inspect.signature(func).bind(entry.get("value"), entry["name"], **arguments)
        except TypeError as exc:
            raise AnsibleFilterError("selfhost.dify.checks: %s: wrong arguments for the kind %s (%s)" % (
                entry["name"], kind, exc)) from None
        errors.extend(func(entry.get("value"), entry["name"], **arguments))
    return errors


class FilterModule:
    """selfhost.dify validation filters."""

    def filters(self):
        return {"check": check, "checks": checks}
