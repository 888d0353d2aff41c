# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``selfhost.dify.check`` filter: preflight checks that return error messages.

Documentation: check.yml next to this file.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
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
}


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
    return func(value, name)


class FilterModule:
    """selfhost.dify validation filters."""

    def filters(self):
        return {"check": check}
