# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST DOUBLE, NOT DIFY: the contract double's plugin daemon (mode ``plugin_daemon``, ports
5002 and 5003).

It plays Dify's plugin daemon (``langgenius/dify-plugin-daemon``, a Go program whose modules
are not vendored: it cannot be built here) as upstream's docker/docker-compose.yaml wires it
and as Dify's api calls it (api/core/plugin/impl/base.py): ``/health/check``, the keyed
``/plugin/<tenant>/...`` routes (X-Api-Key, SERVER_KEY), the ``/e/<hook>`` endpoints, and
the remote debugging port. Its health follows real checks, as the daemon's start does: its
database (created when missing), Redis, its storage (local, or S3 with the bucket created
when missing) and Dify's api at DIFY_INNER_API_URL. A failed check names the variable to fix
and never shows a secret value. It installs no plugin.

Needs psycopg2, redis and botocore (Debian: python3-psycopg2, python3-redis, python3-botocore;
botocore signs the S3 requests).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import re
import socket
import socketserver
import threading
import time
from urllib.parse import urlsplit

from .server import NAME, NOTE, App, error, http_get, json_response, log, release, truthy


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
    user, password and database to the variable names (DB_NAMES)."""
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


def redis_error_variable(message):
    """Which REDIS_* variable to fix for a Redis error."""
    lower = str(message or "").lower()
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


# -- S3 (botocore signs the requests) ----------------------------------------------------------
def s3_error(body):
    """(code, message) of an S3 XML error body; (None, None) when there is none."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    code = re.search(r"<Code>\s*([^<]*?)\s*</Code>", text)
    message = re.search(r"<Message>\s*([^<]*?)\s*</Message>", text)
    return (code.group(1) if code else None), (message.group(1) if message else None)


def s3_request(method, endpoint, bucket, key="", body=b"", access_key="", secret_key="", region="us-east-1",
               path_style=True, timeout=10.0, validate_certs=True, headers=None, query=None):
    """One S3 request, signed by botocore with AWS Signature Version 4 (the payload hash is
    the body's SHA-256), path style or virtual-hosted style. Returns (status, lower-cased
    headers, body); an HTTP error status is returned, a connection failure raises OSError."""
    import ssl  # pylint: disable=import-outside-toplevel
    from urllib.parse import quote, urlencode  # pylint: disable=import-outside-toplevel
    from botocore.auth import S3SigV4Auth  # pylint: disable=import-outside-toplevel
    from botocore.awsrequest import AWSRequest  # pylint: disable=import-outside-toplevel
    from botocore.credentials import Credentials  # pylint: disable=import-outside-toplevel

    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL: %s" % endpoint)
    netloc = parts.netloc if path_style else "%s.%s" % (bucket, parts.netloc)
    path = quote(parts.path.rstrip("/")) + ("/" + quote(bucket) if path_style else "")
    if key:
        path += "/" + quote(key.lstrip("/"), safe="/~")
    url = "%s://%s%s%s" % (parts.scheme, netloc, path or "/", "?" + urlencode(query or {}) if query else "")
    body = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    request = AWSRequest(method=method.upper(), url=url, data=body, headers=dict(headers or {}))
    request.context["payload_signing_enabled"] = True
    if access_key:
        S3SigV4Auth(Credentials(access_key, secret_key), "s3", region).add_auth(request)
    prepared = request.prepare()
    target = urlsplit(prepared.url)
    if target.scheme == "https":
        context = ssl.create_default_context()
        if not validate_certs:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection(target.hostname, target.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
    try:
        conn.request(prepared.method, (target.path or "/") + ("?" + target.query if target.query else ""),
                     body=prepared.body or None, headers=dict(prepared.headers.items()))
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
    except http.client.HTTPException as exc:
        raise ConnectionError("malformed HTTP answer: %s" % (exc.__class__.__name__ if not str(exc) else exc))
    finally:
        conn.close()


# The plugin daemon's own names (Dify's compose file maps them from PLUGIN_* of .env).
DAEMON_S3_NAMES = {"endpoint": "S3_ENDPOINT", "bucket": "PLUGIN_STORAGE_OSS_BUCKET", "access_key": "AWS_ACCESS_KEY",
                   "secret_key": "AWS_SECRET_KEY", "region": "AWS_REGION", "path_style": "S3_USE_PATH_STYLE"}


class S3Settings:
    """The daemon's S3 configuration and the variable names it came from."""

    def __init__(self, environ, names=None):
        names = names or DAEMON_S3_NAMES
        self.names = names
        self.endpoint = (environ.get(names["endpoint"]) or "").strip()
        self.bucket = (environ.get(names["bucket"]) or "").strip()
        self.access_key = environ.get(names["access_key"]) or ""
        self.secret_key = environ.get(names["secret_key"]) or ""
        self.region = (environ.get(names["region"]) or "").strip() or "us-east-1"
        self.path_style = truthy(environ.get(names["path_style"]))
        self.style_variable = names["path_style"]
        self.validate = not truthy(environ.get("S3_INSECURE_SKIP_VERIFY"))

    def request(self, method, key="", body=b"", query=None, headers=None):
        return s3_request(method, self.endpoint, self.bucket, key=key, body=body, access_key=self.access_key,
                          secret_key=self.secret_key, region=self.region, path_style=self.path_style, timeout=10.0,
                          validate_certs=self.validate, headers=headers, query=query)


def _describe_oserror(exc):
    """A connection failure in words ("connection refused", "timed out", the TLS reason)."""
    import ssl  # pylint: disable=import-outside-toplevel
    if isinstance(exc, ssl.SSLError):
        return "TLS error: %s" % (getattr(exc, "reason", None) or exc)
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


def check_s3(environ, names, mode, state):
    """HEAD the bucket; create it on 404 (as the plugin daemon's S3 storage does at start);
    on 403 carry on as the daemon does but report which key the server refused."""
    s3 = S3Settings(environ, names)
    for item in ("endpoint", "bucket", "access_key", "secret_key"):
        if not getattr(s3, item):
            return [error(names[item], "%s is empty" % names[item])]
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
            code, message = s3_error(body)
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
            log(mode, "S3 bucket %s did not exist: created it (as the plugin daemon's S3 storage does at start)"
                % s3.bucket)
            return []
        code, message = s3_error(answer)
        return [error(names["bucket"], "bucket %s does not exist and creating it failed: %s %s" % (
            s3.bucket, created, code or ""))]
    if status == 403 or code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
        variable = {"InvalidAccessKeyId": names["access_key"], "SignatureDoesNotMatch": names["secret_key"]}.get(
            code, names["access_key"])
        state["s3_forbidden"] = True
        return [error(variable, "S3 refused HEAD bucket %s (%s); the plugin daemon carries on after a 403, but "
                                "storage will fail" % (s3.bucket, what))]
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


class WiringError(Exception):
    """A check failed: `errors` lists {variable, message}."""

    def __init__(self, errors):
        super().__init__("; ".join("%s: %s" % (e["variable"], e["message"]) for e in errors))
        self.errors = errors


def pg_connect(environ, database=None):
    """A psycopg2 connection from the daemon's DB_* variables (DB_SSL_MODE when set);
    WiringError naming the variable to fix when it fails."""
    import psycopg2  # pylint: disable=import-outside-toplevel
    names = DB_NAMES
    kwargs = {}
    if environ.get("DB_SSL_MODE"):
        kwargs["sslmode"] = environ["DB_SSL_MODE"]
    port = environ.get(names["port"]) or "5432"
    if not port.isdigit():
        raise WiringError([error(names["port"], "%s is not a port number" % names["port"])])
    try:
        return psycopg2.connect(host=environ.get(names["host"]) or "localhost", port=int(port),
                                user=environ.get(names["user"]) or "postgres",
                                password=environ.get(names["password"]) or "",
                                dbname=database or environ.get(names["database"]) or "dify_plugin",
                                connect_timeout=5, application_name=NAME, **kwargs)
    except psycopg2.Error as exc:
        text = str(exc)
        raise WiringError([error(pg_error_variable(text, names), pg_reason(text))]) from None


def redis_client(environ):
    """A redis-py client from REDIS_*."""
    import redis  # pylint: disable=import-outside-toplevel
    options = {"host": environ.get("REDIS_HOST") or "localhost", "port": int(environ.get("REDIS_PORT") or 6379),
               "db": int(environ.get("REDIS_DB") or 0), "username": environ.get("REDIS_USERNAME") or None,
               "password": environ.get("REDIS_PASSWORD") or None,
               "socket_timeout": 5, "socket_connect_timeout": 5, "decode_responses": True}
    if truthy(environ.get("REDIS_USE_SSL")):
        options["ssl"] = True
        options["ssl_cert_reqs"] = environ.get("REDIS_SSL_CERT_REQS") or "required"
        if environ.get("REDIS_SSL_CA_CERTS"):
            options["ssl_ca_certs"] = environ["REDIS_SSL_CA_CERTS"]
    return redis.Redis(**options)


def redis_call(environ, action):
    """Run action(client); WiringError naming the variable to fix on a Redis error."""
    import redis  # pylint: disable=import-outside-toplevel
    client = redis_client(environ)
    try:
        return action(client)
    except redis.RedisError as exc:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, redis.AuthenticationError) and "invalid username-password" in text.lower():
            text = "invalid username-password pair (user %s)" % (
                "'%s'" % (client.connection_pool.connection_kwargs.get("username") or "default"))
        where = "%s:%s" % (environ.get("REDIS_HOST") or "localhost", environ.get("REDIS_PORT") or 6379)
        raise WiringError([error(redis_error_variable(text), "Redis at %s: %s" % (where, text))]) from None
    finally:
        client.close()


# -- the plugin daemon's wiring checks ----------------------------------------------------------
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


def check_redis(environ, mode):
    def ping_and_write(client):
        client.ping()
        client.set("dify-double:wiring:%s" % mode, str(time.time()), ex=30)
    redis_call(environ, ping_and_write)
    return []


def check_daemon_database(environ):
    """Log in to the daemon's database; create it when missing, as the daemon does (through
    DB_DEFAULT_DATABASE, default postgres)."""
    try:
        pg_connect(environ).close()
        return []
    except WiringError as exc:
        if exc.errors[0]["variable"] != "DB_DATABASE":
            raise
    import psycopg2  # pylint: disable=import-outside-toplevel
    from psycopg2 import sql  # pylint: disable=import-outside-toplevel
    name = environ.get("DB_DATABASE") or "dify_plugin"
    conn = pg_connect(environ, database=environ.get("DB_DEFAULT_DATABASE") or "postgres")
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
    """DIFY_INNER_API_URL reaches Dify's api: its /health answers with the X-Version header
    Dify's api puts on every answer. The key itself cannot be tried: Dify's api checks
    X-Inner-Api-Key only after it has found the request's tenant and stored an end user."""
    problems = []
    if not environ.get("DIFY_INNER_API_KEY"):
        problems.append(error("DIFY_INNER_API_KEY", "DIFY_INNER_API_KEY is empty (PLUGIN_DIFY_INNER_API_KEY)"))
    url = (environ.get("DIFY_INNER_API_URL") or "").rstrip("/")
    if not url:
        return problems + [error("DIFY_INNER_API_URL", "DIFY_INNER_API_URL is empty")]
    try:
        status, headers, dummy = http_get(url + "/health")
    except ValueError as exc:
        return problems + [error("DIFY_INNER_API_URL", str(exc))]
    except OSError as exc:
        return problems + [error("DIFY_INNER_API_URL", "no answer from %s/health: %s" % (url, _describe_oserror(exc)))]
    if status != 200 or not headers.get("x-version"):
        problems.append(error("DIFY_INNER_API_URL", "%s does not look like Dify's api (GET /health answered %s%s)" % (
            url, status, "" if headers.get("x-version") else " without an X-Version header")))
    return problems


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


class DaemonApp(App):
    def wiring(self):
        return daemon_checks(self.env, self.state)

    def handle(self, request):
        path = request.path
        if path.rstrip("/") == "/health/check" and request.method in ("GET", "HEAD"):
            errors = self.checks.get()
            body = {"status": "ok" if not errors else "error", "version": release(self.version)["plugin_daemon"],
                    "double": True, "note": NOTE, "plays_dify": self.version, "build_time": "n/a (double)",
                    "platform": "double", "pool_status": {}, "active_requests": 0, "active_dispatch_requests": 0}
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
            # A daemon with no plugin installed: no model providers (api/core/plugin/impl/model.py
            # reads a list) and no install tasks (api/core/plugin/impl/plugin.py, a list), as the
            # console's pages ask for them after sign-in.
            if request.method == "GET" and path.endswith(("/management/models", "/management/install/tasks")):
                return json_response({"code": 0, "message": "success", "double": True, "data": []})
        return self.not_found(request)


class _LineHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(b"dify-contract-double (not Dify): remote plugin debugging is not implemented\r\n")


def serve_debugging_port(environ, mode):
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
