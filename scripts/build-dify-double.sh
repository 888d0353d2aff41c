#!/usr/bin/env bash
# Build the Dify contract double images and a real squid image, locally from Debian
# (no registry is needed), and save them into one archive for test hosts and the lab.
#
#   scripts/build-dify-double.sh
#
# Images:
#   selfhost-dify/dify-double:<version>  one per Dify version below; a test double, NOT Dify,
#                                        that plays by MODE only what cannot be built here:
#                                        the plugin daemon, and, until their own images are
#                                        built from upstream, the web and the sandbox
#                                        (tests/dify_double/README.md). Dify's api, worker,
#                                        beat and migrations run Dify's real image, built from
#                                        upstream source by scripts/build-dify-api.sh.
#   selfhost-dify/squid:trixie           Debian's squid, for the ssrf_proxy service.
# Archive: $SELFHOST_CACHE_DIR/images/dify-double-<hash>.tar (+ .sha256), and the stable
# symlinks dify-double.tar and dify-double.tar.sha256 pointing at them (scripts/lib/image-archive.sh,
# shared with build-dify-api.sh). The hash covers the double's sources (all its modules),
# this script and that file: a rerun with the images and the archive
# present returns at once; with only the archive present (another Docker engine) the images
# are loaded from it.
set -euo pipefail

# The Dify versions the double plays (one image each; they differ only in their last layer,
# the played version, which the plugin daemon's health answer reports as upstream's daemon
# release of that Dify version).
DIFY_VERSIONS=(1.13.0 1.11.1)
SQUID_TAG="selfhost-dify/squid:trixie"
BASE_IMAGE="selfhost-dify/debian:13"
LABEL="selfhost.dify.build-hash"

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
SRC="$ROOT/tests/dify_double"
CACHE="${SELFHOST_CACHE_DIR:-$HOME/.cache/selfhost-dify}/images"

say() { echo "build-dify-double: $*"; }
die() { echo "build-dify-double: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/image-archive.sh
. "$HERE/lib/image-archive.sh"

[ -f "$SRC/double.py" ] || die "$SRC/double.py is missing"

# The hash: every source file of the double (not its README), this script and the
# archive functions it sources.
HASH="$(
  cd "$ROOT"
  { find tests/dify_double -type f \( -name '*.py' -o -name 'Dockerfile' -o -name '*.sh' \) \
      ! -path '*/__pycache__/*' -print; echo scripts/build-dify-double.sh;
    echo scripts/lib/image-archive.sh; } \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12
)"
ARCHIVE="$CACHE/dify-double-$HASH.tar"
LINK="$CACHE/dify-double.tar"
TAGS=()
for v in "${DIFY_VERSIONS[@]}"; do TAGS+=("selfhost-dify/dify-double:$v"); done
TAGS+=("$SQUID_TAG")

mkdir -p "$CACHE"
# One build at a time (two test streams may ask for the images together).
exec 9>"$CACHE/.dify-double.lock"
flock 9

image_current() {  # the image exists and was built from these sources
  [ "$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null)" = "$HASH" ]
}
all_current() {
  local t
  for t in "${TAGS[@]}"; do image_current "$t" || return 1; done
}
build() {  # TAG DOCKER-BUILD-ARGS...: quiet unless it fails; the image it replaces is removed
  local tag="$1" log old
  shift
  log="$(mktemp "$CONTEXT/build.XXXXXX.log")"
  old="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
  docker build --label "$LABEL=$HASH" -t "$tag" "$@" >"$log" 2>&1 || { tail -40 "$log" >&2; die "docker build of $tag failed"; }
  image_replaced "$old" "$tag"
}

if archive_restore "$ARCHIVE" "$LINK" "the images" "$HASH" all_current; then
  if [ "$ARCHIVE_LOADED" = 1 ]; then say "${TAGS[*]} loaded"; else say "${TAGS[*]} cached ($ARCHIVE)"; fi
  exit 0
fi

docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE is missing: run scripts/build-images.sh trixie"

CONTEXT="$(mktemp -d /tmp/selfhost-dify-double.XXXXXX)"
trap 'rm -rf "$CONTEXT"' EXIT
# The double's modules (a package in the image), beside the Dockerfile.
cp "$SRC"/*.py "$SRC/Dockerfile" "$CONTEXT/"
mkdir -p "$CONTEXT/squid"
cp "$SRC/squid/Dockerfile" "$SRC/squid/squid-entrypoint.sh" "$CONTEXT/squid/"

# The versions in order: the first build makes the shared layers, the others reuse them.
for v in "${DIFY_VERSIONS[@]}"; do
  image_current "selfhost-dify/dify-double:$v" && { say "selfhost-dify/dify-double:$v cached"; continue; }
  say "building selfhost-dify/dify-double:$v"
  build "selfhost-dify/dify-double:$v" --build-arg "DOUBLE_PLAYS_VERSION=$v" "$CONTEXT"
done
if image_current "$SQUID_TAG"; then
  say "$SQUID_TAG cached"
else
  say "building $SQUID_TAG"
  build "$SQUID_TAG" "$CONTEXT/squid"
fi
for v in "${DIFY_VERSIONS[@]}"; do  # each image reports the version it plays
  played="$(docker run --rm "selfhost-dify/dify-double:$v" version)"
  [ "$played" = "$v" ] || die "selfhost-dify/dify-double:$v reports that it plays $played"
done
say "squid in $SQUID_TAG: $(docker run --rm --entrypoint squid "$SQUID_TAG" -v | head -n 1)"

say "saving ${TAGS[*]} into $ARCHIVE"
archive_save "$ARCHIVE" "$LINK" "${TAGS[@]}"
say "built $(du -h "$ARCHIVE" | cut -f1) $ARCHIVE"
