# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Dify contract double: a stand-in for Dify's containers, for tests and the lab only.

It is NOT Dify. It plays the parts of Dify's deployment contract that an operator's
automation depends on (services, ports, environment variables, the setup API, health
endpoints, migrations) so that the collection's roles can be tested on machines that
cannot pull Dify's images. Every answer says so: the ``Server`` and ``X-Dify-Double``
headers, the ``double`` field of the health answers, the web page title, the log lines.

One program, several parts, chosen like Dify's api image chooses: by the ``MODE``
environment variable or by the first argument (``double api``):

- ``api`` (5001), ``worker``, ``beat``, ``migration`` (one-shot): Dify's api image;
- ``web`` (3000), ``sandbox`` (8194), ``plugin_daemon`` (5002, 5003): Dify's other images;
- ``healthcheck`` [mode]: exit 0 when the local part is healthy (for compose healthchecks);
- ``version``: print the Dify version this image plays.

The wiring is really checked, never simulated: a PostgreSQL login, the pgvector extension,
Redis AUTH + PING + a write, the Celery broker, an S3 HEAD bucket signed with the keys and
address style given, the sandbox and plugin daemon with their keys, the daemon's call back
into the api, and a request relayed by the SSRF proxy. A failed check names the variable
to fix and never shows a secret value.

Needs Python 3.9+, psycopg2 and redis (Debian: python3-psycopg2, python3-redis), and
probes.py (S3 signing and HTTP helpers, standard library only) next to this file.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import datetime
import hashlib
import hmac
import html
import http.client
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

NAME = "dify-contract-double"
VERSION_FILE = "/etc/dify-double/plays-version"
DEFAULT_PLAYS = "1.13.3"

# What each played Dify release brings along: the schema revisions its migration applies
# (in order; the last one is the head), and the versions the companion images report.
# The revision ids are the double's own: they are not Dify's alembic revisions.
RELEASES = {
    "1.13.3": {"revisions": ["double_0001"], "plugin_daemon": "0.5.3-local", "sandbox": "0.2.14"},
    "1.14.1": {"revisions": ["double_0001", "double_0002"], "plugin_daemon": "0.6.0-local", "sandbox": "0.2.15"},
}

API_MODES = ("api", "worker", "beat", "migration")
SERVER_MODES = ("api", "web", "sandbox", "plugin_daemon")
MODES = API_MODES + ("web", "sandbox", "plugin_daemon")
MODE_ALIASES = {"worker_beat": "beat", "job": "migration", "plugin-daemon": "plugin_daemon", "daemon": "plugin_daemon"}
DEFAULT_PORTS = {"api": 5001, "web": 3000, "sandbox": 8194, "plugin_daemon": 5002}
MODE_FILE = "/tmp/dify-double.mode"  # the running mode, for `double healthcheck` without a mode
PORT_VARIABLES = {"api": "DIFY_PORT", "web": "PORT", "sandbox": "SANDBOX_PORT", "plugin_daemon": "SERVER_PORT"}

CHECK_TTL = 5.0  # seconds a wiring verdict is reused (DOUBLE_CHECK_TTL)
HEARTBEAT_KEY = "dify-double:heartbeat:%s"
MIGRATION_LOCK = "db_upgrade_lock"
MIGRATION_LOCK_TTL = 60
SESSION_SALT = b"cookie-session"
SESSION_MAX_AGE = 31 * 86400
NIL_TENANT = "00000000-0000-0000-0000-000000000000"
INNER_PING = "/inner/api/double/ping"
SECRET_HEADERS = ("authorization", "cookie", "set-cookie", "x-api-key", "x-inner-api-key", "x-csrf-token",
                  "proxy-authorization")
PASSWORD_RE = re.compile(r"^(?=.*[a-zA-Z])(?=.*\d).{8,}$")
EMAIL_RE = re.compile(r"^[\w.!#$%&'*+\-/=?^`{|}~]+@([\w-]+\.)+[\w-]{2,}$")


# -- small pure helpers (unit-tested) ----------------------------------------------------------
def log(mode, message):
    """One line on stdout, always marked as the double's."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sys.stdout.write("%s [%s %s] %s\n" % (stamp, NAME, mode, message))
    sys.stdout.flush()


def plays_version(environ=None, version_file=VERSION_FILE):
    """The Dify release this image plays: DOUBLE_PLAYS_VERSION, else the file baked in."""
    environ = os.environ if environ is None else environ
    version = (environ.get("DOUBLE_PLAYS_VERSION") or "").strip()
    if not version:
        try:
            with open(version_file, encoding="utf-8") as handle:
                version = handle.read().strip()
        except OSError:
            version = DEFAULT_PLAYS
    return version


def release(version):
    """The RELEASES entry of `version` (unknown versions play the newest known release)."""
    if version in RELEASES:
        return RELEASES[version]
    return RELEASES[sorted(RELEASES, key=lambda v: tuple(int(p) for p in v.split(".")))[-1]]


def parse_mode(argv, environ, recorded=None):
    """(command, mode, rest) from the command line and MODE. command is 'run',
    'healthcheck' or 'version'. A healthcheck without a mode checks the `recorded` mode
    (the one the container's main process runs)."""
    args = list(argv)
    command = "run"
    if args and args[0] in ("healthcheck", "version"):
        command = args.pop(0)
    mode = None
    if args and not args[0].startswith("-"):
        mode = args.pop(0)
    if command == "healthcheck" and not mode:
        mode = recorded
    mode = (mode or environ.get("MODE") or "api").strip().lower()
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ValueError("unknown mode %r (known: %s)" % (mode, ", ".join(MODES)))
    return command, mode, args


def truthy(value):
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if isinstance(text, str):
        text = text.encode("ascii")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def _int_bytes(number):
    return number.to_bytes((number.bit_length() + 7) // 8 or 1, "big")


def sign_session(data, secret_key, now=None):
    """A Flask-style session cookie value: the compact JSON (zlib-compressed when shorter,
    then marked by a leading dot), a timestamp, and an HMAC-SHA1 signature keyed by
    HMAC(SECRET_KEY, "cookie-session"), each part base64url without padding."""
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")
    packed = zlib.compress(payload)
    body = ("." + b64url(packed)) if len(packed) < len(payload) - 1 else b64url(payload)
    stamp = b64url(_int_bytes(int(time.time() if now is None else now)))
    value = ("%s.%s" % (body, stamp)).encode("ascii")
    key = hmac.new(secret_key.encode("utf-8"), SESSION_SALT, hashlib.sha1).digest()
    return "%s.%s" % (value.decode("ascii"), b64url(hmac.new(key, value, hashlib.sha1).digest()))


def load_session(cookie, secret_key, max_age=SESSION_MAX_AGE, now=None):
    """The dict of a cookie made by sign_session (or Flask with the same key); {} when it is
    missing, tampered with, signed with another key or too old."""
    if not cookie or cookie.count(".") < 2:
        return {}
    value, signature = cookie.rsplit(".", 1)
    key = hmac.new(secret_key.encode("utf-8"), SESSION_SALT, hashlib.sha1).digest()
    try:
        expected = hmac.new(key, value.encode("ascii"), hashlib.sha1).digest()
        if not hmac.compare_digest(expected, b64url_decode(signature)):
            return {}
        body, stamp = value.rsplit(".", 1)
        if max_age is not None:
            age = (time.time() if now is None else now) - int.from_bytes(b64url_decode(stamp), "big")
            if age > max_age or age < -60:
                return {}
        raw = zlib.decompress(b64url_decode(body[1:])) if body.startswith(".") else b64url_decode(body)
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeError, zlib.error, binascii.Error):
        return {}
    return data if isinstance(data, dict) else {}


def jwt_encode(claims, secret_key):
    """An HS256 JSON Web Token (Dify's console tokens are HS256 JWTs signed with SECRET_KEY)."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing_input = ("%s.%s" % (header, body)).encode("ascii")
    signature = b64url(hmac.new(secret_key.encode("utf-8"), signing_input, hashlib.sha256).digest())
    return "%s.%s" % (signing_input.decode("ascii"), signature)


def jwt_decode(token, secret_key, now=None):
    """The claims of a valid, unexpired HS256 token; None otherwise."""
    try:
        header, body, signature = (token or "").split(".")
        signing_input = ("%s.%s" % (header, body)).encode("ascii")
        expected = hmac.new(secret_key.encode("utf-8"), signing_input, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, b64url_decode(signature)):
            return None
        claims = json.loads(b64url_decode(body).decode("utf-8"))
    except (ValueError, UnicodeError, binascii.Error):
        return None
    if not isinstance(claims, dict):
        return None
    if "exp" in claims and float(claims["exp"]) < (time.time() if now is None else now):
        return None
    return claims


def hash_password(password, salt):
    """PBKDF2-HMAC-SHA256 of a password (hex), as stored in accounts.password."""
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, 10000).hex()


def valid_password(password):
    """Dify's rule: at least 8 characters with a letter and a digit."""
    return isinstance(password, str) and bool(PASSWORD_RE.match(password))


def valid_email(email):
    return isinstance(email, str) and bool(EMAIL_RE.match(email))


def redact_url(url):
    """A URL with its password (if any) replaced by ********."""
    parts = urlsplit(url or "")
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return parts._replace(netloc="%s:********@%s" % (user, netloc[1])).geturl()


def redis_url_settings(url):
    """(host, port, db, username, password, ssl) of a redis:// or rediss:// URL."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("not a redis:// or rediss:// URL")
    db = (parts.path or "/0").strip("/") or "0"
    if not db.isdigit():
        raise ValueError("the database number %r is not a number" % db)
    query = parse_qs(parts.query)
    if "db" in query:
        db = query["db"][0]
    return (parts.hostname, parts.port or 6379, int(db), unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password is not None else None, parts.scheme == "rediss")


def pg_reason(message):
    """The server's reason out of a libpq error text (the FATAL line, or the first line)."""
    text = str(message or "").strip()
    match = re.search(r"FATAL:\s+(.*)", text)
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return re.sub(r"^ERROR:\s+", "", lines[0]) if lines else "unknown error"


def pg_error_variable(message, names):
    """Which variable to fix for a PostgreSQL connection error. `names` maps host, port,
    user, password and database to the variable names of the caller (DB_* or PGVECTOR_*)."""
    text = str(message or "")
    if "password authentication failed" in text or "no password supplied" in text \
            or "password is required" in text or "empty password" in text:
        return names["password"]
    if re.search(r'role ".*" does not exist', text) or "permission denied for database" in text:
        return names["user"]
    if re.search(r'database ".*" does not exist', text):
        return names["database"]
    if "Connection refused" in text:
        return names["port"]
    return names["host"]


def redis_error_variable(message, prefix="REDIS"):
    """Which variable to fix for a Redis error (prefix REDIS, or a URL variable)."""
    text = str(message or "")
    if prefix != "REDIS":
        return prefix
    lower = text.lower()
    if "noperm" in lower or "no permissions" in lower:
        return "REDIS_USERNAME"
    if "wrongpass" in lower or "invalid username-password" in lower or "authentication required" in lower \
            or "noauth" in lower or "without any password configured" in lower or "invalid password" in lower:
        return "REDIS_PASSWORD"
    if "db index" in lower:
        return "REDIS_DB"
    if "connection refused" in lower:
        return "REDIS_PORT"
    return "REDIS_HOST"


def s3_path_style(style, endpoint, bucket):
    """Whether requests use path style for S3_ADDRESS_STYLE `style` (auto, virtual, path).

    'auto' behaves as current AWS SDKs do with a custom endpoint: virtual-hosted style when
    the bucket name can be a DNS label and the endpoint is a host name, path style when the
    endpoint is an IP address or the bucket name cannot be a DNS label."""
    style = (style or "auto").strip().lower()
    if style == "path":
        return True
    if style == "virtual":
        return False
    host = urlsplit(endpoint or "").hostname or ""
    if re.match(r"^\d+\.\d+\.\d+\.\d+$", host) or ":" in host or host == "localhost":
        return True
    return not re.match(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", bucket or "")


def web_prefixes(environ):
    """What Dify's web image derives from CONSOLE_API_URL and APP_API_URL."""
    console = (environ.get("CONSOLE_API_URL") or "").rstrip("/")
    app = (environ.get("APP_API_URL") or "").rstrip("/")
    return {"NEXT_PUBLIC_API_PREFIX": console + "/console/api", "NEXT_PUBLIC_PUBLIC_API_PREFIX": app + "/api"}


def cookie_names(environ):
    """The console cookie names: a __Host- prefix when both console URLs are https and no
    COOKIE_DOMAIN is set (as Dify does); (names, secure)."""
    secure = (environ.get("CONSOLE_WEB_URL") or "").startswith("https") and \
        (environ.get("CONSOLE_API_URL") or "").startswith("https")
    domain = (environ.get("COOKIE_DOMAIN") or "").strip().lstrip(".")
    prefix = "__Host-" if secure and not domain else ""
    return {name: prefix + name for name in ("access_token", "refresh_token", "csrf_token")}, secure


def migration_plan(current, version):
    """The revisions to apply to go from `current` (None: empty database) to the head of the
    played `version`. Raises ValueError for a revision this release does not know (a
    database already upgraded by a newer release: downgrades are not supported)."""
    revisions = release(version)["revisions"]
    if current is None:
        return list(revisions)
    if current not in revisions:
        raise ValueError("Can't locate revision identified by '%s' (the database was migrated by a newer "
                         "release than %s; downgrades are not supported)" % (current, version))
    return revisions[revisions.index(current) + 1:]


def echo_headers(headers):
    """Request headers for an echo, with credentials replaced by <redacted>."""
    result = {}
    for name, value in headers.items():
        result[name] = "<redacted>" if name.lower() in SECRET_HEADERS else value
    return result


def sse_params(query):
    """(events, interval) of an SSE request: ?events= (1..1000, default 6) and ?interval=
    (0..60 s, default 0.5)."""
    def number(name, default, cast, low, high):
        try:
            value = cast(query.get(name, [default])[0])
        except (TypeError, ValueError):
            value = default
        return max(low, min(high, value))
    return number("events", 6, int, 1, 1000), number("interval", 0.5, float, 0.0, 60.0)


def error(variable, message, **extra):
    item = {"variable": variable, "message": message}
    item.update(extra)
    return item


# -- S3 helpers (probes.py does the signing) ---------------------------------------------------
def _probes():
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import probes  # pylint: disable=import-outside-toplevel
    return probes


class S3Settings:
    """One S3 configuration and the variable names it came from (api or plugin daemon)."""

    def __init__(self, environ, names):
        self.names = names
        self.endpoint = (environ.get(names["endpoint"]) or "").strip()
        self.bucket = (environ.get(names["bucket"]) or "").strip()
        self.access_key = environ.get(names["access_key"]) or ""
        self.secret_key = environ.get(names["secret_key"]) or ""
        self.region = (environ.get(names["region"]) or "").strip() or "us-east-1"
        if names.get("style"):
            self.path_style = s3_path_style(environ.get(names["style"]), self.endpoint, self.bucket)
            self.style_variable = names["style"]
        else:
            self.path_style = truthy(environ.get(names["path_style"]))
            self.style_variable = names["path_style"]
        self.validate = not truthy(environ.get("S3_INSECURE_SKIP_VERIFY"))

    def request(self, method, key="", body=b"", query=None, headers=None):
        return _probes().s3_request(method, self.endpoint, self.bucket, key=key, body=body,
                                    access_key=self.access_key, secret_key=self.secret_key,
                                    region=self.region, path_style=self.path_style, timeout=10.0,
                                    validate_certs=self.validate, headers=headers, query=query)


API_S3_NAMES = {"endpoint": "S3_ENDPOINT", "bucket": "S3_BUCKET_NAME", "access_key": "S3_ACCESS_KEY",
                "secret_key": "S3_SECRET_KEY", "region": "S3_REGION", "style": "S3_ADDRESS_STYLE"}
DAEMON_S3_NAMES = {"endpoint": "S3_ENDPOINT", "bucket": "PLUGIN_STORAGE_OSS_BUCKET", "access_key": "AWS_ACCESS_KEY",
                   "secret_key": "AWS_SECRET_KEY", "region": "AWS_REGION", "path_style": "S3_USE_PATH_STYLE"}


def _describe_oserror(exc):
    try:
        return _probes().describe_oserror(exc)
    except ImportError:
        return str(exc) or type(exc).__name__


def check_s3(environ, names, mode, state):
    """HEAD the bucket; create it on 404 (as Dify's S3 storage does at start); on 403 carry on
    as Dify does but report which key the server refused."""
    s3 = S3Settings(environ, names)
    for item in ("endpoint", "bucket", "access_key", "secret_key"):
        if not getattr(s3, item):
            return [error(names[item], "%s is empty" % names[item])]
    probes = _probes()
    try:
        status, headers, dummy = s3.request("HEAD")
    except (OSError, ValueError) as exc:
        host = urlsplit(s3.endpoint).hostname or ""
        if not s3.path_style and isinstance(exc, socket.gaierror):
            try:
                socket.getaddrinfo(host, None)
                return [error(s3.style_variable, "%s.%s does not resolve: the server needs path-style addressing "
                                                 "(virtual-hosted style was chosen)" % (s3.bucket, host))]
            except OSError:
                pass
        detail = str(exc) if isinstance(exc, ValueError) else _describe_oserror(exc)
        return [error(names["endpoint"], "cannot reach S3 at %s: %s" % (s3.endpoint, detail))]
    if status == 200:
        return []
    code = message = None
    if 400 <= status < 500 and status != 404:
        try:
            dummy, dummy, body = s3.request("GET", query={"location": ""})
            code, message = probes.s3_error(body)
        except OSError:
            pass
    what = "%s%s" % (code or status, (": " + message) if message else "")
    if status == 404:
        body = b""
        if s3.region != "us-east-1":
            body = ("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>" % s3.region).encode()
        try:
            created, dummy, answer = s3.request("PUT", body=body)
        except OSError as exc:
            return [error(names["endpoint"], "cannot reach S3 at %s: %s" % (s3.endpoint, _describe_oserror(exc)))]
        if created == 200:
            log(mode, "S3 bucket %s did not exist: created it (as Dify's S3 storage does at start)" % s3.bucket)
            return []
        code, message = probes.s3_error(answer)
        return [error(names["bucket"], "bucket %s does not exist and creating it failed: %s %s" % (
            s3.bucket, created, code or ""))]
    if status == 403 or code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
        variable = {"InvalidAccessKeyId": names["access_key"], "SignatureDoesNotMatch": names["secret_key"]}.get(
            code, names["access_key"])
        state["s3_forbidden"] = True
        return [error(variable, "S3 refused HEAD bucket %s (%s); Dify carries on after a 403, but storage "
                                "will fail" % (s3.bucket, what))]
    if status == 301 or code in ("AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"):
        named = headers.get("x-amz-bucket-region")
        return [error(names["region"], "bucket %s is not in region %s (%s)%s" % (
            s3.bucket, s3.region, what, "; the server names %s" % named if named else ""))]
    if status == 400:
        return [error(s3.style_variable, "S3 refused the request for bucket %s (%s): check the address style "
                                         "and the region" % (s3.bucket, what))]
    return [error(names["endpoint"], "unexpected answer %s from S3 for bucket %s (%s)" % (status, s3.bucket, what))]


# -- PostgreSQL and Redis (psycopg2, redis-py) -------------------------------------------------
DB_NAMES = {"host": "DB_HOST", "port": "DB_PORT", "user": "DB_USERNAME", "password": "DB_PASSWORD",
            "database": "DB_DATABASE"}
PGVECTOR_NAMES = {"host": "PGVECTOR_HOST", "port": "PGVECTOR_PORT", "user": "PGVECTOR_USER",
                  "password": "PGVECTOR_PASSWORD", "database": "PGVECTOR_DATABASE"}


class WiringError(Exception):
    """A check failed: `errors` lists {variable, message}."""

    def __init__(self, errors):
        super().__init__("; ".join("%s: %s" % (e["variable"], e["message"]) for e in errors))
        self.errors = errors


def pg_connect(environ, names=None, database=None, sslmode_variable=None):
    """A psycopg2 connection from the DB_* (or PGVECTOR_*) variables; WiringError naming the
    variable to fix when it fails."""
    import psycopg2  # pylint: disable=import-outside-toplevel
    names = names or DB_NAMES
    kwargs = {}
    if names is DB_NAMES and environ.get("DB_EXTRAS"):
        kwargs.update(parse_qsl(environ["DB_EXTRAS"]))
    if sslmode_variable and environ.get(sslmode_variable):
        kwargs["sslmode"] = environ[sslmode_variable]
    port = environ.get(names["port"]) or "5432"
    if not port.isdigit():
        raise WiringError([error(names["port"], "%s is not a port number" % names["port"])])
    try:
        return psycopg2.connect(host=environ.get(names["host"]) or "localhost", port=int(port),
                                user=environ.get(names["user"]) or "postgres",
                                password=environ.get(names["password"]) or "",
                                dbname=database or environ.get(names["database"]) or "dify",
                                connect_timeout=5, application_name=NAME, **kwargs)
    except psycopg2.Error as exc:
        text = str(exc)
        raise WiringError([error(pg_error_variable(text, names), pg_reason(text))]) from None


def redis_client(environ, url_variable=None):
    """A redis-py client from REDIS_* (or from the URL in `url_variable`)."""
    import redis  # pylint: disable=import-outside-toplevel
    if url_variable:
        try:
            host, port, db, username, password, use_ssl = redis_url_settings(environ.get(url_variable) or "")
        except ValueError as exc:
            raise WiringError([error(url_variable, "%s: %s" % (url_variable, exc))]) from None
    else:
        host = environ.get("REDIS_HOST") or "localhost"
        port = int(environ.get("REDIS_PORT") or 6379)
        db = int(environ.get("REDIS_DB") or 0)
        username = environ.get("REDIS_USERNAME") or None
        password = environ.get("REDIS_PASSWORD") or None
        use_ssl = truthy(environ.get("REDIS_USE_SSL"))
    options = {"host": host, "port": port, "db": db, "username": username, "password": password,
               "socket_timeout": 5, "socket_connect_timeout": 5, "decode_responses": True}
    if use_ssl:
        options["ssl"] = True
        options["ssl_cert_reqs"] = environ.get("REDIS_SSL_CERT_REQS") or "required"
        if environ.get("REDIS_SSL_CA_CERTS"):
            options["ssl_ca_certs"] = environ["REDIS_SSL_CA_CERTS"]
    return redis.Redis(**options)


def redis_call(environ, action, url_variable=None):
    """Run action(client); WiringError naming the variable to fix on a Redis error."""
    import redis  # pylint: disable=import-outside-toplevel
    client = redis_client(environ, url_variable)
    try:
        return action(client)
    except redis.RedisError as exc:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, redis.AuthenticationError) and "invalid username-password" in text.lower():
            text = "invalid username-password pair (user %s)" % (
                "'%s'" % (client.connection_pool.connection_kwargs.get("username") or "default"))
        where = redact_url(environ.get(url_variable)) if url_variable else "%s:%s" % (
            environ.get("REDIS_HOST") or "localhost", environ.get("REDIS_PORT") or 6379)
        raise WiringError([error(redis_error_variable(text, url_variable or "REDIS"),
                                 "Redis at %s: %s" % (where, text))]) from None
    finally:
        client.close()


# -- the wiring checks --------------------------------------------------------------------------
def _run(fallback, check, *args):
    """Run one check; any failure becomes a list of errors (`fallback` names the variable
    when the failure is not one the check recognised)."""
    try:
        return check(*args) or []
    except WiringError as exc:
        return exc.errors
    except ImportError as exc:
        return [error("image", "the double's image lacks a module: %s" % exc)]
    except Exception as exc:  # pylint: disable=broad-except
        return [error(fallback, "%s: %s" % (type(exc).__name__, pg_reason(exc)))]


def run_checks(checks):
    """Run (fallback variable, function, args...) checks side by side; errors in list order."""
    if not checks:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = [pool.submit(_run, *check) for check in checks]
        return [item for future in futures for item in future.result()]


def check_database(environ, version, need_schema=True):
    if (environ.get("DB_TYPE") or "postgresql") != "postgresql":
        return [error("DB_TYPE", "DB_TYPE is %r: the double plays PostgreSQL only" % environ.get("DB_TYPE"))]
    conn = pg_connect(environ)
    try:
        if not need_schema:
            return []
        current = current_revision(conn)
        head = release(version)["revisions"][-1]
        if current == head:
            return []
        if current is None:
            return [error("MIGRATION_ENABLED", "database %s has no schema yet: run the migration "
                                               "(MODE=migration or MIGRATION_ENABLED=true)" % environ.get("DB_DATABASE", "dify"))]
        try:
            pending = migration_plan(current, version)
        except ValueError as exc:
            return [error("DB_DATABASE", str(exc))]
        return [error("MIGRATION_ENABLED", "database %s is at revision %s, %s is pending: run the migration" % (
            environ.get("DB_DATABASE", "dify"), current, ", ".join(pending)))]
    finally:
        conn.close()


def check_pgvector(environ):
    store = environ.get("VECTOR_STORE") or "weaviate"
    if store != "pgvector":
        return [error("VECTOR_STORE", "VECTOR_STORE is %r: the double plays pgvector only" % store)]
    conn = pg_connect(environ, PGVECTOR_NAMES)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
            if cur.fetchone():
                return []
            # Dify creates the extension on first use: test that it could, and undo it.
            try:
                cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except Exception as exc:  # pylint: disable=broad-except
                return [error("PGVECTOR_DATABASE", "the vector extension is missing in database %s and user %s cannot "
                                                   "create it (%s): create it as a superuser" % (
                                                       environ.get("PGVECTOR_DATABASE"), environ.get("PGVECTOR_USER"),
                                                       pg_reason(exc)))]
            finally:
                conn.rollback()
        return []
    finally:
        conn.close()


def check_redis(environ, mode):
    def ping_and_write(client):
        client.ping()
        client.set("dify-double:wiring:%s" % mode, str(time.time()), ex=30)
    redis_call(environ, ping_and_write)
    return []


def check_broker(environ):
    url = environ.get("CELERY_BROKER_URL") or ""
    if not url:
        return [error("CELERY_BROKER_URL", "CELERY_BROKER_URL is empty")]
    redis_call(environ, lambda client: client.ping(), url_variable="CELERY_BROKER_URL")
    return []


def check_secret_key(environ, version):
    if environ.get("SECRET_KEY"):
        return []
    if version.startswith("1.13."):
        return [error("SECRET_KEY", "SECRET_KEY is empty (it signs sessions and tokens)")]
    return []


def check_init_password(environ):
    if len(environ.get("INIT_PASSWORD") or "") > 30:
        return [error("INIT_PASSWORD", "INIT_PASSWORD is longer than 30 characters")]
    return []


def http_get(url, headers=None, timeout=5.0, proxy=None):
    """(status, lower-case headers, body) of a GET; through an HTTP proxy when given.
    Connection failures raise OSError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("%r is not an http(s) URL" % url)
    if proxy:
        pparts = urlsplit(proxy)
        if not pparts.hostname:
            raise ValueError("%r is not a proxy URL" % proxy)
        conn = http.client.HTTPConnection(pparts.hostname, pparts.port or 3128, timeout=timeout)
        target = url
    else:
        conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = conn_class(parts.hostname, parts.port, timeout=timeout)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    try:
        conn.request("GET", target, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except http.client.HTTPException as exc:
        raise ConnectionError("malformed HTTP answer (%s)" % type(exc).__name__) from None
    finally:
        conn.close()


def _reach(variable, url, **kwargs):
    try:
        return http_get(url, **kwargs)
    except ValueError as exc:
        raise WiringError([error(variable, str(exc))]) from None
    except OSError as exc:
        raise WiringError([error(variable, "no answer from %s: %s" % (url, _describe_oserror(exc)))]) from None


def check_sandbox(environ):
    endpoint = (environ.get("CODE_EXECUTION_ENDPOINT") or "").rstrip("/")
    if not endpoint:
        return [error("CODE_EXECUTION_ENDPOINT", "CODE_EXECUTION_ENDPOINT is empty")]
    status, dummy, body = _reach("CODE_EXECUTION_ENDPOINT", endpoint + "/health")
    if status != 200:
        return [error("CODE_EXECUTION_ENDPOINT", "%s/health answered %s" % (endpoint, status))]
    status, dummy, body = _reach("CODE_EXECUTION_ENDPOINT", endpoint + "/v1/sandbox/dependencies?language=python3",
                                 headers={"X-Api-Key": environ.get("CODE_EXECUTION_API_KEY") or ""})
    if status == 401:
        return [error("CODE_EXECUTION_API_KEY", "the sandbox refused the key: CODE_EXECUTION_API_KEY must equal the "
                                                "sandbox's API_KEY (SANDBOX_API_KEY)")]
    if status != 200:
        return [error("CODE_EXECUTION_ENDPOINT", "the sandbox answered %s to an authenticated request" % status)]
    return []


def check_plugin_daemon(environ):
    url = (environ.get("PLUGIN_DAEMON_URL") or "").rstrip("/")
    if not url:
        return [error("PLUGIN_DAEMON_URL", "PLUGIN_DAEMON_URL is empty")]
    status, dummy, body = _reach("PLUGIN_DAEMON_URL", url + "/health/check", timeout=20.0)
    problems = []
    if status not in (200, 503):
        return [error("PLUGIN_DAEMON_URL", "%s/health/check answered %s" % (url, status))]
    try:
        report = json.loads(body.decode("utf-8"))
    except ValueError:
        report = {}
    for item in report.get("errors") or []:
        if isinstance(item, dict) and item.get("variable"):
            problems.append(error(item["variable"], "plugin_daemon: %s" % item.get("message", ""), service="plugin_daemon"))
    status, dummy, body = _reach("PLUGIN_DAEMON_URL", url + "/plugin/%s/management/list?page=1&page_size=1" % NIL_TENANT,
                                 headers={"X-Api-Key": environ.get("PLUGIN_DAEMON_KEY") or ""})
    if status == 401:
        problems.insert(0, error("PLUGIN_DAEMON_KEY", "the plugin daemon refused the key: PLUGIN_DAEMON_KEY must equal "
                                                      "the daemon's SERVER_KEY"))
    elif status != 200:
        problems.insert(0, error("PLUGIN_DAEMON_URL", "the plugin daemon answered %s to an authenticated request" % status))
    return problems


def check_ssrf_proxy(environ):
    problems = []
    target = (environ.get("CODE_EXECUTION_ENDPOINT") or "").rstrip("/") + "/health"
    seen = set()
    for variable in ("SSRF_PROXY_HTTP_URL", "SSRF_PROXY_HTTPS_URL"):
        proxy = (environ.get(variable) or "").strip()
        if not proxy or proxy in seen:
            if not proxy and variable == "SSRF_PROXY_HTTP_URL":
                problems.append(error(variable, "%s is empty: outbound requests would bypass the SSRF proxy" % variable))
            continue
        seen.add(proxy)
        try:
            status, headers, body = http_get(target, proxy=proxy)
        except (OSError, ValueError) as exc:
            problems.append(error(variable, "the proxy %s does not answer: %s" % (
                redact_url(proxy), exc if isinstance(exc, ValueError) else _describe_oserror(exc))))
            continue
        if status != 200:
            why = headers.get("x-squid-error") or body[:80].decode("utf-8", "replace")
            problems.append(error(variable, "the proxy %s did not relay GET %s: %s %s" % (
                redact_url(proxy), target, status, why)))
    return problems


def api_checks(environ, version, mode, state):
    """Every check of the api image's modes; the list of errors (empty: healthy)."""
    errors = check_secret_key(environ, version) + check_init_password(environ)
    checks = [("DB_HOST", check_database, environ, version),
              ("PGVECTOR_HOST", check_pgvector, environ),
              ("REDIS_HOST", check_redis, environ, mode),
              ("CELERY_BROKER_URL", check_broker, environ)]
    if (environ.get("STORAGE_TYPE") or "opendal") != "s3":
        errors.append(error("STORAGE_TYPE", "STORAGE_TYPE is %r: the double plays s3 storage only" % environ.get("STORAGE_TYPE")))
    else:
        checks.append(("S3_ENDPOINT", check_s3, environ, API_S3_NAMES, mode, state))
    if mode == "api":
        checks += [("CODE_EXECUTION_ENDPOINT", check_sandbox, environ),
                   ("SSRF_PROXY_HTTP_URL", check_ssrf_proxy, environ),
                   ("PLUGIN_DAEMON_URL", check_plugin_daemon, environ)]
        if not environ.get("INNER_API_KEY_FOR_PLUGIN"):
            errors.append(error("INNER_API_KEY_FOR_PLUGIN", "INNER_API_KEY_FOR_PLUGIN is empty (PLUGIN_DIFY_INNER_API_KEY)"))
    return errors + run_checks(checks)


def check_daemon_database(environ):
    """Log in to the daemon's database; create it when missing, as the daemon does (through
    DB_DEFAULT_DATABASE, default postgres)."""
    try:
        pg_connect(environ, sslmode_variable="DB_SSL_MODE").close()
        return []
    except WiringError as exc:
        if exc.errors[0]["variable"] != "DB_DATABASE":
            raise
    import psycopg2  # pylint: disable=import-outside-toplevel
    from psycopg2 import sql  # pylint: disable=import-outside-toplevel
    name = environ.get("DB_DATABASE") or "dify_plugin"
    conn = pg_connect(environ, database=environ.get("DB_DEFAULT_DATABASE") or "postgres", sslmode_variable="DB_SSL_MODE")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        log("plugin_daemon", "database %s did not exist: created it (as the plugin daemon does)" % name)
        return []
    except psycopg2.Error as exc:
        return [error("DB_DATABASE", "database %s does not exist and creating it failed: %s" % (name, pg_reason(exc)))]
    finally:
        conn.close()


def check_inner_api(environ):
    url = (environ.get("DIFY_INNER_API_URL") or "").rstrip("/")
    if not url:
        return [error("DIFY_INNER_API_URL", "DIFY_INNER_API_URL is empty")]
    status, headers, dummy = _reach("DIFY_INNER_API_URL", url + INNER_PING,
                                    headers={"X-Inner-Api-Key": environ.get("DIFY_INNER_API_KEY") or ""})
    if status == 200:
        return []
    if status == 404 and headers.get("x-dify-double") == "api":
        return [error("DIFY_INNER_API_KEY", "the api refused the inner API key: DIFY_INNER_API_KEY must equal the api's "
                                            "INNER_API_KEY_FOR_PLUGIN (both PLUGIN_DIFY_INNER_API_KEY)")]
    return [error("DIFY_INNER_API_URL", "%s does not look like Dify's api (answered %s)" % (url, status))]


def check_daemon_storage(environ, state):
    storage = environ.get("PLUGIN_STORAGE_TYPE") or "local"
    if storage == "aws_s3":
        return check_s3(environ, DAEMON_S3_NAMES, "plugin_daemon", state)
    if storage != "local":
        return [error("PLUGIN_STORAGE_TYPE", "PLUGIN_STORAGE_TYPE is %r: the double plays local and aws_s3" % storage)]
    root = environ.get("PLUGIN_STORAGE_LOCAL_ROOT") or "/app/storage"
    try:
        os.makedirs(root, exist_ok=True)
        probe = os.path.join(root, ".dify-double-write-test")
        with open(probe, "w", encoding="utf-8") as handle:
            handle.write("ok")
        os.unlink(probe)
    except OSError as exc:
        return [error("PLUGIN_STORAGE_LOCAL_ROOT", "cannot write to %s: %s" % (root, exc.strerror))]
    return []


def daemon_checks(environ, state):
    errors = []
    if not environ.get("SERVER_KEY"):
        errors.append(error("SERVER_KEY", "SERVER_KEY is empty (PLUGIN_DAEMON_KEY)"))
    return errors + run_checks([("DB_HOST", check_daemon_database, environ),
                                ("REDIS_HOST", check_redis, environ, "plugin_daemon"),
                                ("S3_ENDPOINT", check_daemon_storage, environ, state),
                                ("DIFY_INNER_API_URL", check_inner_api, environ)])


class CheckCache:
    """A verdict reused for `ttl` seconds; one evaluation at a time. Logs every change."""

    def __init__(self, mode, evaluate, ttl):
        self.mode, self.evaluate, self.ttl = mode, evaluate, ttl
        self.lock = threading.Lock()
        self.at, self.errors, self.logged = 0.0, None, None

    def get(self):
        with self.lock:
            if self.errors is None or time.monotonic() - self.at >= self.ttl:
                self.errors = self.evaluate()
                self.at = time.monotonic()
                summary = json.dumps(self.errors, sort_keys=True)
                if summary != self.logged:
                    self.logged = summary
                    if self.errors:
                        for item in self.errors:
                            log(self.mode, "wiring check failed: %s: %s" % (item["variable"], item["message"]))
                    else:
                        log(self.mode, "wiring checks passed")
            return list(self.errors)


# -- schema and migrations ----------------------------------------------------------------------
SCHEMA = {
    "double_0001": [
        """CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY)""",
        """CREATE TABLE dify_setups (
               version varchar(255) NOT NULL PRIMARY KEY,
               setup_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP(0))""",
        """CREATE TABLE accounts (
               id uuid NOT NULL PRIMARY KEY,
               name varchar(255) NOT NULL,
               email varchar(255) NOT NULL UNIQUE,
               password varchar(255),
               password_salt varchar(255),
               interface_language varchar(255),
               status varchar(16) NOT NULL DEFAULT 'active',
               initialized_at timestamp,
               last_login_at timestamp,
               last_login_ip varchar(255),
               created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP(0),
               updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP(0))""",
        """CREATE TABLE tenants (
               id uuid NOT NULL PRIMARY KEY,
               name varchar(255) NOT NULL,
               encrypt_public_key text,
               plan varchar(255) NOT NULL DEFAULT 'basic',
               status varchar(255) NOT NULL DEFAULT 'normal',
               created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP(0),
               updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP(0))""",
        """CREATE TABLE tenant_account_joins (
               id uuid NOT NULL PRIMARY KEY,
               tenant_id uuid NOT NULL REFERENCES tenants (id),
               account_id uuid NOT NULL REFERENCES accounts (id),
               role varchar(16) NOT NULL DEFAULT 'normal',
               current boolean NOT NULL DEFAULT false,
               created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP(0),
               UNIQUE (tenant_id, account_id))""",
        "COMMENT ON TABLE alembic_version IS 'written by the Dify contract double (not Dify)'",
    ],
    "double_0002": [
        """CREATE TABLE double_upgrade_marks (
               revision varchar(32) NOT NULL PRIMARY KEY,
               note text NOT NULL,
               applied_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP(0))""",
        "INSERT INTO double_upgrade_marks (revision, note) VALUES ('double_0002', "
        "'added by the Dify contract double playing 1.14.1: proves an upgrade migration ran')",
        "ALTER TABLE accounts ADD COLUMN double_1_14_note varchar(255)",
    ],
}


def current_revision(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            conn.rollback()
            return None
        cur.execute("SELECT version_num FROM alembic_version LIMIT 1")
        row = cur.fetchone()
    conn.rollback()
    return row[0] if row else None


def migrate(environ, version, mode):
    """`flask upgrade-db` as Dify runs it: under the Redis lock db_upgrade_lock (skipped,
    without waiting, when another container holds it). Returns the exit code."""
    def out(text):
        log(mode, text)

    out("Preparing database migration...")
    token = secrets.token_hex(16)

    def acquire(client):
        return client.set(MIGRATION_LOCK, token, nx=True, ex=MIGRATION_LOCK_TTL)

    try:
        if not redis_call(environ, acquire):
            out("Database migration skipped")
            return 0
    except WiringError as exc:
        out("Database migration failed: %s" % exc)
        return 1
    stop = threading.Event()

    def renew():
        while not stop.wait(MIGRATION_LOCK_TTL / 3):
            try:
                redis_call(environ, lambda c: c.get(MIGRATION_LOCK) == token and c.expire(MIGRATION_LOCK, MIGRATION_LOCK_TTL))
            except WiringError:
                pass

    renewer = threading.Thread(target=renew, name="db-upgrade-lock-renewal", daemon=True)
    renewer.start()
    succeeded = False
    try:
        out("Starting database migration.")
        conn = pg_connect(environ)
        try:
            before = current_revision(conn)
            plan = migration_plan(before, version)
            with conn.cursor() as cur:
                for revision in plan:
                    for statement in SCHEMA[revision]:
                        cur.execute(statement)
                    cur.execute("DELETE FROM alembic_version")
                    cur.execute("INSERT INTO alembic_version (version_num) VALUES (%s)", (revision,))
                    out("Running upgrade %s -> %s (played release %s)" % (before or "<base>", revision, version))
                    before = revision
            conn.commit()
        finally:
            conn.close()
        succeeded = True
        out("Database migration successful!")
        return 0
    except (WiringError, ValueError) as exc:
        out("Database migration failed: %s" % exc)
        return 1
    except Exception as exc:  # pylint: disable=broad-except
        out("Database migration failed: %s" % pg_reason(exc))
        return 1
    finally:
        stop.set()
        try:
            redis_call(environ, lambda c: c.get(MIGRATION_LOCK) == token and c.delete(MIGRATION_LOCK))
        except WiringError:
            pass
        out("migration lock released (%s)" % ("successful" if succeeded else "failed"))


# -- HTTP plumbing ------------------------------------------------------------------------------
class Request:
    def __init__(self, handler, body):
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.path = parts.path or "/"
        self.raw_path = handler.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = handler.headers
        self.body = body
        self.client = handler.client_address[0]
        self.cookies = {}
        for header in handler.headers.get_all("Cookie") or []:
            for part in header.split(";"):
                if "=" in part:
                    name, value = part.split("=", 1)
                    self.cookies.setdefault(name.strip(), value.strip())

    def json(self):
        if not self.body:
            return {}
        try:
            data = json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeError):
            return None
        return data if isinstance(data, dict) else None

    def echo(self, mode):
        return {"served_by": mode, "path": self.path, "method": self.method,
                "query": {k: v[0] if len(v) == 1 else v for k, v in self.query.items()},
                "headers": echo_headers(dict(self.headers.items()))}


class Response:
    def __init__(self, status=200, body=b"", content_type="application/json", headers=None, stream=None):
        self.status = status
        self.headers = list(headers or [])
        self.content_type = content_type
        self.stream = stream
        if isinstance(body, (dict, list)) or (content_type == "application/json" and not isinstance(body, (bytes, str))):
            body = json.dumps(body)
        self.body = body.encode("utf-8") if isinstance(body, str) else body


def json_response(data, status=200, headers=None):
    return Response(status, json.dumps(data), headers=headers)


def dify_error(status, code, message, headers=None):
    """Dify's error body: {"code", "message", "status"}."""
    return json_response({"code": code, "message": message, "status": status}, status, headers)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # an idle keep-alive connection (or a stalled client) frees its thread after this
    app = None  # set per server

    def version_string(self):
        return "%s/%s (%s)" % (NAME, self.app.version, self.app.mode)

    def log_message(self, format, *args):  # noqa: A002  (the base class's name)
        pass

    def _dispatch(self):
        started = time.monotonic()
        length = self.headers.get("Content-Length")
        body = b""
        if length and length.isdigit():
            body = self.rfile.read(int(length))
        elif (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            body = self._read_chunked()
        request = Request(self, body)
        try:
            response = self.app.handle(request)
        except Exception as exc:  # pylint: disable=broad-except
            log(self.app.mode, "error on %s %s: %s: %s" % (request.method, request.path, type(exc).__name__, exc))
            response = dify_error(500, "internal_server_error", "the double failed: %s" % type(exc).__name__)
        sent = self._send(request, response)
        log(self.app.mode, '%s "%s %s %s" %d %s %.1fms' % (
            request.client, request.method, request.raw_path, self.request_version, response.status, sent,
            (time.monotonic() - started) * 1000))

    def _read_chunked(self):
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def _send(self, request, response):
        self.send_response(response.status)
        for name, value in self.app.common_headers():
            self.send_header(name, value)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", response.content_type)
        if response.stream is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            total = 0
            try:
                for chunk in response.stream():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    total += len(chunk)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return "%d(chunked)" % total
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if request.method != "HEAD":
            self.wfile.write(response.body)
        return str(len(response.body))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class App:
    """One part of Dify. Subclasses route requests in `handle`."""

    def __init__(self, mode, version, environ):
        self.mode, self.version, self.env = mode, version, environ
        ttl = float(environ.get("DOUBLE_CHECK_TTL") or CHECK_TTL)
        self.state = {}
        self.checks = CheckCache(mode, self.wiring, ttl)

    def wiring(self):
        return []

    def common_headers(self):
        return [("X-Dify-Double", self.mode)]

    def not_found(self, request):
        body = {"code": "not_found", "message": "The requested URL was not found on the server (Dify contract double, %s)."
                % self.mode, "status": 404}
        body.update(request.echo(self.mode))
        return json_response(body, 404)

    def handle(self, request):
        return self.not_found(request)


# -- api ----------------------------------------------------------------------------------------
class ApiApp(App):
    def __init__(self, mode, version, environ):
        super().__init__(mode, version, environ)
        self.secret_key = resolve_secret_key(environ, version, mode)
        self.cookies, self.secure = cookie_names(environ)

    def wiring(self):
        return api_checks(self.env, self.version, self.mode, self.state)

    def common_headers(self):
        return [("X-Version", self.version), ("X-Env", self.env.get("DEPLOY_ENV") or "PRODUCTION"),
                ("X-Dify-Double", self.mode)]

    def handle(self, request):
        path = request.path.rstrip("/") or "/"
        method = request.method
        routes = {
            ("GET", "/health"): self.health,
            ("GET", "/threads"): self.threads,
            ("GET", "/db-pool-stat"): self.pool_stat,
            ("GET", "/console/api/setup"): self.get_setup,
            ("POST", "/console/api/setup"): self.post_setup,
            ("GET", "/console/api/init"): self.get_init,
            ("POST", "/console/api/init"): self.post_init,
            ("POST", "/console/api/login"): self.login,
            ("GET", "/console/api/account/profile"): self.profile,
            ("POST", "/v1/chat-messages"): self.chat_messages,
            ("GET", INNER_PING): self.inner_ping,
        }
        route = routes.get((method if method != "HEAD" else "GET", path))
        if route:
            return route(request)
        if path.endswith("/stream"):
            return self.stream(request)
        return self.not_found(request)

    # health and metrics
    def health(self, request):
        errors = self.checks.get()
        body = {"pid": os.getpid(), "status": "ok" if not errors else "error", "version": self.version,
                "double": True}
        if errors:
            body["errors"] = errors
        return json_response(body, 200 if not errors else 503)

    def threads(self, request):
        threads = [{"name": t.name, "id": t.ident, "is_alive": t.is_alive()} for t in threading.enumerate()]
        return json_response({"pid": os.getpid(), "thread_num": len(threads), "threads": threads})

    def pool_stat(self, request):
        env = self.env
        return json_response({
            "pid": os.getpid(), "pool_size": int(env.get("SQLALCHEMY_POOL_SIZE") or 30),
            "checked_in_connections": 0, "checked_out_connections": 0,
            "overflow_connections": -int(env.get("SQLALCHEMY_POOL_SIZE") or 30),
            "max_overflow": int(env.get("SQLALCHEMY_MAX_OVERFLOW") or 10),
            "connection_timeout": float(env.get("SQLALCHEMY_POOL_TIMEOUT") or 30),
            "recycle_time": int(env.get("SQLALCHEMY_POOL_RECYCLE") or 3600),
            "pre_ping": truthy(env.get("SQLALCHEMY_POOL_PRE_PING")),
            "double": "the double opens one connection per request; the numbers echo SQLALCHEMY_POOL_*"})

    # setup and init (contract: GET/POST /console/api/setup and /console/api/init)
    def _session(self, request):
        return load_session(request.cookies.get("session"), self.secret_key)

    def _session_cookie(self, data):
        # Flask's defaults, which Dify keeps (it sets only app.secret_key): HttpOnly, not Secure,
        # so the init -> setup session also works over plain http to the published port.
        flags = "; HttpOnly; Path=/"
        return ("Set-Cookie", "session=%s%s" % (sign_session(data, self.secret_key), flags))

    def _db(self):
        try:
            return pg_connect(self.env)
        except WiringError as exc:
            raise ApiError(500, "internal_server_error", "database unreachable: %s (%s)" % (
                exc.errors[0]["message"], exc.errors[0]["variable"])) from None

    def _edition_ok(self):
        return (self.env.get("EDITION") or "SELF_HOSTED") == "SELF_HOSTED"

    def _setup_row(self, conn):
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT setup_at FROM dify_setups LIMIT 1")
                row = cur.fetchone()
                cur.execute("SELECT count(*) FROM tenants")
                tenants = cur.fetchone()[0]
        except Exception as exc:  # pylint: disable=broad-except
            conn.rollback()
            raise ApiError(500, "internal_server_error", "database schema missing (%s): run the migration "
                                                         "(MIGRATION_ENABLED)" % pg_reason(exc)) from None
        return (row[0] if row else None), tenants

    def _init_validated(self, request, setup_at):
        if not self._edition_ok() or not self.env.get("INIT_PASSWORD"):
            return True
        if self._session(request).get("is_init_validated"):
            return True
        return setup_at is not None

    def get_setup(self, request):
        if not self._edition_ok():
            return json_response({"step": "finished"})
        with ApiError.guard() as guard:
            conn = self._db()
            try:
                setup_at, dummy = self._setup_row(conn)
            finally:
                conn.close()
        if guard.response:
            return guard.response
        if setup_at:
            return json_response({"step": "finished", "setup_at": setup_at.isoformat()})
        return json_response({"step": "not_started"})

    def get_init(self, request):
        setup_at = None
        if self._edition_ok() and self.env.get("INIT_PASSWORD") and not self._session(request).get("is_init_validated"):
            with ApiError.guard() as guard:
                conn = self._db()
                try:
                    setup_at, dummy = self._setup_row(conn)
                finally:
                    conn.close()
            if guard.response:
                return guard.response
        return json_response({"status": "finished" if self._init_validated(request, setup_at) else "not_started"})

    def post_init(self, request):
        if not self._edition_ok():
            return dify_error(404, "not_found", "The requested URL was not found on the server.")
        with ApiError.guard() as guard:
            conn = self._db()
            try:
                dummy, tenants = self._setup_row(conn)
            finally:
                conn.close()
        if guard.response:
            return guard.response
        if tenants > 0:
            return dify_error(403, "already_setup", "Dify has been successfully installed. Please refresh the page or "
                                                    "return to the dashboard homepage.")
        payload = request.json()
        password = (payload or {}).get("password")
        if not isinstance(password, str) or len(password) > 30:
            return dify_error(400, "invalid_param", "password: a string of at most 30 characters is required")
        session = self._session(request)
        if password != self.env.get("INIT_PASSWORD"):
            session["is_init_validated"] = False
            return dify_error(401, "init_validate_failed", "Init validation failed. Please check the password and try "
                                                           "again.", headers=[self._session_cookie(session)])
        session["is_init_validated"] = True
        return json_response({"result": "success"}, 201, headers=[self._session_cookie(session)])

    def post_setup(self, request):
        if not self._edition_ok():
            return dify_error(404, "not_found", "The requested URL was not found on the server.")
        with ApiError.guard() as guard:
            conn = self._db()
            try:
                return self._setup(conn, request)
            finally:
                conn.close()
        return guard.response

    def _setup(self, conn, request):
        already = dify_error(403, "already_setup", "Dify has been successfully installed. Please refresh the page or "
                                                   "return to the dashboard homepage.")
        setup_at, tenants = self._setup_row(conn)
        if setup_at is not None or tenants > 0:
            return already
        if not self._init_validated(request, setup_at):
            return dify_error(401, "not_init_validated", "Init validation has not been completed yet. Please proceed "
                                                         "with the init validation process first.")
        payload = request.json()
        if payload is None:
            return dify_error(400, "invalid_param", "the body must be a JSON object")
        email = payload.get("email")
        name = payload.get("name")
        password = payload.get("password")
        if not valid_email(email):
            return dify_error(400, "invalid_param", "email: %s is not a valid email" % json.dumps(email))
        if not isinstance(name, str) or not name or len(name) > 30:
            return dify_error(400, "invalid_param", "name: a string of 1 to 30 characters is required")
        if not valid_password(password):
            return dify_error(400, "invalid_param", "password: Password must contain letters and numbers, and the length "
                                                    "must be greater than 8.")
        language = payload.get("language") or "en-US"
        account_id, tenant_id = str(uuid.uuid4()), str(uuid.uuid4())
        salt = secrets.token_bytes(16)
        try:
            with conn.cursor() as cur:
                # One setup at a time; then check again inside the transaction.
                cur.execute("SELECT pg_advisory_xact_lock(hashtext('dify-double-setup'))")
                cur.execute("SELECT (SELECT count(*) FROM dify_setups) + (SELECT count(*) FROM tenants)")
                if cur.fetchone()[0]:
                    conn.rollback()
                    return already
                cur.execute("INSERT INTO accounts (id, name, email, password, password_salt, interface_language, "
                            "status, initialized_at) VALUES (%s, %s, %s, %s, %s, %s, 'active', now())",
                            (account_id, name, email.lower(), hash_password(password, salt),
                             base64.b64encode(salt).decode(), language))
                cur.execute("INSERT INTO tenants (id, name, encrypt_public_key) VALUES (%s, %s, %s)",
                            (tenant_id, "%s's Workspace" % name, "double placeholder: no real key pair"))
                cur.execute("INSERT INTO tenant_account_joins (id, tenant_id, account_id, role, current) "
                            "VALUES (%s, %s, %s, 'owner', true)", (str(uuid.uuid4()), tenant_id, account_id))
                cur.execute("INSERT INTO dify_setups (version) VALUES (%s)", (self.version,))
                self._store_tenant_key(tenant_id)
            conn.commit()
        except ApiError:
            conn.rollback()
            raise
        except Exception as exc:  # pylint: disable=broad-except
            conn.rollback()
            raise ApiError(500, "internal_server_error", "setup failed and was rolled back: %s" % pg_reason(exc)) from None
        log(self.mode, "setup finished: account %s, tenant %s" % (account_id, tenant_id))
        return json_response({"result": "success"}, 201)

    def _store_tenant_key(self, tenant_id):
        """Dify keeps each tenant's private key at privkeys/<tenant_id>/private.pem in the
        storage; the double writes a labelled placeholder (random bytes, not a key)."""
        pem = ("-----BEGIN DIFY CONTRACT DOUBLE PLACEHOLDER-----\n"
               "# Written by the Dify contract double (not Dify): random bytes, not an RSA key.\n%s\n"
               "-----END DIFY CONTRACT DOUBLE PLACEHOLDER-----\n" % base64.b64encode(secrets.token_bytes(256)).decode())
        s3 = S3Settings(self.env, API_S3_NAMES)
        key = "privkeys/%s/private.pem" % tenant_id
        try:
            status, dummy, body = s3.request("PUT", key=key, body=pem.encode(),
                                             headers={"content-type": "application/x-pem-file"})
        except (OSError, ValueError) as exc:
            raise ApiError(500, "internal_server_error", "storing %s failed (S3_ENDPOINT): %s" % (key, exc)) from None
        if status != 200:
            code, dummy = _probes().s3_error(body)
            raise ApiError(500, "internal_server_error", "storing %s in bucket %s failed: %s %s (S3_ACCESS_KEY, "
                                                         "S3_BUCKET_NAME)" % (key, s3.bucket, status, code or ""))

    # login (simplified: see the README)
    def login(self, request):
        payload = request.json() or {}
        with ApiError.guard() as guard:
            conn = self._db()
            try:
                setup_at, dummy = self._setup_row(conn)
                if setup_at is None:
                    return dify_error(401, "not_setup", "Dify has not been initialized and installed yet. Please proceed "
                                                        "with the initialization and installation process first.")
                failed = dify_error(401, "authentication_failed", "Invalid email or password.")
                try:
                    password = base64.b64decode(str(payload.get("password") or ""), validate=True).decode("utf-8")
                except (ValueError, UnicodeError):
                    return failed
                with conn.cursor() as cur:
                    cur.execute("SELECT id, password, password_salt FROM accounts WHERE email = %s AND status = 'active'",
                                (str(payload.get("email") or "").lower(),))
                    row = cur.fetchone()
                    if not row or not hmac.compare_digest(row[1] or "", hash_password(password, base64.b64decode(row[2]))):
                        return failed
                    cur.execute("UPDATE accounts SET last_login_at = now(), last_login_ip = %s WHERE id = %s",
                                (request.headers.get("X-Forwarded-For", request.client).split(",")[0].strip(), row[0]))
                conn.commit()
                account_id = str(row[0])
            finally:
                conn.close()
        if guard.response:
            return guard.response
        minutes = int(self.env.get("ACCESS_TOKEN_EXPIRE_MINUTES") or 60)
        days = int(self.env.get("REFRESH_TOKEN_EXPIRE_DAYS") or 30)
        now = int(time.time())
        access = jwt_encode({"user_id": account_id, "exp": now + minutes * 60, "iss": "SELF_HOSTED",
                             "sub": "Console API Passport", "double": True}, self.secret_key)
        csrf = jwt_encode({"sub": account_id, "exp": now + minutes * 60}, self.secret_key)
        refresh = secrets.token_hex(64)
        try:
            redis_call(self.env, lambda c: c.setex("refresh_token:%s" % refresh, days * 86400, account_id))
        except WiringError as exc:
            return dify_error(500, "internal_server_error", "storing the refresh token failed: %s (%s)" % (
                exc.errors[0]["message"], exc.errors[0]["variable"]))
        domain = (self.env.get("COOKIE_DOMAIN") or "").strip().lstrip(".")
        common = "; Path=/; SameSite=Lax" + ("; Secure" if self.secure else "") + ("; Domain=%s" % domain if domain else "")
        headers = [
            ("Set-Cookie", "%s=%s; HttpOnly; Max-Age=%d%s" % (self.cookies["access_token"], access, minutes * 60, common)),
            ("Set-Cookie", "%s=%s; HttpOnly; Max-Age=%d%s" % (self.cookies["refresh_token"], refresh, days * 86400, common)),
            ("Set-Cookie", "%s=%s; Max-Age=%d%s" % (self.cookies["csrf_token"], csrf, minutes * 60, common)),
        ]
        log(self.mode, "login of account %s" % account_id)
        return json_response({"result": "success"}, 200, headers)

    def profile(self, request):
        unauthorized = dify_error(401, "unauthorized", "Invalid Authorization token.")
        token = request.cookies.get(self.cookies["access_token"])
        auth = request.headers.get("Authorization") or ""
        if not token and auth.lower().startswith("bearer "):
            token = auth.split(None, 1)[1]
        claims = jwt_decode(token, self.secret_key)
        if not claims or not claims.get("user_id"):
            return unauthorized
        csrf_cookie = request.cookies.get(self.cookies["csrf_token"])
        csrf_header = request.headers.get("X-CSRF-Token")
        csrf = jwt_decode(csrf_header, self.secret_key)
        if not csrf_header or csrf_header != csrf_cookie or not csrf or csrf.get("sub") != claims["user_id"]:
            return dify_error(401, "unauthorized", "CSRF token is missing or invalid.")
        with ApiError.guard() as guard:
            conn = self._db()
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT id, name, email, interface_language, last_login_at FROM accounts WHERE id = %s",
                                (claims["user_id"],))
                    row = cur.fetchone()
            finally:
                conn.close()
        if guard.response:
            return guard.response
        if not row:
            return unauthorized
        return json_response({"id": str(row[0]), "name": row[1], "email": row[2], "interface_language": row[3],
                              "last_login_at": row[4].isoformat() if row[4] else None, "double": True})

    # inner API for the plugin daemon (Dify answers 404 to a wrong key, and so does the double)
    def inner_ping(self, request):
        key = request.headers.get("X-Inner-Api-Key")
        if not self.env.get("PLUGIN_DAEMON_KEY") or not key or key != self.env.get("INNER_API_KEY_FOR_PLUGIN"):
            if key:
                log(self.mode, "inner API call refused: X-Inner-Api-Key does not match INNER_API_KEY_FOR_PLUGIN")
            return self.not_found(request)
        return json_response({"result": "pong", "double": True})

    # streaming
    def chat_messages(self, request):
        payload = request.json() or {}
        if payload.get("response_mode") == "streaming":
            return self.stream(request)
        return json_response({"event": "message", "answer": "The Dify contract double has no model: no answer.",
                              "double": True})

    def stream(self, request):
        events, interval = sse_params(request.query)

        def produce():
            for number in range(1, events + 1):
                if number > 1 and interval:
                    time.sleep(interval)
                data = {"n": number, "sent_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
                yield ("data: %s\n\n" % json.dumps(data)).encode("utf-8")
        return Response(200, content_type="text/event-stream; charset=utf-8", stream=produce)


class ApiError(Exception):
    """An answer to send instead of the normal one (raised from deep in a handler)."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.response = dify_error(status, code, message)

    class guard:  # noqa: N801  (used as `with ApiError.guard() as guard`)
        def __enter__(self):
            self.response = None
            return self

        def __exit__(self, kind, exc, tb):
            if isinstance(exc, ApiError):
                self.response = exc.response
                return True
            return False


def resolve_secret_key(environ, version, mode):
    """SECRET_KEY; from 1.14 an empty one is generated once and kept in the storage
    directory (the double's own file name), as Dify does."""
    key = environ.get("SECRET_KEY") or ""
    if key or version.startswith("1.13."):
        return key or "dify-contract-double-has-no-secret-key"
    path = os.path.join(environ.get("OPENDAL_FS_ROOT") or "/app/api/storage", ".dify-double-secret-key")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        pass
    key = secrets.token_urlsafe(42)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
            handle.write(key)
        log(mode, "SECRET_KEY is empty: generated one and kept it in %s" % path)
    except OSError:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    return key


# -- web, sandbox, plugin daemon ----------------------------------------------------------------
WEB_SHOWN = ("CONSOLE_API_URL", "APP_API_URL", "NEXT_PUBLIC_COOKIE_DOMAIN", "NEXT_PUBLIC_SOCKET_URL", "MARKETPLACE_API_URL")


class WebApp(App):
    def handle(self, request):
        if request.method not in ("GET", "HEAD"):
            return self.not_found(request)
        prefixes = web_prefixes(self.env)
        info = {"double": True, "plays": self.version, "mode": self.mode, "derived": prefixes,
                "env": {name: self.env.get(name, "") for name in WEB_SHOWN},
                "request": request.echo(self.mode)}
        esc = html.escape
        api_prefix, public_prefix = prefixes["NEXT_PUBLIC_API_PREFIX"], prefixes["NEXT_PUBLIC_PUBLIC_API_PREFIX"]
        page = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Dify contract double (web)</title>
<meta name="dify-double" content="web">
<meta name="next-public-api-prefix" content="{api}">
<meta name="next-public-public-api-prefix" content="{public}">
</head>
<body data-api-prefix="{api}" data-public-api-prefix="{public}">
<h1>Dify contract double (web)</h1>
<p>This page is served by a test double that plays Dify {version}'s web image for the
selfhost.dify tests. It is not Dify.</p>
<dl>
<dt>NEXT_PUBLIC_API_PREFIX</dt><dd id="api-prefix">{api}</dd>
<dt>NEXT_PUBLIC_PUBLIC_API_PREFIX</dt><dd id="public-api-prefix">{public}</dd>
<dt>path</dt><dd id="path">{path}</dd>
</dl>
<ul>
<li><a id="setup-link" href="{api}/setup">console setup API</a></li>
<li><a id="init-link" href="{api}/init">console init API</a></li>
<li><a id="public-api-link" href="{public}/site">public app API</a></li>
<li><a href="/install">install</a> <a href="/signin">sign in</a> <a href="/explore/apps">explore</a></li>
</ul>
<script type="application/json" id="dify-double">{info}</script>
</body>
</html>
""".format(api=esc(api_prefix), public=esc(public_prefix), version=esc(self.version), path=esc(request.path),
           info=json.dumps(info).replace("</", "<\\/"))
        return Response(200, page, content_type="text/html; charset=utf-8")


class SandboxApp(App):
    def handle(self, request):
        path = request.path.rstrip("/") or "/"
        if path == "/health" and request.method in ("GET", "HEAD"):
            return json_response("ok")
        if path.startswith("/v1/sandbox/"):
            key = self.env.get("API_KEY") or "dify-sandbox"
            if request.headers.get("X-Api-Key") != key:
                return json_response({"code": -401, "message": "Unauthorized", "data": None}, 401)
            if path == "/v1/sandbox/run" and request.method == "POST":
                return json_response({"code": 0, "message": "success", "double": True, "data": {
                    "error": "the Dify contract double's sandbox does not execute code", "stdout": ""}})
            if path == "/v1/sandbox/dependencies" and request.method == "GET":
                return json_response({"code": 0, "message": "success", "double": True, "data": {"dependencies": []}})
        return self.not_found(request)


class DaemonApp(App):
    def wiring(self):
        return daemon_checks(self.env, self.state)

    def handle(self, request):
        path = request.path
        if path.rstrip("/") == "/health/check" and request.method in ("GET", "HEAD"):
            errors = self.checks.get()
            body = {"status": "ok" if not errors else "error", "version": release(self.version)["plugin_daemon"],
                    "double": True, "plays_dify": self.version, "build_time": "n/a (double)", "platform": "double",
                    "pool_status": {}, "active_requests": 0, "active_dispatch_requests": 0}
            if errors:
                body["errors"] = errors
            return json_response(body, 200 if not errors else 503)
        if path.startswith("/e/"):
            echo = request.echo(self.mode)
            echo.update({"double": True, "hook_id": path[3:].split("/", 1)[0],
                         "dify_hook_url": request.headers.get("Dify-Hook-Url")})
            return json_response(echo)
        if path.startswith("/plugin/"):
            key = request.headers.get("X-Api-Key")
            if not key or key != self.env.get("SERVER_KEY"):
                return json_response({"code": -401, "message": "unauthorized", "data": None}, 401)
            if path.endswith("/management/list"):
                return json_response({"code": 0, "message": "success", "double": True, "data": {"list": [], "total": 0}})
        return self.not_found(request)


APPS = {"api": ApiApp, "web": WebApp, "sandbox": SandboxApp, "plugin_daemon": DaemonApp}


# -- process entry points -----------------------------------------------------------------------
def serve(app, port, stop):
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((app.env.get("DOUBLE_BIND") or "0.0.0.0", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http-%d" % port, daemon=True)
    thread.start()
    log(app.mode, "listening on port %d (HTTP/1.1), playing Dify %s" % (port, app.version))
    if app.mode in ("api", "plugin_daemon"):  # the first verdict in the log without waiting for a probe
        threading.Thread(target=app.checks.get, name="first-check", daemon=True).start()
    stop.wait()
    server.shutdown()


class _LineHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(b"dify-contract-double: remote plugin debugging is not implemented\r\n")


def serve_debugging_port(environ, stop, mode):
    """The daemon's remote debugging port (5003) answers one line and closes."""
    port = int(environ.get("PLUGIN_REMOTE_INSTALLING_PORT") or 5003)
    try:
        server = socketserver.ThreadingTCPServer(("0.0.0.0", port), _LineHandler)
    except OSError as exc:
        log(mode, "remote debugging port %d not opened: %s" % (port, exc))
        return
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="debug-%d" % port, daemon=True).start()
    log(mode, "remote debugging port %d answers that it is not implemented" % port)


def heartbeat_loop(environ, version, mode, stop):
    """worker / beat: check the wiring at start (exit 1 naming the variable), then write a
    heartbeat into the broker's Redis every DOUBLE_HEARTBEAT_INTERVAL seconds."""
    errors = api_checks(environ, version, mode, {})
    if mode == "beat":
        errors = [e for e in errors if not e["variable"].startswith(("S3_", "PGVECTOR_", "VECTOR_STORE", "STORAGE_TYPE"))]
    if errors:
        for item in errors:
            log(mode, "wiring check failed: %s: %s" % (item["variable"], item["message"]))
        log(mode, "exiting: fix the variables above")
        return 1
    interval = float(environ.get("DOUBLE_HEARTBEAT_INTERVAL") or 5)
    host = socket.gethostname()
    key = HEARTBEAT_KEY % mode
    log(mode, "wiring checks passed; %s (connected to the broker and the database), heartbeat in %s every %gs" % (
        "consuming nothing: a double does not run tasks" if mode == "worker" else "scheduling nothing: a double", key,
        interval))
    failing = False
    while not stop.is_set():
        try:
            value = json.dumps({"ts": time.time(), "version": version, "double": True})
            redis_call(environ, lambda c: (c.hset(key, host, value), c.expire(key, max(60, int(interval * 6)))),
                       url_variable="CELERY_BROKER_URL")
            pg_connect(environ).close()
            if failing:
                log(mode, "heartbeat restored")
            failing = False
        except WiringError as exc:
            if not failing:
                log(mode, "heartbeat failed: %s" % exc)
            failing = True
        stop.wait(interval)
    return 0


def healthcheck(mode, environ):
    """Exit code for a compose healthcheck of the local part."""
    if mode in SERVER_MODES:
        port = int(environ.get(PORT_VARIABLES[mode]) or DEFAULT_PORTS[mode])
        path = {"api": "/health", "web": "/", "sandbox": "/health", "plugin_daemon": "/health/check"}[mode]
        try:
            status, dummy, body = http_get("http://127.0.0.1:%d%s" % (port, path), timeout=10)
        except OSError as exc:
            print("unhealthy: %s" % exc)
            return 1
        print("%s %s: %s" % (path, status, body[:300].decode("utf-8", "replace")))
        return 0 if status == 200 else 1
    if mode in ("worker", "beat"):
        interval = float(environ.get("DOUBLE_HEARTBEAT_INTERVAL") or 5)
        try:
            raw = redis_call(environ, lambda c: c.hget(HEARTBEAT_KEY % mode, socket.gethostname()),
                             url_variable="CELERY_BROKER_URL")
        except WiringError as exc:
            print("unhealthy: %s" % exc)
            return 1
        age = time.time() - json.loads(raw)["ts"] if raw else None
        if age is None or age > max(30, interval * 3):
            print("unhealthy: no recent heartbeat in %s" % (HEARTBEAT_KEY % mode))
            return 1
        print("heartbeat %.1fs old" % age)
        return 0
    print("nothing to check in mode %s" % mode)
    return 0


def recorded_mode(path=None):
    try:
        with open(path or os.environ.get("DOUBLE_MODE_FILE") or MODE_FILE, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def main(argv=None, environ=None):
    environ = dict(os.environ if environ is None else environ)
    try:
        command, mode, dummy = parse_mode(sys.argv[1:] if argv is None else argv, environ, recorded_mode())
    except ValueError as exc:
        print("%s: %s" % (NAME, exc), file=sys.stderr)
        return 2
    version = plays_version(environ)
    if command == "version":
        print(version)
        return 0
    if command == "healthcheck":
        return healthcheck(mode, environ)
    log(mode, "starting: a test double playing Dify %s's %s (not Dify)" % (version, mode))
    try:
        with open(environ.get("DOUBLE_MODE_FILE") or MODE_FILE, "w", encoding="utf-8") as handle:
            handle.write(mode)
    except OSError:
        pass
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *a: stop.set())
    if mode == "migration" or (mode in API_MODES and truthy(environ.get("MIGRATION_ENABLED"))):
        code = migrate(environ, version, mode)
        if code or mode == "migration":
            return code
    if mode in ("worker", "beat"):
        return heartbeat_loop(environ, version, mode, stop)
    app = APPS[mode](mode, version, environ)
    if mode == "plugin_daemon":
        serve_debugging_port(environ, stop, mode)
    port = int(environ.get(PORT_VARIABLES[mode]) or DEFAULT_PORTS[mode])
    serve(app, port, stop)
    log(mode, "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
