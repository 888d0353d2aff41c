# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST DOUBLE, NOT DIFY. Dify contract double: a stand-in for the Dify containers that cannot be built here, for
tests and the lab only.

It is NOT Dify. Dify's api, worker, beat and migrations run Dify's real api image, built
from upstream source (scripts/build-dify-api.sh). This double plays only the plugin daemon
(a Go program whose 213 modules are not vendored: it cannot be built here) and, until their
own images are built from upstream, the web and the sandbox. Every answer says so: the
``Server``, ``X-Dify-Double`` and ``X-Dify-Double-Note`` headers, the ``double`` field of
the daemon's health answer, the web page, the log lines.

One program, three parts, chosen by the ``MODE`` environment variable or by the first
argument (``double plugin_daemon``):

- ``plugin_daemon`` (5002, 5003): Dify's plugin daemon; its health follows real checks of
  its database (created when missing, as the daemon does), Redis, its storage and the api;
- ``web`` (3000): a page whose links use CONSOLE_API_URL and APP_API_URL, as Dify's web does;
- ``sandbox`` (8194): ``GET /health`` and the keyed ``/v1/sandbox/*`` routes; runs no code;
- ``healthcheck`` [mode]: exit 0 when the local part is healthy (for compose healthchecks);
- ``version``: print the Dify version this image plays.

A failed check names the variable to fix and never shows a secret value.

The parts live in modules of their own, each a test double of one Dify service: web.py,
sandbox.py, plugin_daemon.py; server.py is the plumbing they share. This module is the
process's entry point (``python3 -m dify_double`` in the image, ``double`` on its PATH).

Needs Python 3.9+, psycopg2, redis and botocore (Debian: python3-psycopg2, python3-redis,
python3-botocore; botocore signs the S3 requests).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from .plugin_daemon import DaemonApp, serve_debugging_port
from .sandbox import SandboxApp
from .server import NAME, http_get, log, plays_version, release, serve
from .web import WebApp

MODES = ("web", "sandbox", "plugin_daemon")
MODE_ALIASES = {"plugin-daemon": "plugin_daemon", "daemon": "plugin_daemon"}
# Parts the double no longer plays: Dify's real api image runs them.
REAL_MODES = ("api", "worker", "beat", "worker_beat", "migration", "job")
DEFAULT_PORTS = {"web": 3000, "sandbox": 8194, "plugin_daemon": 5002}
PORT_VARIABLES = {"web": "PORT", "sandbox": "SANDBOX_PORT", "plugin_daemon": "SERVER_PORT"}
HEALTH_PATHS = {"web": "/", "sandbox": "/health", "plugin_daemon": "/health/check"}
MODE_FILE = "/tmp/dify-double.mode"  # the running mode, for `double healthcheck` without a mode


# -- small pure functions (unit-tested) --------------------------------------------------------
def parse_mode(argv, environ, recorded=None):
    """(command, mode, rest) from the command line and MODE. command is 'run',
    'healthcheck' or 'version' (which needs no mode: its mode is None). A healthcheck
    without a mode checks the `recorded` mode (the one the container's main process runs)."""
    args = list(argv)
    command = "run"
    if args and args[0] in ("healthcheck", "version"):
        command = args.pop(0)
    mode = None
    if args and not args[0].startswith("-"):
        mode = args.pop(0)
    if command == "version":
        return command, None, args
    if command == "healthcheck" and not mode:
        mode = recorded
    mode = (mode or environ.get("MODE") or "").strip().lower()
    mode = MODE_ALIASES.get(mode, mode)
    if mode in REAL_MODES:
        raise ValueError("mode %r is not played by this double: Dify's api, worker, beat and migrations run "
                         "Dify's real api image built from upstream source (scripts/build-dify-api.sh)" % mode)
    if not mode:
        raise ValueError("no mode: give MODE or the first argument (%s)" % ", ".join(MODES))
    if mode not in MODES:
        raise ValueError("unknown mode %r (known: %s)" % (mode, ", ".join(MODES)))
    return command, mode, args


APPS = {"web": WebApp, "sandbox": SandboxApp, "plugin_daemon": DaemonApp}


# -- process entry points -----------------------------------------------------------------------
def healthcheck(mode, environ):
    """Exit code for a compose healthcheck of the local part."""
    port = int(environ.get(PORT_VARIABLES[mode]) or DEFAULT_PORTS[mode])
    path = HEALTH_PATHS[mode]
    try:
        status, dummy, body = http_get("http://127.0.0.1:%d%s" % (port, path), timeout=10)
    except OSError as exc:
        print("unhealthy: %s" % exc)
        return 1
    print("%s %s: %s" % (path, status, body[:300].decode("utf-8", "replace")))
    return 0 if status == 200 else 1


def recorded_mode(path=None):
    try:
        with open(path or os.environ.get("DOUBLE_MODE_FILE") or MODE_FILE, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def describe(mode, version):
    """What the part plays, for the start line: the release and the companion image's version."""
    if mode == "plugin_daemon":
        return "Dify %s's plugin daemon (dify-plugin-daemon %s)" % (version, release(version)["plugin_daemon"])
    if mode == "sandbox":
        return "Dify %s's sandbox (dify-sandbox %s)" % (version, release(version)["sandbox"])
    return "Dify %s's web" % version


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
    log(mode, "starting: %s, played by a test double (not Dify)" % describe(mode, version))
    log(mode, "Dify's api, worker, beat and migrations run Dify's real image built from upstream source; "
              "this double plays only the plugin daemon, the web and the sandbox")
    try:
        with open(environ.get("DOUBLE_MODE_FILE") or MODE_FILE, "w", encoding="utf-8") as handle:
            handle.write(mode)
    except OSError:
        pass
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *a: stop.set())
    app = APPS[mode](mode, version, environ)
    if mode == "plugin_daemon":
        serve_debugging_port(environ, mode)
    port = int(environ.get(PORT_VARIABLES[mode]) or DEFAULT_PORTS[mode])
    serve(app, port, stop)
    log(mode, "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
