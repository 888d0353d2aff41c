#!/usr/bin/env bash
# Build the systemd-capable Debian images used by molecule and the lab, locally,
# from Debian's archive (no registry is needed): debootstrap + docker import.
#
# The image tag carries a hash of this script, so a rerun with an image already
# present returns at once, and a change to the package list rebuilds.
#
#   scripts/build-images.sh [bookworm] [trixie]     (default: both)
#
# Images: selfhost-dify/debian:12 and selfhost-dify/debian:13 (aliases of the
# hashed tags). They are "bare servers": systemd as PID 1, sshd, python3, sudo.
set -euo pipefail
MIRROR="${SELFHOST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SELFHOST_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PACKAGES="systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,ca-certificates,openssh-server,procps"
HERE="$(cd "$(dirname "$0")" && pwd)"
HASH="$(sha256sum "$HERE/build-images.sh" | cut -c1-12)"

version_of() { case "$1" in bookworm) echo 12 ;; trixie) echo 13 ;; *) echo "unknown suite $1" >&2; return 1 ;; esac; }

build() {
  local suite="$1" ver tag dir
  ver="$(version_of "$suite")"
  tag="selfhost-dify/debian:${ver}-${HASH}"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    docker tag "$tag" "selfhost-dify/debian:${ver}"
    echo "build-images: ${tag} cached"
    return 0
  fi
  dir="$(mktemp -d "/tmp/selfhost-rootfs-${suite}.XXXXXX")"
  echo "build-images: debootstrap ${suite} into ${dir}"
  debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$dir" "$MIRROR" >"${dir}.log" 2>&1 || {
    tail -20 "${dir}.log" >&2; rm -rf "$dir"; return 1; }
  # A bare server: no machine-id baked in (systemd makes one at boot), apt lists dropped,
  # host keys regenerated per container at first boot by the unit below.
  # The apt sources a Debian server is installed with: the release, its updates and security.
  rm -f "$dir/etc/apt/sources.list"
  cat >"$dir/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: ${MIRROR}
Suites: ${suite} ${suite}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${SECURITY_MIRROR}
Suites: ${suite}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  : >"$dir/etc/machine-id"
  rm -f "$dir"/etc/ssh/ssh_host_*
  cat >"$dir/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
  ln -sf /etc/systemd/system/ssh-hostkeys.service "$dir/etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service"
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
  tar -C "$dir" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' - "$tag" >/dev/null
  docker tag "$tag" "selfhost-dify/debian:${ver}"
  rm -rf "$dir" "${dir}.log"
  echo "build-images: built ${tag}"
}

# Once, before the parallel builds (two apt-get runs would contend for apt's lock).
if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)
pids=()
for s in "${suites[@]}"; do build "$s" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
