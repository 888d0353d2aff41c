# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""S3 helpers for the selfhost.dify.s3_bucket module, free of I/O so that they are unit-tested.

- bucket name rules (``bucket_name_errors``), checked before any request;
- bucket policies compared semantically (``normalize_policy``, ``policies_equal``);
- lifecycle rules in the module's flat form and S3's form (``normalize_lifecycle_rules``,
  ``rules_from_api``, ``rules_to_api``);
- botocore exceptions turned into one clear sentence (``describe_error``) that never holds
  the secret key.

Nothing here imports boto3 or botocore at load time: exceptions are recognised by their
class names (and their ``response`` for ``ClientError``).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re

# -- bucket names ----------------------------------------------------------------------------
# The rules of general purpose buckets:
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
BUCKET_NAME_MIN = 3
BUCKET_NAME_MAX = 63
_BUCKET_CHARS_RE = re.compile(r"^[a-z0-9.-]+$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
NAME_RULE = "3 to 63 lowercase letters, digits, hyphens and dots, starting and ending with a letter or digit"


def bucket_name_errors(name):
    """The reasons why `name` is not a valid S3 bucket name (an empty list if it is)."""
    if not isinstance(name, str) or not name:
        return ["the name is empty"]
    errors = []
    if not BUCKET_NAME_MIN <= len(name) <= BUCKET_NAME_MAX:
        errors.append("it is %d characters long (3 to 63 allowed)" % len(name))
    bad = sorted(set(c for c in name if not re.match(r"[a-z0-9.-]", c)))
    if bad:
        kinds = []
        if any(c.isupper() for c in bad):
            kinds.append("uppercase letters")
        others = [c for c in bad if not c.isupper()]
        if others:
            kinds.append("the characters %s" % " ".join(repr(c) for c in others))
        errors.append("it holds %s" % " and ".join(kinds))
    if not re.match(r"^[a-z0-9]", name) or not re.search(r"[a-z0-9]$", name):
        errors.append("it must start and end with a lowercase letter or a digit")
    if ".." in name:
        errors.append("it has two adjacent dots")
    if ".-" in name or "-." in name:
        errors.append("a dot is next to a hyphen")
    try:
        ipaddress.IPv4Address(name)
        errors.append("it is formatted as an IP address")
    except ValueError:
        pass
    for prefix in _RESERVED_PREFIXES:
        if name.startswith(prefix):
            errors.append("the prefix %r is reserved" % prefix)
    for suffix in _RESERVED_SUFFIXES:
        if name.endswith(suffix):
            errors.append("the suffix %r is reserved" % suffix)
    return errors


# -- bucket policies -------------------------------------------------------------------------
# Keys whose value may be one string or a list of strings with the same meaning; the order
# of such a list does not matter either.
_SET_KEYS = frozenset(("Action", "NotAction", "Resource", "NotResource"))


def _set_value(value):
    """One string or an unordered list of strings, in one canonical form."""
    if isinstance(value, list):
        items = sorted(set(json.dumps(v, sort_keys=True) if not isinstance(v, str) else v for v in value))
        return items[0] if len(items) == 1 else items
    return value


def _principal(value):
    if isinstance(value, dict):
        return dict((k, _set_value(v)) for k, v in value.items())
    return _set_value(value)


def _condition(value):
    if not isinstance(value, dict):
        return value
    result = {}
    for operator, tests in value.items():
        if isinstance(tests, dict):
            result[operator] = dict((k, _set_value(v)) for k, v in tests.items())
        else:
            result[operator] = tests
    return result


def _statement(statement):
    if not isinstance(statement, dict):
        return statement
    result = {}
    for key, value in statement.items():
        if key in _SET_KEYS:
            result[key] = _set_value(value)
        elif key in ("Principal", "NotPrincipal"):
            result[key] = _principal(value)
        elif key == "Condition":
            result[key] = _condition(value)
        else:
            result[key] = value
    return result


def parse_policy(value):
    """The module's `policy` option: the string ``private`` (returns None) or a policy
    document as a dict or as a JSON string of one. Raises ValueError."""
    if value is None or value == "private":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError("policy must be 'private' or a policy document (a dict or its JSON): %s" % exc)
    if not isinstance(value, dict):
        raise ValueError("policy must be 'private' or a policy document (a dict), got %s" % type(value).__name__)
    if "Statement" not in value:
        raise ValueError("the policy document has no 'Statement'")
    return value


def normalize_policy(policy):
    """A policy document in a canonical form: a single statement becomes a list of one;
    Action/Resource/Principal values that are a one-item list become that item, longer
    lists are sorted and deduplicated. JSON round-trip first, so any JSON-equal input gives
    the same result. None (no policy) stays None."""
    if policy is None:
        return None
    if isinstance(policy, str):
        policy = json.loads(policy)
    doc = json.loads(json.dumps(policy))
    statements = doc.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if isinstance(statements, list):
        doc["Statement"] = [_statement(s) for s in statements]
    return doc


def policies_equal(left, right):
    """Whether two policy documents (dicts, JSON strings or None) mean the same."""
    a, b = normalize_policy(left), normalize_policy(right)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# -- lifecycle rules -------------------------------------------------------------------------
RULE_KEYS = ("id", "prefix", "status", "expiration_days", "noncurrent_expiration_days")
RULE_STATUSES = ("Enabled", "Disabled")


def _days(value, label):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 10)
        except ValueError:
            raise ValueError("%s must be a whole number of days, got %r" % (label, value))
    if value < 1:
        raise ValueError("%s must be at least 1, got %d" % (label, value))
    return value


def normalize_lifecycle_rules(rules):
    """The module's `lifecycle_rules` in canonical form: a list of dicts with every key of
    RULE_KEYS, sorted by id. None stays None (leave the rules as they are). Raises
    ValueError naming the rule at fault."""
    if rules is None:
        return None
    if not isinstance(rules, list):
        raise ValueError("lifecycle_rules must be a list of rules")
    result, seen = [], set()
    for index, rule in enumerate(rules):
        where = "lifecycle_rules[%d]" % index
        if not isinstance(rule, dict):
            raise ValueError("%s must be a dict" % where)
        unknown = sorted(set(rule) - set(RULE_KEYS))
        if unknown:
            raise ValueError("%s: unknown keys %s" % (where, ", ".join(unknown)))
        rule_id = rule.get("id")
        if not isinstance(rule_id, str) or not rule_id.strip():
            raise ValueError("%s: id is required (a non-empty string)" % where)
        if len(rule_id) > 255:
            raise ValueError("%s: id is longer than 255 characters" % where)
        if rule_id in seen:
            raise ValueError("%s: the id %r is used by another rule" % (where, rule_id))
        seen.add(rule_id)
        prefix = rule.get("prefix")
        prefix = "" if prefix is None else prefix
        if not isinstance(prefix, str):
            raise ValueError("%s (%s): prefix must be a string" % (where, rule_id))
        status = rule.get("status") or "Enabled"
        if status not in RULE_STATUSES:
            raise ValueError("%s (%s): status must be Enabled or Disabled, got %r" % (where, rule_id, status))
        expiration = _days(rule.get("expiration_days"), "%s (%s): expiration_days" % (where, rule_id))
        noncurrent = _days(rule.get("noncurrent_expiration_days"),
                           "%s (%s): noncurrent_expiration_days" % (where, rule_id))
        if expiration is None and noncurrent is None:
            raise ValueError("%s (%s): set expiration_days, noncurrent_expiration_days or both" % (where, rule_id))
        result.append({"id": rule_id, "prefix": prefix, "status": status,
                       "expiration_days": expiration, "noncurrent_expiration_days": noncurrent})
    return sorted(result, key=lambda r: r["id"])


# Parts of an S3 lifecycle rule this module does not manage: a rule that has any of them
# differs from every rule the module writes, so it is replaced (and shown in the diff).
_UNMANAGED_RULE_PARTS = ("Transitions", "NoncurrentVersionTransitions", "AbortIncompleteMultipartUpload")


def rules_from_api(rules):
    """S3's `Rules` (GetBucketLifecycleConfiguration) in the module's canonical form."""
    result = []
    for rule in rules or []:
        flt = rule.get("Filter") or {}
        prefix = rule.get("Prefix")
        if prefix is None:
            prefix = flt.get("Prefix")
        if prefix is None and isinstance(flt.get("And"), dict):
            prefix = flt["And"].get("Prefix")
        expiration = rule.get("Expiration") or {}
        noncurrent = rule.get("NoncurrentVersionExpiration") or {}
        item = {
            "id": rule.get("ID", ""),
            "prefix": prefix or "",
            "status": rule.get("Status", "Enabled"),
            "expiration_days": expiration.get("Days"),
            "noncurrent_expiration_days": noncurrent.get("NoncurrentDays"),
        }
        unmanaged = [part for part in _UNMANAGED_RULE_PARTS if rule.get(part)]
        unmanaged += ["Expiration.%s" % k for k in sorted(expiration) if k != "Days"]
        unmanaged += ["NoncurrentVersionExpiration.%s" % k for k in sorted(noncurrent) if k != "NoncurrentDays"]
        unmanaged += ["Filter.%s" % k for k in sorted(flt) if k not in ("Prefix", "And")]
        if isinstance(flt.get("And"), dict):
            unmanaged += ["Filter.And.%s" % k for k in sorted(flt["And"]) if k != "Prefix"]
        if unmanaged:
            item["unmanaged"] = unmanaged
        result.append(item)
    return sorted(result, key=lambda r: r["id"])


def rules_to_api(rules):
    """Canonical rules as S3's LifecycleConfiguration."""
    api_rules = []
    for rule in rules:
        api = {"ID": rule["id"], "Filter": {"Prefix": rule.get("prefix") or ""},
               "Status": rule.get("status") or "Enabled"}
        if rule.get("expiration_days") is not None:
            api["Expiration"] = {"Days": rule["expiration_days"]}
        if rule.get("noncurrent_expiration_days") is not None:
            api["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule["noncurrent_expiration_days"]}
        api_rules.append(api)
    return {"Rules": api_rules}


# -- errors ----------------------------------------------------------------------------------
CREDENTIAL_ERROR_CODES = frozenset((
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidSecurity",
    "InvalidClientTokenId", "UnrecognizedClientException", "AuthFailure", "MissingSecurityHeader",
))
ACCESS_DENIED_CODES = frozenset(("AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"))
NOT_IMPLEMENTED_CODES = frozenset(("NotImplemented", "XNotImplemented", "501", "MethodNotAllowed", "405",
                                   "UnsupportedOperation", "NotSupported"))
NAME_ERROR_CODES = frozenset(("InvalidBucketName",))
REGION_ERROR_CODES = frozenset(("AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
                                "InvalidLocationConstraint", "PermanentRedirect", "301", "InvalidRegion"))

# The feature each S3 operation belongs to (for "the endpoint does not support X").
FEATURES = {
    "GetBucketVersioning": "bucket versioning",
    "PutBucketVersioning": "bucket versioning",
    "GetBucketPolicy": "bucket policies",
    "PutBucketPolicy": "bucket policies",
    "DeleteBucketPolicy": "bucket policies",
    "GetBucketLifecycleConfiguration": "lifecycle rules",
    "PutBucketLifecycleConfiguration": "lifecycle rules",
    "DeleteBucketLifecycle": "lifecycle rules",
    "ListObjectVersions": "listing object versions",
    "ListMultipartUploads": "listing multipart uploads",
    "DeleteObjects": "deleting several objects at once (DeleteObjects)",
}

_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError",
                "ConnectionError", "HTTPClientError", "ProxyConnectionError")


def _class_names(exc):
    return set(cls.__name__ for cls in type(exc).__mro__)


def error_code(exc):
    """(code, HTTP status, message) of a botocore ClientError; (None, None, None) otherwise."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None, None, None
    err = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    code = err.get("Code")
    return (str(code) if code is not None else (str(status) if status else None)), status, err.get("Message")


def error_kind(exc):
    """One of: credentials, access_denied, not_implemented, invalid_name, region, no_such_bucket,
    not_found, unreachable, tls, other."""
    names = _class_names(exc)
    if "SSLError" in names:
        return "tls"
    if names & set(_UNREACHABLE):
        return "unreachable"
    if "NoCredentialsError" in names or "PartialCredentialsError" in names:
        return "credentials"
    code, status, dummy = error_code(exc)
    if code is None:
        return "other"
    if code in CREDENTIAL_ERROR_CODES:
        return "credentials"
    if code in NAME_ERROR_CODES:
        return "invalid_name"
    if code in NOT_IMPLEMENTED_CODES or status == 501:
        return "not_implemented"
    if code in REGION_ERROR_CODES:
        return "region"
    if code == "NoSuchBucket":
        return "no_such_bucket"
    if code in ("404", "NotFound") or status == 404:
        return "not_found"
    if code in ACCESS_DENIED_CODES or status == 403:
        return "access_denied"
    return "other"


def describe_error(exc, operation, bucket, endpoint, region=None):
    """One clear sentence for a failed S3 call (no traceback, never the secret key).

    `operation` is the S3 operation name (e.g. PutBucketPolicy); `bucket` the bucket name."""
    kind = error_kind(exc)
    code, status, message = error_code(exc)
    detail = "%s: %s" % (code, message) if message else (code or str(exc))
    if kind == "credentials":
        return ("s3_bucket: the endpoint %s rejected the credentials (%s): check access_key and secret_key "
                "(a key pair this S3 server knows, with no typing mistake)" % (endpoint, detail))
    if kind == "unreachable":
        return ("s3_bucket: cannot reach the S3 endpoint %s (%s): check endpoint_url, that the server runs "
                "and that no firewall blocks this host" % (endpoint, exc))
    if kind == "tls":
        return ("s3_bucket: TLS verification failed for the S3 endpoint %s (%s): set ca_bundle to the CA "
                "that signed its certificate" % (endpoint, exc))
    if kind == "invalid_name":
        return ("s3_bucket: the endpoint rejected the bucket name %r (%s); S3 bucket names are %s"
                % (bucket, detail, NAME_RULE))
    if kind == "not_implemented":
        feature = FEATURES.get(operation, operation)
        return ("s3_bucket: the endpoint %s does not support %s: %s (operation %s on bucket %r); leave the "
                "matching option unset (null) for this server" % (endpoint, feature, code, operation, bucket))
    if kind == "region":
        return ("s3_bucket: the endpoint refused the region %r (%s, operation %s on bucket %r): set region to "
                "the one the server expects" % (region, detail, operation, bucket))
    if kind == "access_denied":
        return ("s3_bucket: access denied for %s on bucket %r (%s): the access key lacks the permission for "
                "this operation, or the bucket belongs to another account" % (operation, bucket, detail))
    if code is not None:
        return "s3_bucket: %s on bucket %r failed (%s, HTTP %s)" % (operation, bucket, detail, status)
    return "s3_bucket: %s on bucket %r failed: %s" % (operation, bucket, exc)


def bucket_state(exists, versioning=None, policy=None, lifecycle_rules=None, name=None):
    """The module's view of a bucket (returned as `bucket`, and the diff's before/after)."""
    return {
        "name": name,
        "exists": exists,
        "versioning": versioning if exists else None,
        "policy": copy.deepcopy(policy) if exists else None,
        "lifecycle_rules": copy.deepcopy(lifecycle_rules) if exists else None,
    }
