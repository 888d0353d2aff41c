# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Firewall rule filters: ``selfhost.dify.firewall_rules``, ``selfhost.dify.firewall_rules_errors``,
and ``selfhost.dify.source_networks`` / ``source_networks_errors`` (the same source resolution
for any role that admits clients, e.g. pg_hba).

A rule is ``{name, port, proto, sources}`` (docs/architecture.md, "Firewall interface").
Rules come from several variables (``base_firewall_rules`` and every
``selfhost_firewall_rules_<role>``); the filters take them as one mapping of variable
name to list of rules so every message can name the variable and index it came from.

Documentation: firewall_rules.yml and firewall_rules_errors.yml next to this file.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.selfhost.dify.plugins.module_utils.validation import (
    describe,
    entry_shape_errors,
    format_network,
    format_port_range,
    parse_address,
    parse_network,
    parse_port_or_range,
    type_name,
)

RULE_KEYS = ("name", "port", "proto", "sources", "published")
PROTOCOLS = ("tcp", "udp")
# Rule names end up in nftables comments and in messages: keep them plain.
_RULE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")


def _rule_sets(rule_sets):
    """``[(variable name, rules)]`` from a mapping (or a bare list, named ``rules``)."""
    if isinstance(rule_sets, Mapping):
        return list(rule_sets.items())
    if isinstance(rule_sets, (list, tuple)):
        return [("rules", rule_sets)]
    raise AnsibleFilterError(
        "selfhost.dify.firewall_rules: expected a mapping of variable name to list of rules, got %s"
        % type_name(rule_sets)
    )


def _host_address(host, hostvars):
    """``(address, None)`` for an inventory host, or ``(None, reason)``."""
    try:
        host_vars = hostvars[host]
    except Exception:  # pylint: disable=broad-exception-caught  # HostVars raises several kinds
        return None, "host %s has no variables" % describe(host)
    try:
        address = host_vars.get("selfhost_private_address")
    except Exception as exc:  # pylint: disable=broad-exception-caught  # templating errors of any kind
        return None, "selfhost_private_address of host %s cannot be evaluated (%s)" % (describe(host), exc)
    origin = "selfhost_private_address"
    if address in (None, ""):
        origin = "ansible_default_ipv4.address"
        try:
            default_ipv4 = host_vars.get("ansible_default_ipv4")
            if not default_ipv4:
                default_ipv4 = (host_vars.get("ansible_facts") or {}).get("default_ipv4")
            address = (default_ipv4 or {}).get("address")
        except Exception:  # pylint: disable=broad-exception-caught
            address = None
        if not address:
            return None, (
                "host %s has no selfhost_private_address and no gathered facts to take its default "
                "IPv4 address from; set selfhost_private_address for it in the inventory or "
                "include it in the play" % describe(host)
            )
    try:
        return parse_address(address), None
    except ValueError:
        return None, "%s of host %s is %s, which is not an IP address" % (origin, describe(host), describe(address))


def _resolve_source(source, hostvars, groups):
    """``(networks, None)`` for one source, or ``(None, reason)``."""
    if not isinstance(source, str) or not source.strip():
        return None, "%s is neither an IP/CIDR nor an inventory host or group" % describe(source)
    try:
        return [parse_network(source)], None
    except ValueError:
        pass
    if hostvars is not None and source in hostvars:
        address, reason = _host_address(source, hostvars)
        if reason:
            return None, reason
        return [ipaddress.ip_network(address)], None
    if groups is not None and source in groups:
        networks = []
        for host in groups[source]:
            address, reason = _host_address(host, hostvars if hostvars is not None else {})
            if reason:
                return None, "group %s: %s" % (describe(source), reason)
            networks.append(ipaddress.ip_network(address))
        return networks, None
    return None, "%s is neither an IP/CIDR nor an inventory host or group" % describe(source)


def _process(rule_sets, hostvars, groups):
    """``(normalized rules, errors)``."""
    errors = []
    rules = []
    names = {}
    for var_name, var_rules in _rule_sets(rule_sets):
        if var_rules is None:
            continue
        if not isinstance(var_rules, (list, tuple)):
            errors.append("%s: must be a list of rules ({name, port, proto, sources}), got %s"
                          % (var_name, type_name(var_rules)))
            continue
        for index, rule in enumerate(var_rules):
            where = "%s[%d]" % (var_name, index)
            rule_errors = []
            shape_errors, is_dict = entry_shape_errors(rule, where, RULE_KEYS, "{name, port, proto, sources, published}")
            if not is_dict:
                errors.extend(shape_errors)
                continue
            rule_errors.extend(shape_errors)

            name = rule.get("name")
            if not isinstance(name, str) or not _RULE_NAME_RE.match(name):
                rule_errors.append("%s.name: %s is not a rule name (letters, digits, '_', '.', ':', '-'; "
                                   "at most 63 characters)" % (where, describe(name)))
            elif name in names:
                rule_errors.append("%s.name: %s is already used by %s; rule names must be unique"
                                   % (where, describe(name), names[name]))
            else:
                names[name] = where

            port_range = None
            if "port" not in rule:
                rule_errors.append("%s.port: missing (a port 1-65535 or a range \"A-B\")" % where)
            else:
                try:
                    port_range = parse_port_or_range(rule["port"])
                except ValueError as exc:
                    rule_errors.append("%s.port: %s %s" % (where, describe(rule["port"]), exc))

            proto = rule.get("proto", "tcp")
            if proto is None:
                proto = "tcp"
            if proto not in PROTOCOLS:
                rule_errors.append("%s.proto: must be tcp or udp, got %s" % (where, describe(proto)))

            published = rule.get("published", False)
            if not isinstance(published, bool):
                rule_errors.append("%s.published: must be true or false, got %s" % (where, describe(published)))

            sources = rule.get("sources")
            networks = []
            if not isinstance(sources, (list, tuple)) or not sources:
                rule_errors.append("%s.sources: must be a non-empty list of IPs, CIDRs, inventory hosts or groups, got %s"
                                   % (where, describe(sources)))
            else:
                for source in sources:
                    resolved, reason = _resolve_source(source, hostvars, groups)
                    if reason:
                        rule_errors.append("%s.sources: %s" % (where, reason))
                    else:
                        networks.extend(resolved)

            if rule_errors:
                errors.extend(rule_errors)
                continue
            unique = sorted(set(networks), key=lambda n: (n.version, n.network_address, n.prefixlen))
            rules.append({
                "name": name,
                "port": format_port_range(*port_range),
                "proto": proto,
                "sources_ipv4": [format_network(n) for n in unique if n.version == 4],
                "sources_ipv6": [format_network(n) for n in unique if n.version == 6],
                "published": published,
                "origin": where,
            })
    return rules, errors


def firewall_rules_errors(rule_sets, hostvars=None, groups=None):
    """Every problem with the rules, as messages naming the variable; empty when valid."""
    return _process(rule_sets, hostvars, groups)[1]


def firewall_rules(rule_sets, hostvars=None, groups=None):
    """The rules merged, validated and resolved to addresses, in input order."""
    rules, errors = _process(rule_sets, hostvars, groups)
    if errors:
        raise AnsibleFilterError("invalid firewall rules:\n- " + "\n- ".join(errors))
    return rules


def _source_networks(sources, name, hostvars, groups):
    """``(networks, errors)`` for a list of sources named ``name``."""
    if not isinstance(sources, (list, tuple)):
        return [], ["%s: must be a list of IPs, CIDRs, inventory hosts or groups, got %s" % (name, type_name(sources))]
    networks, errors = [], []
    for index, source in enumerate(sources):
        resolved, reason = _resolve_source(source, hostvars, groups)
        if reason:
            errors.append("%s[%d]: %s" % (name, index, reason))
        else:
            networks.extend(resolved)
    unique = sorted(set(networks), key=lambda n: (n.version, n.network_address, n.prefixlen))
    # Always with the prefix length: pg_hba and bind lists need it spelled out.
    return [n.with_prefixlen for n in unique], errors


def source_networks(sources, hostvars=None, groups=None):
    """Sources (IP, CIDR, inventory host or group names) resolved to unique CIDRs."""
    networks, errors = _source_networks(sources, "sources", hostvars, groups)
    if errors:
        raise AnsibleFilterError("invalid sources:\n- " + "\n- ".join(errors))
    return networks


def source_networks_errors(sources, name, hostvars=None, groups=None):
    """Problems with a list of sources, as messages starting with ``name``; empty when valid."""
    return _source_networks(sources, name, hostvars, groups)[1]


class FilterModule:
    """selfhost.dify firewall filters."""

    def filters(self):
        return {
            "firewall_rules": firewall_rules,
            "firewall_rules_errors": firewall_rules_errors,
            "source_networks": source_networks,
            "source_networks_errors": source_networks_errors,
        }
