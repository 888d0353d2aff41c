# -*- coding: utf-8 -*-
# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Health probes built on the Python standard library alone (Python 3.9+).

This file imports nothing from Ansible, so it also works as a plain module copied next to
a script or into a container image. Every probe logs in or asks the way the real client
does, and answers with a `Result` (``ok``, ``detail``); the detail is one readable line that
quotes the server's own reason and never holds a password or secret key.

- ``s3_request`` / ``s3_head_bucket`` / ``probe_s3``: S3 requests signed with AWS Signature
  Version 4 (the payload hash is the real SHA-256 of the body, as some servers refuse
  ``UNSIGNED-PAYLOAD``), path style or virtual-hosted style;
- ``probe_http``: an HTTP(S) request, the expected status codes and, optionally, expected
  values in the JSON answer;
- ``probe_tcp``: a TCP connection;
- ``probe_postgresql``: a login over the PostgreSQL wire protocol 3.0 (SCRAM-SHA-256
  without channel binding, MD5 or cleartext password; no TLS, as with ``sslmode=disable``),
  then ``SELECT 1``;
- ``probe_redis``: ``AUTH`` (ACL user and password, or password alone) and ``PING`` over
  RESP.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import ssl
import struct
from collections import namedtuple
from urllib.parse import quote, urlsplit

Result = namedtuple("Result", ["ok", "detail"])

BODY_EXCERPT = 300
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


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


# -- HTTP --------------------------------------------------------------------------------------
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


# -- S3 and AWS Signature Version 4 ------------------------------------------------------------
def _uri_encode(value, slash=True):
    """URI-encode as SigV4 wants: everything but A-Z a-z 0-9 - _ . ~ (and '/' in paths)."""
    return quote(value, safe="/~" if slash else "~")


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key, date, region, service="s3"):
    """The SigV4 signing key for a day (YYYYMMDD), region and service."""
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def canonical_query(query):
    """The SigV4 canonical query string of a dict (or list of pairs); None values are ''."""
    if not query:
        return ""
    items = query.items() if isinstance(query, dict) else query
    pairs = sorted((_uri_encode(str(k), False), _uri_encode("" if v is None else str(v), False)) for k, v in items)
    return "&".join("%s=%s" % pair for pair in pairs)


def sigv4_headers(method, host, path, query, headers, payload_hash, access_key, secret_key,
                  region="us-east-1", service="s3", amz_date=None):
    """The headers of a request signed with AWS Signature Version 4.

    `path` is the already URI-encoded absolute path, `query` a dict, `headers` the extra
    headers to sign (the ``Host``, ``x-amz-date`` and ``x-amz-content-sha256`` headers are
    added), `amz_date` the time as YYYYMMDD'T'HHMMSS'Z' (now when None). Returns a new dict
    holding every header to send, ``Authorization`` included."""
    if amz_date is None:
        amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    signed = dict((k.lower(), " ".join(str(v).split())) for k, v in (headers or {}).items())
    signed["host"] = host
    signed["x-amz-date"] = amz_date
    signed["x-amz-content-sha256"] = payload_hash
    names = sorted(signed)
    canonical = "\n".join([
        method.upper(),
        path or "/",
        canonical_query(query),
        "".join("%s:%s\n" % (name, signed[name]) for name in names),
        ";".join(names),
        payload_hash,
    ])
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    signature = hmac.new(signing_key(secret_key, date, region, service), to_sign.encode("utf-8"),
                         hashlib.sha256).hexdigest()
    result = dict(signed)
    result["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        access_key, scope, ";".join(names), signature)
    return result


def _default_port(scheme, port):
    return port is None or (scheme == "http" and port == 80) or (scheme == "https" and port == 443)


def s3_url(endpoint, bucket, key="", path_style=True):
    """(scheme, host header, connect host, port, encoded path) of an object or bucket."""
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


def s3_request(method, endpoint, bucket, key="", body=b"", access_key="", secret_key="",
               region="us-east-1", path_style=True, timeout=10.0, validate_certs=True,
               ca_bundle=None, headers=None, query=None):
    """A request to an S3 endpoint, signed with AWS Signature V4 when `access_key` is set
    (anonymous otherwise). Returns (status, lower-cased headers, body); an HTTP error
    status is returned, a connection failure raises OSError."""
    scheme, host, connect_host, port, path = s3_url(endpoint, bucket, key, path_style)
    body = body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    send = dict(headers or {})
    if access_key:
        send = sigv4_headers(method, host, path, query, send, hashlib.sha256(body).hexdigest(),
                             access_key, secret_key, region)
    else:
        send["host"] = host
    target = path + ("?" + canonical_query(query) if query else "")
    if scheme == "https":
        conn = http.client.HTTPSConnection(connect_host, port, timeout=timeout,
                                           context=_ssl_context(validate_certs, ca_bundle))
    else:
        conn = http.client.HTTPConnection(connect_host, port, timeout=timeout)
    try:
        # skip_host: the Host header is ours (it is part of the signature).
        conn.putrequest(method.upper(), target, skip_host=True, skip_accept_encoding=True)
        for name, value in send.items():
            conn.putheader(name, value)
        if body or method.upper() in ("PUT", "POST"):
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
    except http.client.HTTPException as exc:
        raise ConnectionError("malformed HTTP answer: %s" % (exc.__class__.__name__ if not str(exc) else exc))
    finally:
        conn.close()


def s3_error(body):
    """(code, message) of an S3 XML error body; (None, None) when there is none."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    code = re.search(r"<Code>\s*([^<]*?)\s*</Code>", text)
    message = re.search(r"<Message>\s*([^<]*?)\s*</Message>", text)
    return (code.group(1) if code else None), (message.group(1) if message else None)


_HEAD_BUCKET_MEANING = {
    301: "the bucket {bucket} is in another region than {region} (set the region the server expects)",
    400: "the server refused the request for bucket {bucket} (region {region}, signature or addressing style)",
    403: "the key is refused or has no access to bucket {bucket}",
    404: "bucket {bucket} does not exist",
}


def s3_head_bucket(endpoint, bucket, access_key, secret_key, region="us-east-1",
                   path_style=True, timeout=10.0, validate_certs=True, ca_bundle=None):
    """HEAD the bucket with the key pair: (status, readable detail).

    A HEAD answer has no body, so after a refusal a GET on the bucket's location fetches
    the server's error code (e.g. InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied)
    for the detail. A connection failure raises OSError."""
    common = dict(access_key=access_key, secret_key=secret_key, region=region, path_style=path_style,
                  timeout=timeout, validate_certs=validate_certs, ca_bundle=ca_bundle)
    status, headers, dummy = s3_request("HEAD", endpoint, bucket, **common)
    if status == 200:
        return status, "bucket %s exists and the key can read it" % bucket
    reason = http.client.responses.get(status, "HTTP error")
    meaning = _HEAD_BUCKET_MEANING.get(status, "unexpected answer for bucket {bucket}")
    detail = "%d %s: %s" % (status, reason, meaning.format(bucket=bucket, region=region))
    if status == 301 and headers.get("x-amz-bucket-region"):
        detail += "; the server names region %s" % headers["x-amz-bucket-region"]
    if 400 <= status < 500:
        try:
            dummy, dummy, body = s3_request("GET", endpoint, bucket, query={"location": ""}, **common)
        except OSError:
            body = b""
        code, message = s3_error(body)
        if code:
            detail += " (%s%s)" % (code, ": " + message if message else "")
    return status, detail


def probe_s3(endpoint, bucket, access_key, secret_key, region="us-east-1", path_style=True,
             timeout=10.0, validate_certs=True, ca_bundle=None):
    """Healthy when the key pair can HEAD the bucket (answer 200)."""
    try:
        status, detail = s3_head_bucket(endpoint, bucket, access_key, secret_key, region, path_style,
                                        timeout, validate_certs, ca_bundle)
    except (OSError, ValueError) as exc:
        return Result(False, "cannot reach %s: %s" % (endpoint, describe_oserror(exc)
                                                      if isinstance(exc, OSError) else exc))
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
def _connect(host, port, timeout):
    return socket.create_connection((host, int(port)), timeout=timeout)


def probe_tcp(host, port, timeout=10.0):
    """Healthy when a TCP connection to host:port opens."""
    try:
        sock = _connect(host, port, timeout)
    except OSError as exc:
        return Result(False, "cannot connect: %s" % describe_oserror(exc))
    sock.close()
    return Result(True, "port %s accepts connections" % port)


# -- SCRAM-SHA-256 (RFC 5802, RFC 7677) ------------------------------------------------------------
def _saslprep(password):
    """The password as SCRAM wants it: ASCII passwords are used as they are; others are
    NFKC-normalised with non-ASCII spaces mapped to a space and "commonly mapped to nothing"
    characters removed (the common part of RFC 4013; PostgreSQL itself falls back to the
    raw bytes when a password is not valid SASLprep)."""
    if all(ord(c) < 128 for c in password):
        return password
    import unicodedata
    mapped = "".join(" " if unicodedata.category(c) == "Zs" else c for c in password
                     if c not in "\u00ad\u034f\u1806\u180b\u180c\u180d\u200b\u200c\u200d\u2060\ufe00\ufeff")
    return unicodedata.normalize("NFKC", mapped)


class ScramError(Exception):
    """The SCRAM exchange went wrong (the server's answer is malformed or not genuine)."""


class ScramSha256:
    """The client side of SCRAM-SHA-256 without channel binding (gs2 header ``n,,``).

    PostgreSQL ignores the SCRAM user name (the startup message names the user), so it is
    empty by default."""

    GS2_HEADER = "n,,"

    def __init__(self, password, username="", nonce=None):
        self.password = _saslprep(password)
        self.username = username.replace("=", "=3D").replace(",", "=2C")
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode("ascii")
        self.client_first_bare = "n=%s,r=%s" % (self.username, self.nonce)
        self.server_signature = None

    def first(self):
        """client-first-message."""
        return self.GS2_HEADER + self.client_first_bare

    def final(self, server_first):
        """client-final-message (with the proof) for the server-first-message."""
        attrs = _scram_attributes(server_first)
        if "e" in attrs:
            raise ScramError("the server refused the exchange: %s" % attrs["e"])
        try:
            nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        except (KeyError, ValueError, TypeError):
            raise ScramError("malformed server-first-message")
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise ScramError("the server's nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode("utf-8"), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = "c=%s,r=%s" % (base64.b64encode(self.GS2_HEADER.encode("ascii")).decode("ascii"), nonce)
        auth_message = ",".join([self.client_first_bare, server_first, without_proof]).encode("utf-8")
        client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return "%s,p=%s" % (without_proof, base64.b64encode(proof).decode("ascii"))

    def verify(self, server_final):
        """Check the server-final-message (the server proves it knows the password too)."""
        attrs = _scram_attributes(server_final)
        if "e" in attrs:
            raise ScramError("the server refused the proof: %s" % attrs["e"])
        try:
            signature = base64.b64decode(attrs["v"])
        except (KeyError, ValueError, TypeError):
            raise ScramError("malformed server-final-message")
        if self.server_signature is None or not hmac.compare_digest(signature, self.server_signature):
            raise ScramError("the server's signature is wrong (it does not know the password)")


def _scram_attributes(message):
    attrs = {}
    for part in message.split(","):
        if len(part) >= 2 and part[1] == "=":
            attrs.setdefault(part[0], part[2:])
    return attrs


# -- PostgreSQL probe (wire protocol 3.0) ----------------------------------------------------------
PG_PROTOCOL = 196608  # 3.0


class PgError(Exception):
    """An ErrorResponse from the server (the message is the server's)."""

    def __init__(self, fields):
        self.fields = fields
        message = fields.get("M") or "unknown error"
        super().__init__(message)


def pg_fields(payload):
    """The fields of an ErrorResponse/NoticeResponse payload as {code letter: text}."""
    fields = {}
    for item in payload.split(b"\0"):
        if item:
            fields[chr(item[0])] = item[1:].decode("utf-8", "replace")
    return fields


def _recv_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def _pg_message(sock):
    """(type byte as str, payload) of the next backend message."""
    head = _recv_exact(sock, 5)
    kind, length = chr(head[0]), struct.unpack("!I", head[1:])[0]
    if length < 4 or length > 1 << 24:
        raise ConnectionError("not a PostgreSQL server (bad message length)")
    return kind, _recv_exact(sock, length - 4)


def _pg_send(sock, kind, payload):
    sock.sendall(kind + struct.pack("!I", len(payload) + 4) + payload)


def startup_message(user, database, application_name="selfhost.dify health"):
    params = b"".join(k.encode() + b"\0" + v.encode("utf-8") + b"\0" for k, v in (
        ("user", user), ("database", database), ("application_name", application_name)))
    body = struct.pack("!I", PG_PROTOCOL) + params + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def md5_password(user, password, salt):
    """The answer to AuthenticationMD5Password."""
    inner = hashlib.md5((password + user).encode("utf-8")).hexdigest()  # nosec: the protocol's
    return "md5" + hashlib.md5(inner.encode("ascii") + salt).hexdigest()


def _pg_authenticate(sock, user, password):
    """Answer the server's authentication requests until AuthenticationOk. Returns the
    method used (trust, password, md5, SCRAM-SHA-256)."""
    method, scram = "trust", None
    while True:
        kind, payload = _pg_message(sock)
        if kind == "E":
            raise PgError(pg_fields(payload))
        if kind == "N":
            continue
        if kind != "R":
            raise ConnectionError("unexpected message %r during authentication" % kind)
        code = struct.unpack("!I", payload[:4])[0]
        if code == 0:
            return method
        if code in (3, 5, 10) and password is None:
            raise PgError({"M": "the server asks for a password and none is set"})
        if code == 3:
            method = "password"
            _pg_send(sock, b"p", password.encode("utf-8") + b"\0")
        elif code == 5:
            method = "md5"
            _pg_send(sock, b"p", md5_password(user, password, payload[4:8]).encode("ascii") + b"\0")
        elif code == 10:
            mechanisms = [m.decode("ascii", "replace") for m in payload[4:].split(b"\0") if m]
            if "SCRAM-SHA-256" not in mechanisms:
                raise PgError({"M": "the server offers only SASL %s (SCRAM-SHA-256 without channel binding "
                                    "is supported)" % ", ".join(mechanisms)})
            method, scram = "SCRAM-SHA-256", ScramSha256(password)
            first = scram.first().encode("utf-8")
            _pg_send(sock, b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
        elif code == 11 and scram is not None:
            _pg_send(sock, b"p", scram.final(payload[4:].decode("utf-8")).encode("utf-8"))
        elif code == 12 and scram is not None:
            scram.verify(payload[4:].decode("utf-8"))
        else:
            raise PgError({"M": "unsupported authentication request %d (GSSAPI, SSPI or Kerberos)" % code})


def probe_postgresql(host, port=5432, user="postgres", password=None, database=None, timeout=10.0):
    """Healthy when the user logs in to the database (without TLS, as sslmode=disable)
    and ``SELECT 1`` answers. The detail of a refusal is the server's message, e.g.
    'password authentication failed for user "dify"'."""
    database = database or user
    try:
        sock = _connect(host, port, timeout)
    except OSError as exc:
        return Result(False, "cannot connect: %s" % describe_oserror(exc))
    try:
        sock.sendall(startup_message(user, database))
        method = _pg_authenticate(sock, user, password)
        params = {}
        while True:  # ParameterStatus, BackendKeyData, ... up to ReadyForQuery
            kind, payload = _pg_message(sock)
            if kind == "E":
                raise PgError(pg_fields(payload))
            if kind == "S":
                parts = payload.split(b"\0")
                params[parts[0].decode("utf-8", "replace")] = parts[1].decode("utf-8", "replace")
            if kind == "Z":
                break
        _pg_send(sock, b"Q", b"SELECT 1\0")
        value = None
        while True:
            kind, payload = _pg_message(sock)
            if kind == "E":
                raise PgError(pg_fields(payload))
            if kind == "D":
                count = struct.unpack("!H", payload[:2])[0]
                if count:
                    size = struct.unpack("!i", payload[2:6])[0]
                    value = payload[6:6 + size].decode("utf-8", "replace") if size >= 0 else None
            if kind == "Z":
                break
        try:
            _pg_send(sock, b"X", b"")
        except OSError:
            pass
    except PgError as exc:
        code = exc.fields.get("C")
        return Result(False, "%s%s" % (exc, " (SQLSTATE %s)" % code if code else ""))
    except ScramError as exc:
        return Result(False, "SCRAM-SHA-256: %s" % exc)
    except OSError as exc:
        return Result(False, "connection failed: %s" % describe_oserror(exc))
    finally:
        sock.close()
    if value != "1":
        return Result(False, "logged in but SELECT 1 answered %r" % value)
    version = params.get("server_version")
    return Result(True, "logged in as %s to %s (%s)%s, SELECT 1 answered" % (
        user, database, method, ", PostgreSQL %s" % version if version else ""))


# -- Redis probe (RESP) --------------------------------------------------------------------------
class RespError(str):
    """An error reply (``-WRONGPASS ...``): a str holding the server's text."""


class Incomplete(Exception):
    """More bytes are needed to parse a reply."""


def resp_command(*args):
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse_resp(buf, pos=0):
    """(value, next position) of the RESP2 reply at `pos`: simple strings and bulk strings
    as str (None for a null), integers as int, arrays as lists, errors as RespError.
    Raises Incomplete when `buf` ends early, ValueError when it is not RESP."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete()
    kind, line = buf[pos:pos + 1], buf[pos + 1:end].decode("utf-8", "replace")
    nxt = end + 2
    if kind == b"+":
        return line, nxt
    if kind == b"-":
        return RespError(line), nxt
    if kind == b":":
        return int(line), nxt
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, nxt
        if len(buf) < nxt + size + 2:
            raise Incomplete()
        return buf[nxt:nxt + size].decode("utf-8", "replace"), nxt + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, nxt
        items = []
        for dummy in range(count):
            item, nxt = parse_resp(buf, nxt)
            items.append(item)
        return items, nxt
    raise ValueError("not a RESP reply: %r" % _excerpt(buf[pos:pos + 40]))


class _RespReader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def reply(self):
        while True:
            try:
                value, used = parse_resp(self.buf)
                self.buf = self.buf[used:]
                return value
            except Incomplete:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                self.buf += chunk


def probe_redis(host, port=6379, password=None, username=None, timeout=10.0):
    """Healthy when ``AUTH`` (if a password is given) answers OK and ``PING`` answers PONG.
    The detail of a refusal is the server's (WRONGPASS, NOAUTH, NOPERM ...)."""
    try:
        sock = _connect(host, port, timeout)
    except OSError as exc:
        return Result(False, "cannot connect: %s" % describe_oserror(exc))
    who = username or "default"
    try:
        reader = _RespReader(sock)
        if password:
            sock.sendall(resp_command("AUTH", username, password) if username else resp_command("AUTH", password))
            answer = reader.reply()
            if isinstance(answer, RespError):
                return Result(False, "AUTH as %s refused: %s" % (who, answer))
        sock.sendall(resp_command("PING"))
        answer = reader.reply()
        if isinstance(answer, RespError):
            return Result(False, "PING refused: %s" % answer)
        if answer != "PONG":
            return Result(False, "PING answered %r, expected PONG" % _excerpt(str(answer), 80))
        try:
            sock.sendall(resp_command("QUIT"))
        except OSError:
            pass
    except ValueError as exc:
        return Result(False, "not a Redis server: %s" % exc)
    except OSError as exc:
        return Result(False, "connection failed: %s" % describe_oserror(exc))
    finally:
        sock.close()
    return Result(True, "PING answered PONG%s" % (" (logged in as %s)" % who if password else ""))
