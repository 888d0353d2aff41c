#!/usr/bin/env bash
# Build Dify's api image (api, worker, beat and migrations share it) from an upstream source
# tarball, and save it into an image archive the dify role loads (dify_image_source: archive,
# checked by sha256), the way an air-gapped host receives Dify's published images.
#
#   scripts/build-dify-api.sh TARBALL [TARBALL...]
#
# TARBALL: a snapshot of langgenius/dify holding api/ and docker/docker-compose.yaml (for
# example dify-1.13.0-4fd6b52.tar.gz). The image is tagged as upstream's compose file names it
# (langgenius/dify-api:<release>), labelled with the tarball it came from, and built by
# scripts/dify-api-image/Dockerfile: upstream's api/Dockerfile with only the changes this
# build machine forces (that file lists them). Upstream's entrypoint.sh runs unchanged.
#
# Not in the image, because their download hosts are unreachable from the build machine:
#   - NLTK data (punkt, averaged_perceptron_tagger, stopwords): used by the Unstructured
#     document extractor (ETL_TYPE=Unstructured; the default ETL_TYPE=dify does not use it)
#     and by the Oracle vector store's keyword search;
#   - the tiktoken GPT-2 encoding: token counting falls back to the GPT-2 tokenizer files
#     bundled with the transformers package (upstream's own fallback).
#
# Cache: $SELFHOST_CACHE_DIR/images/dify-api-<release>-<hash>.tar (+ .sha256) and the stable
# links dify-api-<release>.tar(.sha256). The hash covers the tarball's sha256, the Dockerfile,
# the build context's layout (CONTEXT_FORMAT) and the base image: an unchanged rerun returns at once; with only the archive
# present (another Docker engine) the image is loaded from it.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
BASE_IMAGE="${SELFHOST_DIFY_API_BASE_IMAGE:-selfhost-dify/debian:12}"
CACHE="${SELFHOST_CACHE_DIR:-$HOME/.cache/selfhost-dify}/images"
CA_BUNDLE="${SELFHOST_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
LABEL="selfhost.dify.build-hash"
# How this script lays out the build context; change it when that changes (it is part of the
# cache hash, with the tarball, the Dockerfile and the base image).
CONTEXT_FORMAT=1

say() { echo "build-dify-api: $*"; }
die() { echo "build-dify-api: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/image-archive.sh
. "$HERE/lib/image-archive.sh"

[ $# -ge 1 ] || die "usage: $0 TARBALL [TARBALL...] (upstream Dify source snapshots)"
mkdir -p "$CACHE"

build_one() {
  local tarball="$1" tarsha release hash tag archive link context log old
  [ -f "$tarball" ] || die "$tarball: no such file"
  tarsha="$(sha256sum "$tarball" | cut -d' ' -f1)"
  # The release: the api image tag upstream's compose file names in this snapshot.
  release="$(tar -xzOf "$tarball" --wildcards '*docker/docker-compose.yaml' \
    | sed -n 's#^ *image: *langgenius/dify-api:\([^ "]*\).*#\1#p' | head -n 1)"
  [ -n "$release" ] || die "$tarball: docker/docker-compose.yaml names no langgenius/dify-api image"
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE is missing: run scripts/build-images.sh bookworm"
  hash="$({ echo "$tarsha" "$CONTEXT_FORMAT"; sha256sum "$HERE/dify-api-image/Dockerfile" | cut -d' ' -f1;
            docker image inspect -f '{{.Id}}' "$BASE_IMAGE"; } | sha256sum | cut -c1-12)"
  tag="langgenius/dify-api:$release"
  # One build of a release at a time (test streams may ask for it together).
  exec 9>"$CACHE/.dify-api-$release.lock"
  flock 9
  archive="$CACHE/dify-api-$release-$hash.tar"
  link="$CACHE/dify-api-$release.tar"

  current() { [ "$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$tag" 2>/dev/null)" = "$hash" ]; }

  if archive_restore "$archive" "$link" "$tag" "$hash" current; then
    say "$tag cached ($archive)"
    return 0
  fi

  if ! current; then
    context="$(mktemp -d /tmp/selfhost-dify-api.XXXXXX)"
    say "building $tag from $(basename "$tarball") (sha256 $tarsha)"
    tar -xzf "$tarball" -C "$context" --wildcards '*api/*' --exclude='*/api/tests/*'
    # The snapshot's top directory, if it has one, is dropped: api/ sits in the context.
    if [ ! -d "$context/api" ]; then mv "$context"/*/api "$context/api"; fi
    [ -f "$context/api/docker/entrypoint.sh" ] || die "$tarball holds no api/docker/entrypoint.sh"
    cp "$HERE/dify-api-image/Dockerfile" "$context/Dockerfile"
    cp "$CA_BUNDLE" "$context/build-ca.crt"
    log="$context/build.log"
    old="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
    local t0=$SECONDS
    if ! docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "COMMIT_SHA=$tarsha" \
        --label "$LABEL=$hash" --label "selfhost.dify.source=$(basename "$tarball")" \
        --label "selfhost.dify.source-sha256=$tarsha" \
        --label "org.opencontainers.image.description=Dify api $release built from upstream source by selfhost.dify (scripts/build-dify-api.sh)" \
        -t "$tag" "$context" >"$log" 2>&1; then
      tail -40 "$log" >&2; rm -rf "$context"; die "docker build of $tag failed"
    fi
    rm -rf "$context"
    image_replaced "$old" "$tag"
    say "built $tag in $(( SECONDS - t0 ))s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1/1e9}'))"
  fi
  say "saving $tag into $archive"
  archive_save "$archive" "$link" "$tag"
  say "saved $(du -h "$archive" | cut -f1) $archive"
}

for t in "$@"; do build_one "$t"; done
