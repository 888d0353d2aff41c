# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Dify's deployment contract, read from upstream's own source snapshots.

A snapshot is a tarball of langgenius/dify at a release (``dify-<release>-<commit>.tar.gz``,
holding ``api/`` and ``docker/``), or of one of its components (``dify-web-…``,
``dify-sandbox-…``, ``dify-plugin-daemon-<version>-<commit>.tar.gz``). Nothing is extracted:
the files are read from the tarball. What is read from it:

- the variable names upstream's docker/docker-compose.yaml passes to each service;
- the routes of upstream's nginx (docker/nginx/conf.d/default.conf.template);
- where api's settings (api/configs) and its entrypoint (api/docker/entrypoint.sh) read a
  variable;
- every Celery queue api's code declares a task on or sends one to, resolved from the
  Python source (module constants, imports and edition-dependent class attributes), and
  the entrypoint's default queue list.

The nginx reader also serves the edge proxies' rendered configuration, so that both sides
are routed by the same rules.
"""

from __future__ import annotations

import ast
import os
import re
import tarfile
from collections import defaultdict
from pathlib import Path

SOURCE_DIR_VARIABLE = "SELFHOST_DIFY_SOURCE_DIR"
RELEASE_TARBALL_RE = re.compile(r"^dify-(?P<version>\d+\.\d+\.\d+)-(?P<commit>[0-9a-f]{7,40})\.tar\.gz$")
COMPONENT_TARBALL_RE = re.compile(
    r"^dify-(?P<component>web|sandbox|plugin-daemon)-(?P<version>\d+\.\d+\.\d+)-(?P<commit>[0-9a-f]{7,40})\.tar\.gz$")


# -- where the snapshots are ----------------------------------------------------------------
def source_dir(root: Path) -> tuple[Path | None, str]:
    """The directory of the snapshots and how it was found: $SELFHOST_DIFY_SOURCE_DIR, else
    <checkout>/../shared/upstream when it exists; (None, why) when neither applies."""
    given = os.environ.get(SOURCE_DIR_VARIABLE, "")
    if given:
        return Path(given), f"${SOURCE_DIR_VARIABLE}={given}"
    fallback = root.parent / "shared" / "upstream"
    if fallback.is_dir():
        return fallback, f"{fallback} (${SOURCE_DIR_VARIABLE} unset)"
    return None, (f"no upstream Dify source: set ${SOURCE_DIR_VARIABLE} to a directory holding "
                  f"dify-<release>-<commit>.tar.gz (none at {fallback} either)")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def release_tarballs(directory: Path) -> dict[str, Path]:
    """{release: tarball} of the release snapshots in directory, newest first."""
    found = {}
    if directory.is_dir():
        for path in directory.iterdir():
            match = RELEASE_TARBALL_RE.match(path.name)
            if match:
                found[match["version"]] = path
    return dict(sorted(found.items(), key=lambda item: _version_key(item[0]), reverse=True))


def component_tarball(directory: Path, component: str, version: str) -> Path | None:
    """The snapshot of a component (web, sandbox, plugin-daemon) at a version, if present."""
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            match = COMPONENT_TARBALL_RE.match(path.name)
            if match and match["component"] == component and match["version"] == version:
                return path
    return None


class Snapshot:
    """The regular files of one tarball, by path (a leading ./ dropped)."""

    def __init__(self, path: Path):
        self.path = path
        with tarfile.open(path, "r:*") as archive:
            self.files = {member.name.removeprefix("./"): archive.extractfile(member).read()
                          for member in archive if member.isfile()}

    def text(self, name: str) -> str:
        try:
            return self.files[name].decode("utf-8")
        except KeyError:
            raise AssertionError(f"{self.path.name} has no {name}") from None

    def names(self, prefix: str = "", suffixes: tuple[str, ...] = ("",)) -> list[str]:
        return sorted(name for name in self.files if name.startswith(prefix) and name.endswith(suffixes))


# -- docker/docker-compose.yaml --------------------------------------------------------------
def compose_env_names(compose: dict, service: str) -> set[str]:
    """The variable names a compose file passes to a service: its environment (mapping, YAML
    merge keys such as upstream's <<: *shared-api-worker-env already merged, or list)."""
    environment = compose["services"][service].get("environment") or {}
    if isinstance(environment, dict):
        return set(environment)
    return {entry.split("=", 1)[0] for entry in environment}


def compose_env_values(compose: dict, service: str) -> dict[str, str]:
    environment = compose["services"][service].get("environment") or {}
    if isinstance(environment, dict):
        return {name: "" if value is None else str(value) for name, value in environment.items()}
    return dict((entry.split("=", 1) + [""])[:2] for entry in environment)


def image_version(compose: dict, service: str) -> str:
    """The version in a service's image tag (0.5.3-local -> 0.5.3)."""
    tag = compose["services"][service]["image"].rsplit(":", 1)[-1]
    match = re.match(r"\d+\.\d+\.\d+", tag)
    return match.group(0) if match else tag


# -- where api reads a variable ---------------------------------------------------------------
def api_reads(snapshot: Snapshot, name: str) -> list[str]:
    """Where api's settings classes (api/configs, a field of that name) or its entrypoint
    (api/docker/entrypoint.sh, $NAME or ${NAME…}) read a variable, as path:line."""
    field = re.compile(rf"^\s*{re.escape(name)}\s*:", re.MULTILINE)
    shell = re.compile(rf"\$\{{?{re.escape(name)}\b")
    found = []
    for path in snapshot.names("api/configs/", (".py",)):
        text = snapshot.text(path)
        found += [f"{path}:{text.count(chr(10), 0, m.start()) + 1}" for m in field.finditer(text)]
    entrypoint = "api/docker/entrypoint.sh"
    if entrypoint in snapshot.files:
        text = snapshot.text(entrypoint)
        found += [f"{entrypoint}:{text.count(chr(10), 0, m.start()) + 1}" for m in shell.finditer(text)]
    return found


SOURCE_SUFFIXES = (".go", ".py", ".ts", ".tsx", ".js", ".mjs", ".sh", ".yaml", ".yml", ".example", "Dockerfile")


def component_reads(snapshot: Snapshot, name: str) -> list[str]:
    """Files of a component's source that name a variable (whole word), as paths."""
    word = re.compile(rf"(?<![A-Z0-9_]){re.escape(name)}(?![A-Z0-9_])")
    return [path for path in snapshot.names(suffixes=SOURCE_SUFFIXES)
            if word.search(snapshot.files[path].decode("utf-8", "replace"))]


# -- api/docker/entrypoint.sh and the edition -------------------------------------------------
def edition_default(snapshot: Snapshot) -> str:
    """EDITION's default in api/configs/deploy (SELF_HOSTED in every release so far)."""
    tree = ast.parse(snapshot.text("api/configs/deploy/__init__.py"))
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "EDITION":
            for keyword in getattr(node.value, "keywords", []):
                if keyword.arg == "default" and isinstance(keyword.value, ast.Constant):
                    return keyword.value.value
    raise AssertionError("api/configs/deploy/__init__.py: no EDITION field with a default")


_EDITION_QUEUES_RE = re.compile(
    r'if \[\[ "\$\{EDITION\}" == "CLOUD" \]\]; then\s*(?:#[^\n]*\s*)*DEFAULT_QUEUES="(?P<cloud>[^"]*)"'
    r'\s*else\s*(?:#[^\n]*\s*)*DEFAULT_QUEUES="(?P<other>[^"]*)"')


def entrypoint_default_queues(snapshot: Snapshot, edition: str) -> list[str]:
    """The queues the worker consumes when CELERY_QUEUES is unset (api/docker/entrypoint.sh)."""
    match = _EDITION_QUEUES_RE.search(snapshot.text("api/docker/entrypoint.sh"))
    if not match:
        raise AssertionError("api/docker/entrypoint.sh: no per-edition DEFAULT_QUEUES found (the script changed)")
    return match["cloud" if edition == "CLOUD" else "other"].split(",")


# -- Celery queues in api's code --------------------------------------------------------------
CELERY_DEFAULT_QUEUE = "celery"
_SEND_METHODS = {"apply_async", "send_task", "signature", "s", "si", "subtask", "set"}


class Unresolved(Exception):
    """An expression the reader cannot reduce to string constants."""


class _Module:
    def __init__(self, name: str, path: str, tree: ast.Module, settings: dict):
        self.name, self.path, self.settings = name, path, settings
        self.package = name if path.endswith("/__init__.py") else name.rpartition(".")[0]
        self.bindings = _bindings(tree.body, settings)


def _condition(node: ast.expr, settings: dict):
    """Value of a module-level `if` test over constants and dify_config.<setting>; None when
    it depends on anything else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "dify_config":
        return settings.get(node.attr)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        value = _condition(node.operand, settings)
        return None if value is None else not value
    if isinstance(node, ast.BoolOp):
        values = [_condition(value, settings) for value in node.values]
        if None in values:
            return None
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right = _condition(node.left, settings), _condition(node.comparators[0], settings)
        if left is None or right is None:
            return None
        operators = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
                     ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
        operator = operators.get(type(node.ops[0]))
        return None if operator is None else operator(left, right)
    return None


def _bindings(statements: list[ast.stmt], settings: dict, certain: bool = True) -> dict:
    """Names bound by a module or class body: ('expr', value), ('import', module, name, level),
    ('class', node) or ('ambiguous', line) when bound under a condition that cannot be decided."""
    bound: dict = {}
    for statement in statements:
        targets = []
        if isinstance(statement, ast.Assign):
            targets = [(target.id, statement.value) for target in statement.targets if isinstance(target, ast.Name)]
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None and isinstance(statement.target, ast.Name):
            targets = [(statement.target.id, statement.value)]
        elif isinstance(statement, ast.ImportFrom):
            for alias in statement.names:
                bound[alias.asname or alias.name] = ("import", statement.module or "", alias.name, statement.level)
        elif isinstance(statement, ast.ClassDef):
            bound[statement.name] = ("class", statement)
        elif isinstance(statement, ast.If):
            decided = _condition(statement.test, settings) if certain else None
            if decided is None:
                bound.update(_bindings(statement.body, settings, certain=False))
                bound.update(_bindings(statement.orelse, settings, certain=False))
            else:
                bound.update(_bindings(statement.body if decided else statement.orelse, settings))
        elif isinstance(statement, ast.Try):
            bound.update(_bindings(statement.body, settings, certain))
        for name, value in targets:
            bound[name] = ("expr", value) if certain else ("ambiguous", statement.lineno)
    return bound


class QueueReader:
    """Resolves the queue of every Celery task declaration and send in api's Python source.

    Counted: `queue=` of @shared_task(...), @<app>.task(...) and of .apply_async / .send_task /
    .signature / .s / .si / .set calls; a task declared without a queue goes to Celery's
    default queue ("celery", api sets no task_default_queue). A queue is a string constant, a
    module constant (followed through imports) or a class attribute (an enum member), with
    module-level `if dify_config.EDITION == …` decided for the given edition."""

    def __init__(self, snapshot: Snapshot, edition: str):
        self.snapshot = snapshot
        self.settings = {"EDITION": edition}
        self.modules: dict[str, _Module | None] = {}

    def module(self, name: str) -> _Module | None:
        if name not in self.modules:
            base = "api/" + name.replace(".", "/")
            for path in (base + ".py", base + "/__init__.py"):
                if path in self.snapshot.files:
                    self.modules[name] = _Module(name, path, ast.parse(self.snapshot.files[path]), self.settings)
                    break
            else:
                self.modules[name] = None
        return self.modules[name]

    def _absolute(self, module: _Module, target: str, level: int) -> str:
        if not level:
            return target
        package = module.package.split(".") if module.package else []
        package = package[:len(package) - (level - 1)] if level > 1 else package
        return ".".join(package + ([target] if target else []))

    def _lookup(self, module: _Module, name: str, seen: frozenset = frozenset()):
        """(module, binding) a name of a module stands for, following imports."""
        if (module.name, name) in seen:
            raise Unresolved(f"{module.path}: import cycle at {name}")
        binding = module.bindings.get(name)
        if binding is None:
            raise Unresolved(f"{module.path}: {name} is not bound at module level")
        if binding[0] == "import":
            dummy, target, imported, level = binding
            source = self._absolute(module, target, level)
            submodule = self.module(f"{source}.{imported}" if source else imported)
            if submodule is not None:
                return module, ("module", submodule)
            origin = self.module(source)
            if origin is None:
                raise Unresolved(f"{module.path}: {name} comes from {source}, which is not in api/")
            return self._lookup(origin, imported, seen | {(module.name, name)})
        if binding[0] == "ambiguous":
            raise Unresolved(f"{module.path}:{binding[1]}: {name} is set under a condition the reader cannot decide")
        return module, binding

    def resolve(self, module: _Module, node: ast.expr) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.Name):
            owner, binding = self._lookup(module, node.id)
            if binding[0] == "expr":
                return self.resolve(owner, binding[1])
            raise Unresolved(f"{module.path}: {node.id} is a {binding[0]}, not a string")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner, binding = self._lookup(module, node.value.id)
            if binding[0] == "module":
                return self.resolve(binding[1], ast.Name(id=node.attr))
            if binding[0] == "class":
                members = _bindings(binding[1].body, self.settings)
                if node.attr in members and members[node.attr][0] == "expr":
                    return self.resolve(owner, members[node.attr][1])
                raise Unresolved(f"{owner.path}: {node.value.id}.{node.attr} is not a plain class attribute")
        raise Unresolved(f"{module.path}: cannot resolve {ast.unparse(node)}")

    def queues(self) -> tuple[dict[str, list[str]], list[str]]:
        """({queue: [path:line, …]}, [unresolved expressions with their place])."""
        found: dict[str, list[str]] = defaultdict(list)
        unresolved: list[str] = []
        for path in self.snapshot.names("api/", (".py",)):
            if path.startswith(("api/migrations/", "api/tests/")):
                continue
            source = self.snapshot.files[path]
            if b"queue" not in source and b"task" not in source:
                continue
            tree = ast.parse(source)
            name = path[len("api/"):-len(".py")].replace("/", ".").removesuffix(".__init__")
            module = None
            for node, queue in _celery_queue_expressions(tree):
                where = f"{path}:{node.lineno}"
                if queue is None:
                    found[CELERY_DEFAULT_QUEUE].append(where)
                    continue
                module = module or self.module(name)
                try:
                    for value in self.resolve(module, queue):
                        found[value].append(where)
                except Unresolved as problem:
                    unresolved.append(f"{where}: queue={ast.unparse(queue)} ({problem})")
        if any(b"task_default_queue" in self.snapshot.files[path] for path in self.snapshot.names("api/", (".py",))):
            unresolved.append("api sets task_default_queue: the default queue is no longer Celery's own")
        return dict(found), unresolved


def _celery_queue_expressions(tree: ast.Module):
    """(node, queue expression or None for the default queue) of every Celery task
    declaration and send in a module."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                call = decorator if isinstance(decorator, ast.Call) else None
                func = call.func if call else decorator
                is_task = ((isinstance(func, ast.Name) and func.id == "shared_task")
                           or (isinstance(func, ast.Attribute) and func.attr in ("task", "shared_task")))
                if not is_task:
                    continue
                queue = next((k.value for k in (call.keywords if call else []) if k.arg == "queue"), None)
                yield decorator, queue
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in _SEND_METHODS):
            for keyword in node.keywords:
                if keyword.arg == "queue":
                    yield node, keyword.value


# -- nginx configuration ------------------------------------------------------------------------
_PLACEHOLDER_LINE = re.compile(r"^\s*\$\{[A-Z0-9_]+\}\s*$", re.MULTILINE)


def _nginx_tokens(text: str):
    token, quote, index = "", None, 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == quote:
                yield token
                token, quote = "", None
            else:
                token += char
        elif char == "#" and not token:
            index = text.find("\n", index)
            if index < 0:
                break
        elif char in "\"'" and not token:
            quote = char
        elif char == "$" and text.startswith("${", index):
            end = text.index("}", index)
            token += text[index:end + 1]
            index = end
        elif char in "{};":
            if token:
                yield token
            token = ""
            yield char
        elif char.isspace():
            if token:
                yield token
            token = ""
        else:
            token += char
        index += 1
    if token:
        yield token


def parse_nginx(text: str) -> list[dict]:
    """nginx configuration as a tree: [{'args': [...], 'block': [...] or None}]. Lines that
    are a lone ${PLACEHOLDER} (where upstream's envsubst inserts optional blocks) are dropped."""
    tokens = list(_nginx_tokens(_PLACEHOLDER_LINE.sub("", text)))
    position = 0

    def block() -> list[dict]:
        nonlocal position
        statements, args = [], []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                statements.append({"args": args, "block": None})
                args = []
            elif token == "{":
                statements.append({"args": args, "block": block()})
                args = []
            elif token == "}":
                return statements
            else:
                args.append(token)
        return statements

    return block()


def _walk_nginx(statements: list[dict], name: str):
    for statement in statements:
        if statement["args"] and statement["args"][0] == name:
            yield statement
        if statement["block"] is not None:
            yield from _walk_nginx(statement["block"], name)


def nginx_servers(tree: list[dict]) -> list[list[dict]]:
    """The locations of every server block that proxies (skips ACME-and-redirect servers):
    [{'modifier': '=', '~', '~*', '^~' or '', 'pattern': ..., 'proxy_pass': ..., 'return': ...}]."""
    servers = []
    for server in _walk_nginx(tree, "server"):
        if server["block"] is None:
            continue
        locations = []
        for location in server["block"]:
            args = location["args"]
            if not args or args[0] != "location" or location["block"] is None:
                continue
            modifier, pattern = (args[1], args[2]) if len(args) > 2 else ("", args[1])
            directives = {s["args"][0]: s["args"][1:] for s in location["block"] if s["args"]}
            locations.append({"modifier": modifier, "pattern": pattern,
                              "proxy_pass": (directives.get("proxy_pass") or [None])[0],
                              "return": " ".join(directives.get("return", [])) or None})
        if any(location["proxy_pass"] for location in locations):
            servers.append(locations)
    return servers


def nginx_upstreams(tree: list[dict]) -> dict[str, list[str]]:
    """{upstream name: [server address, ...]} of the upstream blocks."""
    return {statement["args"][1]: [s["args"][1] for s in statement["block"] if s["args"] and s["args"][0] == "server"]
            for statement in _walk_nginx(tree, "upstream") if statement["block"] is not None}


def nginx_route(locations: list[dict], path: str) -> dict | None:
    """The location nginx picks for a path: an exact match; else the longest prefix if it is
    ^~; else the first matching regular expression, in order; else the longest prefix."""
    for location in locations:
        if location["modifier"] == "=" and location["pattern"] == path:
            return location
    prefixes = [loc for loc in locations if loc["modifier"] in ("", "^~") and path.startswith(loc["pattern"])]
    longest = max(prefixes, key=lambda loc: len(loc["pattern"]), default=None)
    if longest is not None and longest["modifier"] == "^~":
        return longest
    for location in locations:
        if location["modifier"] in ("~", "~*"):
            flags = re.IGNORECASE if location["modifier"] == "~*" else 0
            if re.search(location["pattern"], path, flags):
                return location
    return longest
