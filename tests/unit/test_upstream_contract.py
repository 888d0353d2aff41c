# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The role's Dify deployment checked against upstream's own files, release by release.

For every upstream source snapshot (``dify-<release>-<commit>.tar.gz`` in
$SELFHOST_DIFY_SOURCE_DIR, else ../shared/upstream next to the checkout; see
tests/upstream_source.py), the dify role's compose.yaml and .env are rendered by Ansible for
that release (dify_version=<release>) and the edge roles' configurations with them, and:

- every variable the role passes to api, worker, beat, the migration (compared with api),
  web, sandbox and the plugin daemon is one upstream's docker/docker-compose.yaml passes to
  that service, or is in ALLOWED_EXTRA, whose every entry must be read by that release's
  source (api/configs or api/docker/entrypoint.sh; for web, sandbox and the plugin daemon,
  the component's own source snapshot): an allow-listed typo fails;
- each MODE the role sets is one api/docker/entrypoint.sh runs, with what it needs;
- both edge proxies (caddy, nginx) send every path upstream's nginx routes
  (docker/nginx/conf.d/default.conf.template) to the same service;
- the worker consumes every Celery queue the release's api code declares a task on or
  sends one to (the role's CELERY_QUEUES, else the entrypoint's default list).

A release missing from dify__releases fails, naming it. Without any snapshot the tests skip
(CI sets $SELFHOST_DIFY_SOURCE_DIR, where an empty or wrong directory fails instead).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests import upstream_source

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR, SOURCE_FROM = upstream_source.source_dir(ROOT)
TARBALLS = upstream_source.release_tarballs(SOURCE_DIR) if SOURCE_DIR else {}

if TARBALLS:
    RELEASES = [pytest.param(release, id=release) for release in TARBALLS]
elif SOURCE_DIR is None:
    RELEASES = [pytest.param(None, id="no-upstream-source", marks=pytest.mark.skip(reason=SOURCE_FROM))]
else:
    RELEASES = [pytest.param(None, id="no-upstream-source")]

APP_SERVICES = ("api", "worker", "worker_beat", "migration")
CHECKED_SERVICES = (*APP_SERVICES, "web", "sandbox", "plugin_daemon")
# Upstream has no migration service: the role's runs api's image with api's settings.
UPSTREAM_SERVICE = {"migration": "api"}
# Source snapshots of the services whose code is not in Dify's repository.
COMPONENTS = {"web": "web", "sandbox": "sandbox", "plugin_daemon": "plugin-daemon"}

# Variables the role passes although upstream's compose does not pass them to that service,
# {(service, or "*" for every api container, name): why}. Each must be read by the release's
# code (see the module docstring); test_allow_list_has_no_stale_entry keeps the list short.
ALLOWED_EXTRA = {
    ("*", "CELERY_QUEUES"):
        "api/docker/entrypoint.sh: the worker's queues (-Q). Upstream leaves it unset, and the "
        "entrypoint's default list misses queues the code sends to (test_worker_consumes_every_queue)",
    ("*", "S3_ADDRESS_STYLE"):
        "api/configs/middleware/storage/amazon_s3_storage_config.py: path-style requests, which "
        "SeaweedFS and MinIO need; upstream's compose never passes it",
    ("worker", "PLUGIN_REMOTE_INSTALL_HOST"):
        "api/configs/feature (PluginConfig): upstream passes it to api only; worker and beat load "
        "the same settings, and the role gives every api container one set",
    ("worker", "PLUGIN_REMOTE_INSTALL_PORT"): "as PLUGIN_REMOTE_INSTALL_HOST (api/configs/feature)",
    ("worker_beat", "PLUGIN_REMOTE_INSTALL_HOST"): "as for worker (api/configs/feature)",
    ("worker_beat", "PLUGIN_REMOTE_INSTALL_PORT"): "as for worker (api/configs/feature)",
    ("worker_beat", "INNER_API_KEY_FOR_PLUGIN"):
        "api/configs/feature (PluginConfig): upstream passes it to api and worker; beat loads the "
        "same settings, and the role gives every api container one set",
    ("plugin_daemon", "DB_MAX_OPEN_CONNS"):
        "langgenius/dify-plugin-daemon internal/types/app/config.go (envconfig DB_MAX_OPEN_CONNS, "
        "default 30): the daemon's pool to dify_plugin, sized with PostgreSQL's max_connections "
        "(selfhost_dify_plugin_db_max_connections); upstream keeps the daemon's default",
    ("plugin_daemon", "DB_SSL_MODE"):
        "langgenius/dify-plugin-daemon internal/types/app/config.go (envconfig DB_SSL_MODE, required, "
        "disable|require): the daemon's sslmode towards the native PostgreSQL",
}
# Where no source snapshot of a component is at hand, an allow-list entry for it must cite the
# component's file that reads the variable (repository and path, read when the entry was made).
CITATION = {"plugin_daemon": "langgenius/dify-plugin-daemon internal/types/app/config.go"}

# Inputs of the rendering: dummy values for what an inventory gives, and ports that tell the
# edge's upstreams apart.
PORTS = {"api": 15001, "web": 13000, "plugin_daemon": 15002}
INPUTS = {
    "selfhost_domain": "dify.example.test",
    "selfhost_private_address": "10.9.0.2",
    "selfhost_edge_upstreams": ["10.9.0.2"],
    "selfhost_edge_acme_email": "admin@example.test",
    "selfhost_dify_api_port": PORTS["api"],
    "selfhost_dify_web_port": PORTS["web"],
    "selfhost_dify_plugin_daemon_port": PORTS["plugin_daemon"],
    "selfhost_postgresql": {"address": "10.9.0.3", "port": 5432, "user": "dify", "password": "pg-password-0",
                            "database": "dify", "plugin_database": "dify_plugin", "vector_database": "dify"},
    "selfhost_redis": {"address": "10.9.0.4", "port": 6379, "user": "dify", "password": "redis-password-0"},
    "selfhost_object_storage": {"endpoint": "http://10.9.0.5:8333", "region": "us-east-1", "bucket": "dify",
                                "access_key": "s3-access-0", "secret_key": "s3-secret-0", "path_style": True},
    "dify__secrets": {"secret_key": "secret-key-0", "plugin_daemon_key": "daemon-key-0",
                      "plugin_inner_api_key": "inner-key-0", "sandbox_api_key": "sandbox-key-0",
                      "init_password": "init-password-0"},
    # Set from the installed nginx's version by the nginx role's tasks.
    "nginx__http2_directive": True,
}
VARS_FILES = ["selfhost/defaults/main.yml", "dify/defaults/main.yml", "dify/vars/main.yml",
              "caddy/defaults/main.yml", "caddy/vars/main.yml", "nginx/defaults/main.yml", "nginx/vars/main.yml"]
TEMPLATES = {"compose": "dify/templates/compose.yaml.j2", "env": "dify/templates/env.j2",
             "caddy": "caddy/templates/Caddyfile.j2", "nginx": "nginx/templates/selfhost-dify.conf.j2"}


# -- rendering ---------------------------------------------------------------------------------
def _tool(name: str) -> str:
    candidate = ROOT / ".venv" / "bin" / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def _parse_env_file(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if match:
            value = match.group(2)
            values[match.group(1)] = value[1:-1] if len(value) > 1 and value[0] == value[-1] == "'" else value
    return values


class Renderer:
    """The role's files rendered by one ansible-playbook run, a play per release (each with
    dify_version set to it), on first use."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.done: dict[str, SimpleNamespace | str] = {}

    def __call__(self, release: str) -> SimpleNamespace:
        if not self.done:
            self._render(list(TARBALLS))
        if isinstance(self.done[release], str):
            pytest.fail(self.done[release], pytrace=False)
        return self.done[release]

    def _render(self, wanted: list[str]) -> None:
        known = yaml.safe_load((ROOT / "roles/dify/vars/main.yml").read_text())["dify__releases"]
        plays = []
        for release in wanted:
            if release not in known:
                self.done[release] = (
                    f"dify__releases (roles/dify/vars/main.yml) has no entry for {release}, for which "
                    f"upstream's source is {TARBALLS[release].name}: add it (images from that snapshot's "
                    f"docker/docker-compose.yaml); it has {', '.join(known)}")
                continue
            out = self.workdir / release
            out.mkdir(parents=True)
            (out / "inputs.yml").write_text(yaml.safe_dump({**INPUTS, "dify_version": release}))
            plays.append({
                "name": f"Render the role's files for Dify {release}",
                "hosts": "localhost",
                "gather_facts": False,
                # The inputs come last: a later vars file wins (dify_version over the default).
                "vars_files": [str(ROOT / "roles" / path) for path in VARS_FILES] + [str(out / "inputs.yml")],
                "tasks": [{"name": f"Render {name} for {release}",
                           "ansible.builtin.template": {"src": str(ROOT / "roles" / src), "dest": str(out / name),
                                                        "mode": "0600"},
                           # One release failing leaves the others' plays to run.
                           "ignore_errors": True}
                          for name, src in TEMPLATES.items()],
            })
        if not plays:
            return
        playbook = self.workdir / "render.yml"
        playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_LOCAL_TEMP=str(self.workdir / ".ansible-tmp"),
                   ANSIBLE_REMOTE_TEMP=str(self.workdir / ".ansible-tmp"))
        proc = subprocess.run(
            [_tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
             "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        output = proc.stdout + proc.stderr
        for play in plays:
            release = play["name"].rsplit(" ", 1)[-1]
            out = self.workdir / release
            if proc.returncode != 0 or not all((out / name).exists() for name in TEMPLATES):
                part = output.split(f"PLAY [{play['name']}]", 1)[-1].split("PLAY [", 1)[0]
                self.done[release] = f"rendering the role's files for {release} failed:\n{part[-4000:]}"
                continue
            self.done[release] = SimpleNamespace(
                compose=yaml.safe_load((out / "compose").read_text()),
                env=_parse_env_file((out / "env").read_text()),
                caddy=(out / "caddy").read_text(),
                nginx=(out / "nginx").read_text())


@pytest.fixture(scope="module")
def renderer(tmp_path_factory):
    return Renderer(tmp_path_factory.mktemp("upstream-contract"))


_SNAPSHOTS: dict[str, upstream_source.Snapshot] = {}


def _snapshot(release: str) -> upstream_source.Snapshot:
    if release not in _SNAPSHOTS:
        _SNAPSHOTS[release] = upstream_source.Snapshot(TARBALLS[release])
    return _SNAPSHOTS[release]


@pytest.fixture(scope="module", params=RELEASES)
def release(request):
    if request.param is None:
        pytest.fail(f"no dify-<release>-<commit>.tar.gz in {SOURCE_DIR} ({SOURCE_FROM})", pytrace=False)
    return request.param


@pytest.fixture(scope="module")
def upstream(release):
    snapshot = _snapshot(release)
    return SimpleNamespace(snapshot=snapshot,
                           compose=yaml.safe_load(snapshot.text("docker/docker-compose.yaml")))


@pytest.fixture(scope="module")
def rendered(renderer, release):
    return renderer(release)


# -- variables -------------------------------------------------------------------------------------
def _allowance(service: str, name: str):
    """The allow-list key that admits a name for a service, if any."""
    for key in ((service, name), ("*", name) if service in APP_SERVICES else None):
        if key in ALLOWED_EXTRA:
            return key
    return None


def _extra_names(upstream, rendered) -> tuple[list[tuple[str, str]], list[str]]:
    """([(service, name) the role passes and upstream does not], [services missing on a side])."""
    extra, missing = [], []
    for service in CHECKED_SERVICES:
        theirs = UPSTREAM_SERVICE.get(service, service)
        if service not in rendered.compose["services"]:
            missing.append(f"the role's compose.yaml has no service {service}")
            continue
        if theirs not in upstream.compose["services"]:
            missing.append(f"upstream's docker-compose.yaml has no service {theirs}")
            continue
        ours = upstream_source.compose_env_names(rendered.compose, service)
        passed = upstream_source.compose_env_names(upstream.compose, theirs)
        extra += [(service, name) for name in sorted(ours - passed)]
    return extra, missing


def test_every_variable_is_one_upstream_passes(release, upstream, rendered):
    """Each name the role hands a service is one upstream's compose hands that service (the
    migration: api), or allow-listed."""
    extra, missing = _extra_names(upstream, rendered)
    offenders = [f"{release} {service}: {name} (upstream's compose does not pass it to "
                 f"{UPSTREAM_SERVICE.get(service, service)}, and ALLOWED_EXTRA does not list it)"
                 for service, name in extra if _allowance(service, name) is None]
    assert not (missing or offenders), "\n".join(missing + offenders)


def test_allow_listed_variables_are_read_by_upstream(release, upstream, rendered):
    """Each allow-listed name the role passes is read by that release's code: api's settings
    or entrypoint for api containers, the component's own source for the others."""
    extra, dummy = _extra_names(upstream, rendered)
    problems = []
    for service, name in extra:
        key = _allowance(service, name)
        if key is None:
            continue
        if service in APP_SERVICES:
            if not upstream_source.api_reads(upstream.snapshot, name):
                problems.append(f"{release} {service}: {name} is allow-listed ({ALLOWED_EXTRA[key]!r}), but "
                                f"neither api/configs nor api/docker/entrypoint.sh of {release} reads it")
            continue
        component = COMPONENTS[service]
        version = upstream_source.image_version(upstream.compose, UPSTREAM_SERVICE.get(service, service))
        tarball = upstream_source.component_tarball(SOURCE_DIR, component, version)
        if tarball is None and ALLOWED_EXTRA[key].startswith(CITATION.get(service, "\0")):
            continue
        if tarball is None:
            problems.append(f"{release} {service}: {name} is allow-listed ({ALLOWED_EXTRA[key]!r}), but no source "
                            f"of {component} {version} (what {release}'s compose runs) is in {SOURCE_DIR} to "
                            f"check it against: add dify-{component}-{version}-<commit>.tar.gz")
        elif not upstream_source.component_reads(upstream_source.Snapshot(tarball), name):
            problems.append(f"{release} {service}: {name} is allow-listed ({ALLOWED_EXTRA[key]!r}), but "
                            f"{tarball.name} never names it")
    assert not problems, "\n".join(problems)


def test_allow_list_has_no_stale_entry(renderer):
    """Every ALLOWED_EXTRA entry admits something in at least one release."""
    if not TARBALLS:
        if SOURCE_DIR is None:
            pytest.skip(SOURCE_FROM)
        pytest.fail(f"no dify-<release>-<commit>.tar.gz in {SOURCE_DIR} ({SOURCE_FROM})", pytrace=False)
    used, rendered_any = set(), False
    for each in TARBALLS:
        try:
            rendered = renderer(each)
        except pytest.fail.Exception:
            continue
        rendered_any = True
        upstream = SimpleNamespace(snapshot=_snapshot(each),
                                   compose=yaml.safe_load(_snapshot(each).text("docker/docker-compose.yaml")))
        used |= {_allowance(service, name) for service, name in _extra_names(upstream, rendered)[0]}
    if not rendered_any:
        pytest.fail("no release could be rendered (see the other tests)", pytrace=False)
    stale = sorted(set(ALLOWED_EXTRA) - used)
    assert not stale, f"ALLOWED_EXTRA entries no release needs (remove them): {stale}"


def _resolved_env(rendered, service: str) -> dict[str, str]:
    """A service's environment as the container gets it: ${NAME} and ${NAME:-default} from .env."""
    def value(text: str) -> str:
        match = re.fullmatch(r"\$\{([A-Za-z0-9_]+)(?::?-([^}]*))?\}", text)
        if not match:
            return text
        return rendered.env.get(match.group(1)) or (match.group(2) or "")
    return {name: value(raw) for name, raw in upstream_source.compose_env_values(rendered.compose, service).items()}


def test_modes_are_ones_the_entrypoint_runs(release, upstream, rendered):
    """MODE of every api container is one upstream runs (api/docker/entrypoint.sh, upstream's
    compose), and the migration's has what the entrypoint requires for it."""
    entrypoint = upstream.snapshot.text("api/docker/entrypoint.sh")
    modes = set(re.findall(r'"\$\{MODE\}" == "([a-z_]+)"', entrypoint))
    modes |= {upstream_source.compose_env_values(upstream.compose, service).get("MODE")
              for service in ("api", "worker", "worker_beat")}
    gate = re.search(r'if \[\[ "\$\{MIGRATION_ENABLED\}" == "true" \]\]; then(?P<body>.*?)\nfi\n', entrypoint, re.S)
    migration_needs_flag = bool(gate and '"${MODE}" == "migration"' in gate["body"])
    problems = []
    for service in APP_SERVICES:
        if service not in rendered.compose["services"]:
            continue
        env = _resolved_env(rendered, service)
        mode = env.get("MODE", "")
        if mode not in modes:
            problems.append(f"{release} {service}: MODE={mode!r} is none of {sorted(m for m in modes if m)}")
        if mode == "migration" and migration_needs_flag and env.get("MIGRATION_ENABLED") != "true":
            problems.append(f"{release} {service}: MODE=migration without MIGRATION_ENABLED=true, which "
                            f"{release}'s entrypoint needs to migrate (else it starts the API server)")
    assert not problems, "\n".join(problems)


# -- routes ---------------------------------------------------------------------------------------
def _probes(locations: list[dict]) -> list[str]:
    """Paths that exercise each of upstream's prefix locations: the prefix and one below it."""
    paths = []
    for location in locations:
        if location["modifier"] in ("", "^~"):
            prefix = location["pattern"]
            paths += [prefix, prefix + ("probe" if prefix.endswith("/") else "/probe")]
    return list(dict.fromkeys(paths))


def _port_kind(address: str) -> str:
    port = int(address.rsplit(":", 1)[-1])
    return next((kind for kind, known in PORTS.items() if known == port), f"port {port}")


def _caddy_split(line: str) -> list[str]:
    tokens, token, quote = [], "", None
    for char in line:
        if quote:
            if char == quote:
                tokens.append(token)
                token, quote = "", None
            else:
                token += char
        elif char in "\"`" and not token:
            quote = char
        elif char == "#" and not token:
            break
        elif char.isspace():
            if token:
                tokens.append(token)
            token = ""
        else:
            token += char
    return tokens + ([token] if token else [])


def _parse_caddyfile(text: str) -> list[dict]:
    root: list[dict] = []
    stack = [root]
    for line in text.splitlines():
        tokens = _caddy_split(line)
        if not tokens:
            continue
        if tokens == ["}"]:
            stack.pop()
        elif tokens[-1] == "{":
            node = {"args": tokens[:-1], "block": []}
            stack[-1].append(node)
            stack.append(node["block"])
        else:
            stack[-1].append({"args": tokens, "block": None})
    return root


def _caddy_router(text: str):
    """route(path) -> where the site's route block sends a bodiless GET: a service kind, or
    'respond <status>'. Path matchers are exact, or prefix with a trailing *; other matchers
    (expressions on headers or the body) do not hold for such a request."""
    site = next(node for node in _parse_caddyfile(text) if node["args"] and re.match(r"https?://", node["args"][0]))
    matchers: dict[str, list[str] | None] = {}
    for node in site["block"]:
        if node["args"][0].startswith("@"):
            matchers[node["args"][0]] = node["args"][2:] if node["args"][1] == "path" else None
    routes = [node for node in site["block"] if node["args"] == ["route"]]
    assert len(routes) == 1, "the Caddyfile's site has no single route block (the test reads that one)"

    def path_matches(pattern: str, path: str) -> bool:
        if pattern.endswith("*") and "*" not in pattern[:-1]:
            return path.startswith(pattern[:-1])
        return path == pattern

    def route(path: str) -> str | None:
        for handler in routes[0]["block"]:
            directive, args = handler["args"][0], handler["args"][1:]
            if directive not in ("respond", "reverse_proxy", "redir", "error", "abort", "file_server"):
                continue
            matcher = args[0] if args and (args[0][0] in "@/" or args[0] == "*") else "*"
            args = args[1:] if matcher != "*" or (args and args[0] == "*") else args
            if matcher.startswith("@"):
                patterns = matchers.get(matcher)
                hit = patterns is not None and any(path_matches(p, path) for p in patterns)
            else:
                hit = matcher == "*" or path_matches(matcher, path)
            if hit:
                if directive == "reverse_proxy":
                    kinds = {_port_kind(address) for address in args}
                    return kinds.pop() if len(kinds) == 1 else f"several: {sorted(kinds)}"
                return f"{directive} {' '.join(args)}".strip()
        return None
    return route


def _nginx_router(text: str):
    tree = upstream_source.parse_nginx(text)
    servers = upstream_source.nginx_servers(tree)
    upstreams = upstream_source.nginx_upstreams(tree)
    assert servers, "the role's nginx configuration has no server that proxies"

    def route(path: str) -> str | None:
        kinds = set()
        for locations in servers:
            location = upstream_source.nginx_route(locations, path)
            if location is None:
                kinds.add(None)
            elif location["proxy_pass"]:
                name = re.sub(r"^https?://", "", location["proxy_pass"]).split("/")[0]
                kinds |= {_port_kind(address) for address in upstreams.get(name, [name])}
            else:
                kinds.add(f"return {location['return']}")
        return kinds.pop() if len(kinds) == 1 else f"differs between servers: {sorted(map(str, kinds))}"
    return route


@pytest.mark.parametrize("edge", ["caddy", "nginx"])
def test_edge_routes_like_upstream(release, upstream, rendered, edge):
    """Every path upstream's nginx routes by a location prefix goes, through the edge, to the
    same service (api, web, plugin_daemon)."""
    template = "docker/nginx/conf.d/default.conf.template"
    servers = upstream_source.nginx_servers(upstream_source.parse_nginx(upstream.snapshot.text(template)))
    assert len(servers) == 1, f"{template}: expected one proxying server, found {len(servers)}"
    theirs = servers[0]
    route = _caddy_router(rendered.caddy) if edge == "caddy" else _nginx_router(rendered.nginx)
    gaps = []
    for path in _probes(theirs):
        location = upstream_source.nginx_route(theirs, path)
        expected = re.sub(r"^https?://", "", location["proxy_pass"]).split(":")[0].split("/")[0]
        actual = route(path)
        if actual != expected:
            gaps.append(f"{release} {edge}: {path} goes to {actual}; upstream's nginx sends it to {expected} "
                        f"(location {location['modifier']} {location['pattern']})".replace("  ", " "))
    assert not gaps, "\n".join(gaps)


# -- queues ------------------------------------------------------------------------------------------
def test_worker_consumes_every_queue(release, upstream, rendered):
    """The worker's queues (CELERY_WORKER_QUEUES, else CELERY_QUEUES, else the entrypoint's
    default for the edition) include every queue the release's code declares a task on or
    sends one to; a task on any other queue would wait in Redis forever."""
    worker = _resolved_env(rendered, "worker")
    edition = worker.get("EDITION") or upstream_source.edition_default(upstream.snapshot)
    needed, unresolved = upstream_source.QueueReader(upstream.snapshot, edition).queues()
    if worker.get("CELERY_WORKER_QUEUES"):
        consumed, source = worker["CELERY_WORKER_QUEUES"], "CELERY_WORKER_QUEUES"
    elif worker.get("CELERY_QUEUES"):
        consumed, source = worker["CELERY_QUEUES"], "the role's CELERY_QUEUES"
    else:
        consumed = ",".join(upstream_source.entrypoint_default_queues(upstream.snapshot, edition))
        source = f"upstream's default (api/docker/entrypoint.sh, EDITION={edition}; the role sets no CELERY_QUEUES)"
    consumed_set = {queue.strip() for queue in consumed.split(",") if queue.strip()}
    missing = [f"{release}: queue {queue!r} ("
               f"{'Celery default queue of tasks declared without one: ' if queue == upstream_source.CELERY_DEFAULT_QUEUE else ''}"
               f"{', '.join(needed[queue][:3])}{', …' if len(needed[queue]) > 3 else ''}) is not in {source}"
               for queue in sorted(set(needed) - consumed_set)]
    unread = [f"{release}: the test cannot resolve a queue at {entry}" for entry in unresolved]
    assert not (missing or unread), "\n".join(missing + unread)
