# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Health probes: each asks the way the real client does, through that client's library.

This file imports nothing from Ansible. Every probe answers with a `Result` (``ok``,
``detail``); the detail is one readable line that quotes the server's own reason and never
holds a password or secret key.

- ``probe_http``: an HTTP(S) request (``http.client``), the expected status codes and,
  optionally, expected values in the JSON answer;
- ``probe_tcp``: a TCP connection;
- ``probe_postgresql``: a login with psycopg2 (libpq), then ``SELECT 1``;
- ``probe_redis``: ``AUTH`` (ACL user and password, or password alone) and ``PING`` with
  redis-py;
- ``probe_s3``: ``HeadBucket`` with botocore, signed with AWS Signature Version 4, path style
  or virtual-hosted style.

The three libraries are optional imports: `missing_library` names the one a check type
needs when it cannot be imported, with the Debian package that provides it.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import ssl
import threading
import traceback
from collections import namedtuple
from urllib.parse import quote, urlsplit

try:
    import psycopg2
except ImportError:
    psycopg2 = None
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG2_IMPORT_ERROR = None

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:
    redis = None
    REDIS_IMPORT_ERROR = traceback.format_exc()
else:
    REDIS_IMPORT_ERROR = None

try:
    import botocore.session
    from botocore.config import Config as BotocoreConfig
    from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError
except ImportError:
    botocore = None
    BOTOCORE_IMPORT_ERROR = traceback.format_exc()
else:
    BOTOCORE_IMPORT_ERROR = None

Result = namedtuple("Result", ["ok", "detail"])

BODY_EXCERPT = 300

# The client library each check type needs: (import name, Debian package).
LIBRARIES = {
    "postgresql": ("psycopg2", "python3-psycopg2"),
    "redis": ("redis", "python3-redis"),
    "s3": ("botocore", "python3-botocore"),
}


def missing_library(kind):
    """(library, Debian package, import traceback) when the library a check type needs
    cannot be imported; None when it can (or the type needs none)."""
    if kind not in LIBRARIES:
        return None
    error = {"postgresql": PSYCOPG2_IMPORT_ERROR, "redis": REDIS_IMPORT_ERROR, "s3": BOTOCORE_IMPORT_ERROR}[kind]
    return LIBRARIES[kind] + (error,) if error else None


def _excerpt(data, limit=BODY_EXCERPT):
    """Up to `limit` characters of a response body, on one line."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    data = " ".join(str(data).split())
    return data if len(data) <= limit else data[:limit] + "..."


def describe_oserror(exc):
    """A connection failure in words ("connection refused", "timed out", the TLS reason)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed: %s" % (exc.verify_message or exc.reason or exc)
    if isinstance(exc, ssl.SSLError):
        return "TLS error: %s" % (exc.reason or exc)
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "name resolution failed: %s" % (exc.strerror or exc)
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the peer"
    text = exc.strerror if getattr(exc, "strerror", None) else str(exc)
    return text or type(exc).__name__


def _root_oserror(exc):
    """The socket-level OSError behind a library's exception (its cause, its context or
    the ``error`` botocore keeps), or None."""
    seen = set()
    todo = [exc]
    found = None
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (ssl.SSLError, socket.timeout, socket.gaierror, ConnectionError)) or \
                (isinstance(item, OSError) and getattr(item, "errno", None)):
            found = item
        kwargs = getattr(item, "kwargs", None)
        todo += [item.__cause__, item.__context__, kwargs.get("error") if isinstance(kwargs, dict) else None]
        todo += [arg for arg in getattr(item, "args", ()) if isinstance(arg, BaseException)]
    return found


# -- HTTP ----------------------------------------------------------------------------------------
def _ssl_context(validate_certs=True, ca_bundle=None):
    if not validate_certs:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


def _split_url(url):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL: %s" % url)
    return parts


def http_request(method, url, body=b"", headers=None, timeout=10.0, validate_certs=True, ca_bundle=None):
    """One HTTP request (no redirect followed). Returns (status, lower-cased headers, body).

    HTTP error statuses are returned; a connection failure raises OSError (TLS errors are
    ``ssl.SSLError``, itself an OSError; a malformed answer becomes ConnectionError)."""
    parts = _split_url(url)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=_ssl_context(validate_certs, ca_bundle))
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    try:
        conn.request(method, target, body=body or None, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
    except http.client.HTTPException as exc:
        raise ConnectionError("malformed HTTP answer: %s" % (exc.__class__.__name__ if not str(exc) else exc))
    finally:
        conn.close()


# -- S3 (botocore) -------------------------------------------------------------------------------
def _uri_encode(value):
    return quote(value, safe="/~")


def _default_port(scheme, port):
    return port is None or (scheme == "http" and port == 80) or (scheme == "https" and port == 443)


def s3_url(endpoint, bucket, key="", path_style=True):
    """(scheme, host header, connect host, port, encoded path) of an object or bucket, as
    the request addresses it (for the result's target)."""
    parts = _split_url(endpoint)
    hostname = parts.hostname
    if not path_style and bucket:
        hostname = "%s.%s" % (bucket, hostname)
    shown = "[%s]" % hostname if ":" in hostname else hostname
    host = shown if _default_port(parts.scheme, parts.port) else "%s:%d" % (shown, parts.port)
    path = _uri_encode(parts.path.rstrip("/"))
    if path_style and bucket:
        path += "/" + _uri_encode(bucket)
    if key:
        path += "/" + _uri_encode(key.lstrip("/"))
    return parts.scheme, host, hostname, parts.port, path or "/"


_S3_CLIENTS = {}
_S3_LOCK = threading.Lock()


def s3_client(endpoint, access_key, secret_key, region="us-east-1", path_style=True, timeout=10.0,
              validate_certs=True, ca_bundle=None):
    """A botocore S3 client for one endpoint and key pair: Signature Version 4 with the
    payload hashed (some servers refuse UNSIGNED-PAYLOAD), one attempt per call (the
    module does the waiting), no credentials read from the environment. Made once per
    set of arguments (making one loads the service model, most of a second) from one
    session, under a lock (a session is not thread-safe; a client is)."""
    _split_url(endpoint)
    key = (endpoint, access_key, secret_key, region, path_style, float(timeout), validate_certs, ca_bundle)
    with _S3_LOCK:
        if key not in _S3_CLIENTS:
            if "session" not in _S3_CLIENTS:
                _S3_CLIENTS["session"] = botocore.session.Session()
            config = BotocoreConfig(signature_version="s3v4", connect_timeout=timeout, read_timeout=timeout,
                                    retries={"total_max_attempts": 1, "mode": "standard"},
                                    s3={"addressing_style": "path" if path_style else "virtual",
                                        "payload_signing_enabled": True})
            verify = (ca_bundle or True) if validate_certs else False
            _S3_CLIENTS[key] = _S3_CLIENTS["session"].create_client(
                "s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=access_key,
                aws_secret_access_key=secret_key, verify=verify, config=config)
        return _S3_CLIENTS[key]


_HEAD_BUCKET_MEANING = {
    301: "the bucket {bucket} is in another region than {region} (set the region the server expects)",
    400: "the server refused the request for bucket {bucket} (region {region}, signature or addressing style)",
    403: "the key is refused or has no access to bucket {bucket}",
    404: "bucket {bucket} does not exist",
}


def _client_error(exc):
    """(HTTP status, headers, error code, message) of a botocore ClientError."""
    response = exc.response or {}
    meta = response.get("ResponseMetadata") or {}
    error = response.get("Error") or {}
    code = error.get("Code")
    status = meta.get("HTTPStatusCode") or 0
    # A HEAD answer has no body: botocore then names the error by the status alone.
    if code and code.isdigit():
        code = None
    return status, meta.get("HTTPHeaders") or {}, code, error.get("Message") if code else None


def s3_head_bucket(client, bucket, region="us-east-1"):
    """HEAD the bucket: (status, readable detail).

    A HEAD answer has no body, so after a refusal a GetBucketLocation fetches the server's
    error code (e.g. InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied) for the
    detail. A connection failure raises botocore's exception."""
    try:
        client.head_bucket(Bucket=bucket)
        return 200, "bucket %s exists and the key can read it" % bucket
    except ClientError as exc:
        status, headers, code, message = _client_error(exc)
    reason = http.client.responses.get(status, "HTTP error")
    meaning = _HEAD_BUCKET_MEANING.get(status, "unexpected answer for bucket {bucket}")
    detail = "%d %s: %s" % (status, reason, meaning.format(bucket=bucket, region=region))
    if status == 301 and headers.get("x-amz-bucket-region"):
        detail += "; the server names region %s" % headers["x-amz-bucket-region"]
    if 400 <= status < 500 and not code:
        try:
            client.get_bucket_location(Bucket=bucket)
        except ClientError as exc:
            dummy, dummy, code, message = _client_error(exc)
        except BotoCoreError:
            pass
    if code:
        detail += " (%s%s)" % (code, ": " + message if message else "")
    return status, detail


def _describe_botocore(exc):
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return "timed out"
    root = _root_oserror(exc)
    return describe_oserror(root) if root is not None else str(exc)


def probe_s3(endpoint, bucket, access_key, secret_key, region="us-east-1", path_style=True,
             timeout=10.0, validate_certs=True, ca_bundle=None):
    """Healthy when the key pair can HEAD the bucket (answer 200)."""
    try:
        client = s3_client(endpoint, access_key, secret_key, region, path_style, timeout, validate_certs, ca_bundle)
        status, detail = s3_head_bucket(client, bucket, region)
    except ValueError as exc:
        return Result(False, "cannot reach %s: %s" % (endpoint, exc))
    except BotoCoreError as exc:
        return Result(False, "cannot reach %s: %s" % (endpoint, _describe_botocore(exc)))
    return Result(status == 200, detail)


# -- secrets never shown -------------------------------------------------------------------------
def scrub(text, secrets):
    """`text` with every secret of `secrets` (3 characters or more) replaced by ********."""
    for secret in sorted((s for s in secrets or () if s and len(str(s)) >= 3), key=len, reverse=True):
        text = text.replace(str(secret), "********")
    return text


# -- HTTP probe ----------------------------------------------------------------------------------
_MISSING = object()


def json_path(document, path):
    """The value at a dotted path ("status", "data.0.name"); "" or "." is the whole document.
    Returns _MISSING when the path leads nowhere."""
    value = document
    if path in ("", "."):
        return value
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and re.match(r"^-?\d+$", part) and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def json_matches(actual, expected):
    """Equal, or equal once the JSON value is written as JSON (so "1" matches 1, "true" true)."""
    if actual == expected and type(actual) is type(expected):
        return True
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)) \
            and not isinstance(actual, bool) and not isinstance(expected, bool):
        return actual == expected
    return isinstance(expected, str) and not isinstance(actual, str) and json.dumps(actual) == expected


def probe_http(url, method="GET", status=(200,), json_fields=None, headers=None, timeout=10.0,
               validate_certs=True, ca_bundle=None):
    """Healthy when the answer has one of the `status` codes and, for each dotted path of
    `json_fields`, the JSON answer holds the expected value. Redirects are not followed
    (list 301/302 in `status` to accept one). On failure the detail quotes the status and
    the start of the body (where an application names what is wrong)."""
    expected = [status] if isinstance(status, int) else list(status or [200])
    try:
        code, dummy, body = http_request(method.upper(), url, headers=headers, timeout=timeout,
                                         validate_certs=validate_certs, ca_bundle=ca_bundle)
    except ValueError as exc:
        return Result(False, str(exc))
    except OSError as exc:
        return Result(False, "no answer: %s" % describe_oserror(exc))
    reason = http.client.responses.get(code, "")
    got = ("%d %s" % (code, reason)).strip()
    if code not in expected:
        detail = "answered %s, expected %s" % (got, " or ".join(str(c) for c in expected))
        excerpt = _excerpt(body)
        return Result(False, detail + (": " + excerpt if excerpt else " (empty body)"))
    if json_fields:
        try:
            document = json.loads(body.decode("utf-8"))
        except ValueError:
            return Result(False, "answered %s but the body is not JSON: %s" % (got, _excerpt(body) or "(empty)"))
        wrong = []
        for path in sorted(json_fields):
            value = json_path(document, path)
            if value is _MISSING:
                wrong.append("%s is missing" % (path or "."))
            elif not json_matches(value, json_fields[path]):
                wrong.append("%s is %s, expected %s" % (path or ".", json.dumps(value)[:80], json.dumps(json_fields[path])))
        if wrong:
            return Result(False, "answered %s but %s: %s" % (got, "; ".join(wrong), _excerpt(body)))
    return Result(True, "answered %s" % got + (" with the expected JSON" if json_fields else ""))


# -- TCP probe -----------------------------------------------------------------------------------
def probe_tcp(host, port, timeout=10.0):
    """Healthy when a TCP connection to host:port opens."""
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as exc:
        return Result(False, "cannot connect: %s" % describe_oserror(exc))
    sock.close()
    return Result(True, "port %s accepts connections" % port)


# -- PostgreSQL probe (psycopg2) -----------------------------------------------------------------
def pg_reason(message):
    """The server's reason out of a libpq connection error: libpq writes one
    'connection to server at "...", port N failed: <reason>' per address it tried; the
    first reason the server itself gave (FATAL/ERROR) is the one that matters, else the
    last one. The severity and libpq's hints are left out."""
    attempts = [part.strip() for part in re.split(r'connection to server (?:at|on) "[^"]*"(?:[^:]*?)? failed:',
                                                  message or "") if part.strip()]
    if not attempts:
        return "unknown error"
    chosen = next((a for a in attempts if re.match(r"^(FATAL|ERROR|PANIC):", a)), attempts[-1])
    chosen = re.sub(r"^(FATAL|ERROR|PANIC):\s+", "", chosen)
    return chosen.splitlines()[0].strip()


def probe_postgresql(host, port=5432, user="postgres", password=None, database=None, timeout=10.0):
    """Healthy when the user logs in to the database (without TLS, as sslmode=disable)
    and ``SELECT 1`` answers. The detail of a refusal is the server's message, e.g.
    'password authentication failed for user "dify"'."""
    database = database or user
    try:
        conn = psycopg2.connect(host=host, port=int(port), user=user, password=password or "", dbname=database,
                                sslmode="disable", connect_timeout=max(2, int(math.ceil(timeout))),
                                application_name="selfhost.dify health")
    except psycopg2.Error as exc:
        reason = pg_reason(str(exc))
        if reason.lower().startswith(("connection refused", "timeout expired", "could not translate host name",
                                      "network is unreachable", "no route to host")):
            words = {"connection refused": "connection refused", "timeout expired": "timed out"}
            return Result(False, "cannot connect: %s" % words.get(reason.lower(), reason))
        code = getattr(exc, "pgcode", None)
        return Result(False, "%s%s" % (reason, " (SQLSTATE %s)" % code if code else ""))
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            value = cursor.fetchone()[0]
        version = conn.get_parameter_status("server_version")
    except psycopg2.Error as exc:
        code = getattr(exc, "pgcode", None)
        return Result(False, "%s%s" % (pg_reason(str(exc)), " (SQLSTATE %s)" % code if code else ""))
    finally:
        conn.close()
    if value != 1:
        return Result(False, "logged in but SELECT 1 answered %r" % value)
    return Result(True, "logged in as %s to %s%s, SELECT 1 answered" % (
        user, database, ", PostgreSQL %s" % version if version else ""))


# -- Redis probe (redis-py) ----------------------------------------------------------------------
def _redis_reason(exc, default_code):
    """The server's error reply as it sent it: redis-py keeps the text after the error
    code, and (since 5.0) the code itself."""
    code = getattr(exc, "status_code", None) or default_code
    text = str(exc)
    return "%s %s" % (code, text) if code and not text.startswith(code) else text


def _major(version):
    match = re.match(r"\d+", str(version or ""))
    return int(match.group(0)) if match else 0


def probe_redis(host, port=6379, password=None, username=None, timeout=10.0):
    """Healthy when ``AUTH`` (if a password is given) answers OK and ``PING`` answers PONG.
    The detail of a refusal is the server's (WRONGPASS, NOAUTH, NOPERM ...)."""
    who = username or "default"
    # One attempt (the module does the waiting); AUTH is sent on connecting, when a
    # password is set, then PING. RESP2 as Dify speaks it (redis-py 5 and later would
    # otherwise open with HELLO 3 where they can).
    extra = {"protocol": 2} if _major(redis.__version__) >= 5 else {}
    client = redis.Redis(host=host, port=int(port), username=username if password else None,
                         password=password or None, socket_timeout=timeout, socket_connect_timeout=timeout,
                         retry=Retry(NoBackoff(), 0), **extra)
    try:
        answer = client.ping()
    except redis.AuthenticationError as exc:
        if password:
            return Result(False, "AUTH as %s refused: %s" % (who, _redis_reason(exc, "WRONGPASS")))
        return Result(False, "PING refused: %s" % _redis_reason(exc, "NOAUTH"))
    except redis.exceptions.NoPermissionError as exc:
        return Result(False, "PING refused: %s" % _redis_reason(exc, "NOPERM"))
    except (redis.exceptions.InvalidResponse, redis.exceptions.DataError) as exc:
        return Result(False, "not a Redis server: %s" % exc)
    except redis.ResponseError as exc:
        return Result(False, "%s refused: %s" % ("AUTH as %s" % who if password else "PING", _redis_reason(exc, None)))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        root = _root_oserror(exc)
        if isinstance(exc, redis.TimeoutError) and root is None:
            return Result(False, "cannot connect: timed out")
        return Result(False, "cannot connect: %s" % (describe_oserror(root) if root is not None else exc))
    finally:
        client.close()
    if answer is not True:
        return Result(False, "PING answered %r, expected PONG" % _excerpt(str(answer), 80))
    return Result(True, "PING answered PONG%s" % (" (logged in as %s)" % who if password else ""))
