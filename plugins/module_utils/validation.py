# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Value checks shared by the selfhost.dify plugins.

Each ``parse_*`` function returns the normalized value or raises ``ValueError`` with a
short reason; each ``is_*`` function returns a bool. Callers add the variable name.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from collections.abc import Mapping

PORT_MIN = 1
PORT_MAX = 65535

# POSIX-portable user names as Debian's adduser accepts them by default, at most 32 chars.
_POSIX_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# systemd size values as journald.conf takes them: a number with an optional
# 1024-based suffix (K, M, G, T, P, E).
_SIZE_RE = re.compile(r"^[1-9][0-9]*[KMGTPE]?$")

# A DNS name (RFC 1123 labels); a trailing dot is allowed.
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}\.?$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")

_PORT_RANGE_RE = re.compile(r"^\s*([0-9]+)\s*-\s*([0-9]+)\s*$")

# Public key types sshd accepts in authorized_keys (DSA is gone from OpenSSH 10).
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_SSH_KEY_RE = re.compile(
    r"(?:^|\s)(" + "|".join(re.escape(t) for t in SSH_KEY_TYPES) + r")\s+([A-Za-z0-9+/]+={0,3})(?:\s|$)"
)


def describe(value):
    """A short, readable rendering of a value for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text


def type_name(value):
    """The YAML-ish type name of a value, for error messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, (list, tuple)):
        return "list"
    if value is None:
        return "null"
    return type(value).__name__


def entry_shape_errors(entry, where, allowed_keys, shape):
    """Check one entry of a list-of-dicts variable: it must be a dict (``shape`` says which
    one, e.g. "with at least a name") with no keys outside ``allowed_keys``.

    Returns ``(errors, is_dict)``; callers check the fields only when ``is_dict``.
    """
    if not isinstance(entry, Mapping):
        return ["%s: must be a dict %s, got %s" % (where, shape, type_name(entry))], False
    unknown = sorted(str(k) for k in entry if k not in allowed_keys)
    if unknown:
        return ["%s: unknown key(s) %s (allowed: %s)" % (where, ", ".join(unknown), ", ".join(allowed_keys))], True
    return [], True


def parse_port(value):
    """An int port 1-65535 from an int or a string of digits.

    The ``ValueError`` reason reads after the value: ``70000 is outside 1-65535``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("is not a port number 1-65535")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError("is not a port number 1-65535")
        value = int(value.strip())
    if not PORT_MIN <= value <= PORT_MAX:
        raise ValueError("is outside 1-65535")
    return value


def parse_port_or_range(value):
    """A ``(low, high)`` pair from a port (int or digits) or a ``"A-B"`` range string."""
    if isinstance(value, str):
        match = _PORT_RANGE_RE.match(value)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            for port in (low, high):
                if not PORT_MIN <= port <= PORT_MAX:
                    raise ValueError("has port %d outside 1-65535" % port)
            if low > high:
                raise ValueError("is a range whose start %d is above its end %d" % (low, high))
            return low, high
        if not value.strip().isdigit():
            raise ValueError('is neither a port 1-65535 nor a range "A-B"')
    port = parse_port(value)
    return port, port


def format_port_range(low, high):
    """The nftables spelling of a port or port range."""
    return str(low) if low == high else "%d-%d" % (low, high)


def parse_network(value):
    """An ``ipaddress`` network from an IPv4/IPv6 address or CIDR string.

    Host bits are allowed (``10.0.0.5/24`` means ``10.0.0.0/24``), anything else that is
    not an address is rejected (``10.0.0.300/24``, ``10.0.0.0/33``, ``fe80::1%eth0``).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is not an IP address or CIDR")
    text = value.strip()
    if "%" in text:
        raise ValueError("scoped IPv6 addresses are not supported")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ValueError("is not an IP address or CIDR (%s)" % exc) from None


def parse_address(value):
    """An ``ipaddress`` address (no prefix) from a string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is not an IP address")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError("is not an IP address") from None


def format_network(network):
    """The nftables spelling of a network: a bare address for a single host."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def is_posix_name(value):
    """Whether ``value`` is a portable user or group name."""
    return isinstance(value, str) and bool(_POSIX_NAME_RE.match(value))


def is_hostname(value):
    """Whether ``value`` is a DNS host name (not checked for existence)."""
    return isinstance(value, str) and bool(_HOSTNAME_RE.match(value)) and not value.replace(".", "").isdigit()


def is_size(value):
    """Whether ``value`` is a systemd size such as ``500M`` or ``1G``."""
    return isinstance(value, str) and bool(_SIZE_RE.match(value))


def ssh_public_key_error(value):
    """``None`` if ``value`` is an OpenSSH public key line, else the reason.

    Accepts ``[options] type base64 [comment]``; the base64 blob must decode and name the
    same key type as the line (so a truncated or pasted-wrong key is caught).
    """
    if not isinstance(value, str):
        return "must be a string, not %s" % type_name(value)
    if "\n" in value.strip() or "\r" in value:
        return "must be a single line (one key per list item)"
    match = _SSH_KEY_RE.search(value.strip())
    if not match:
        return "does not look like an OpenSSH public key (expected one of %s followed by base64 data)" % ", ".join(
            SSH_KEY_TYPES
        )
    key_type, blob = match.group(1), match.group(2)
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return "has key data that is not valid base64"
    if len(raw) < 4:
        return "has key data that is too short"
    (length,) = struct.unpack(">I", raw[:4])
    embedded = raw[4:4 + length]
    if embedded != key_type.encode("ascii"):
        return "key data does not match its type %s" % key_type
    return None
