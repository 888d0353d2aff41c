# shellcheck shell=bash disable=SC2034  # ARCHIVE_LOADED is read by the sourcing script
# Image archives of the build scripts (build-dify-api.sh, build-dify-double.sh): sourced, not run.
# An archive `<name>-<hash>.tar` holds the images of one build, with a `.sha256` file beside it
# and the stable links `<name>.tar` and `<name>.tar.sha256` pointing at them; a test host or
# another Docker engine loads it. The sourcing script defines say and die (its own prefix).

ARCHIVE_LOADED=0

# archive_link ARCHIVE LINK: point LINK (and LINK.sha256) at ARCHIVE; the archives of older
# builds (LINK's name, a dash, anything) are of no further use and are removed.
archive_link() {
  local archive="$1" link="$2" name
  name="$(basename "$archive")"
  ln -sfn "$name" "$link" || die "cannot link $link"
  ln -sfn "$name.sha256" "$link.sha256" || die "cannot link $link.sha256"
  find "$(dirname "$link")" -maxdepth 1 -name "$(basename "$link" .tar)-*.tar*" ! -name "$name*" -delete
}

# archive_restore ARCHIVE LINK WHAT HASH CHECK...: when ARCHIVE and ARCHIVE.sha256 exist, make
# sure the engine has WHAT of build HASH: the command CHECK... says whether it has; if not, the
# archive is loaded after its sha256 is checked (ARCHIVE_LOADED=1), and CHECK... must pass then.
# Links the archive. Status 0 when WHAT is there, 1 when there is no archive (build it).
archive_restore() {
  local archive="$1" link="$2" what="$3" hash="$4"
  shift 4
  [ -f "$archive" ] && [ -f "$archive.sha256" ] || return 1
  ARCHIVE_LOADED=0
  if ! "$@"; then
    say "loading $what from $archive"
    (cd "$(dirname "$archive")" && sha256sum --quiet -c "$(basename "$archive").sha256") \
      || die "$archive is damaged: remove it and rerun"
    docker load -i "$archive" >/dev/null || die "docker load -i $archive failed"
    "$@" || die "$archive does not hold $what of build $hash"
    ARCHIVE_LOADED=1
  fi
  archive_link "$archive" "$link"
}

# archive_save ARCHIVE LINK IMAGE...: save the images into ARCHIVE (written whole or not at
# all), write its .sha256 and link it.
archive_save() {
  local archive="$1" link="$2"
  shift 2
  docker save -o "$archive.part" "$@" || die "docker save of $* failed"
  mv "$archive.part" "$archive"
  (cd "$(dirname "$archive")" && sha256sum "$(basename "$archive")" >"$(basename "$archive").sha256") \
    || die "cannot write $archive.sha256"
  archive_link "$archive" "$link"
}

# image_replaced OLD TAG: remove the image OLD (the id TAG had before a build) when TAG now
# names another image.
image_replaced() {
  local old="$1" tag="$2"
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
}
