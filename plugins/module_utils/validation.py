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
from urllib.parse import urlsplit

PORT_MIN = 1
PORT_MAX = 65535

# POSIX-portable user names as Debian's adduser accepts them by default, at most 32 chars.
_POSIX_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# systemd size values as journald.conf takes them: a number with an optional
# 1024-based suffix (K, M, G, T, P, E).
_SIZE_RE = re.compile(r"^[1-9][0-9]*[KMGTPE]?$")

# A DNS name (RFC 1123 labels); a trailing dot is allowed.
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}\.?$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")

# Values published as examples or shipped as defaults by Dify, MinIO, PostgreSQL images
# and tutorials, and placeholders: anyone can guess them, so no secret may be one of them.
SAMPLE_SECRETS = frozenset(s.lower() for s in (
    "difyai123456",
    "dify-sandbox",
    "minioadmin",
    "sk-9f73s3ljTXVcMT3Blb3ljTqtsKiGHXVcMT3BlbkFJLK7U",
    "QaHbTe77CtuXmsfyhR7+vRjI/+XbV1AaFy691iy+kGDv2Jvy0/eAh8Y1",
    "lYkiYYT6owG+71oLerGzA7GXCgOT++6ovaezWAjpCjf+Sjc3ZtU+qUEi",
    "password", "password123", "changeme", "change-me", "change_me", "secret", "admin",
    "administrator", "root", "postgres", "redis", "dify", "123456", "12345678",
    "1234567890", "qwerty", "letmein", "default", "test", "example",
))
# Words that mark a placeholder someone forgot to replace.
_PLACEHOLDER_RE = re.compile(r"(replace|change[-_ ]?me|changeit|example|placeholder|your[-_ ]?(password|secret|key))", re.I)
SECRET_MIN_LENGTH = 16

_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_SHA256_RE = re.compile(r"^(sha256:)?[0-9a-fA-F]{64}$")
# PostgreSQL role and database names the roles create: plain identifiers, no quoting needed.
_SQL_IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

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


def secret_error(value, min_length=SECRET_MIN_LENGTH):
    """Why ``value`` is not acceptable as a secret (None when it is). The value itself is
    never part of the reason: messages must not leak it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "is missing: set it in the inventory (ansible-vault encrypted)"
    if not isinstance(value, str):
        return "must be a string, got %s" % type_name(value)
    if value.strip().lower() in SAMPLE_SECRETS:
        return "is a published sample or default value; generate a random one (e.g. openssl rand -hex 24)"
    if _PLACEHOLDER_RE.search(value):
        return "looks like a placeholder that was never replaced; generate a random value (e.g. openssl rand -hex 24)"
    if len(value) < min_length:
        return "is too short (%d characters; at least %d): generate a random one (e.g. openssl rand -hex 24)" % (
            len(value), min_length)
    if len(set(value)) < 6:
        return "is too weak (fewer than 6 distinct characters); generate a random one (e.g. openssl rand -hex 24)"
    if any(c in value for c in "\r\n\x00"):
        return "contains a line break or NUL character"
    return None


def is_domain(value):
    """A fully qualified DNS name with at least two labels, no trailing dot, not an IP."""
    if not isinstance(value, str) or value.endswith(".") or "." not in value:
        return False
    try:
        ipaddress.ip_address(value)
        return False
    except ValueError:
        pass
    return bool(_HOSTNAME_RE.match(value)) and not value.split(".")[-1].isdigit()


def is_email(value):
    """An address mail servers and Dify accept: local@domain.tld."""
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL_RE.match(value):
        return False
    return is_domain(value.rsplit("@", 1)[1])


def is_sha256(value):
    """64 hex digits, optionally prefixed with ``sha256:``."""
    return isinstance(value, str) and bool(_SHA256_RE.match(value))


def is_sql_identifier(value):
    """A lower-case PostgreSQL identifier that needs no quoting (at most 63 bytes)."""
    return isinstance(value, str) and bool(_SQL_IDENTIFIER_RE.match(value))


def url_error(value, schemes=("http", "https")):
    """Why ``value`` is not an absolute URL with one of ``schemes`` and a host (None if it is)."""
    if not isinstance(value, str) or not value:
        return "must be an absolute URL such as https://host/path, got %s" % describe(value)
    try:
        parts = urlsplit(value)
        parts.port  # pylint: disable=pointless-statement  # raises on a bad port
    except ValueError as exc:
        return "is not a valid URL (%s)" % exc
    if parts.scheme not in schemes:
        return "must start with %s://" % "://, ".join(schemes)
    if not parts.hostname or any(c.isspace() for c in value):
        return "must be an absolute URL with a host and no spaces"
    return None
