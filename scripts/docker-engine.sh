#!/usr/bin/env bash
# Ensure a Docker engine answers. If none does and dockerd is installed (or can be
# installed from Debian), start one in the background and record its pid so that
# `docker-engine.sh stop` stops only the daemon this script started.
set -euo pipefail
STATE_DIR="${SELFHOST_STATE_DIR:-${HOME}/.cache/selfhost-dify}"
PIDFILE="${STATE_DIR}/dockerd.pid"
mkdir -p "${STATE_DIR}"

engine_up() { docker info >/dev/null 2>&1; }

start() {
  if engine_up; then
    echo "docker-engine: an engine is already running; leaving it alone"
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker-engine: installing docker.io from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  echo "docker-engine: starting dockerd"
  nohup dockerd >"${STATE_DIR}/dockerd.log" 2>&1 &
  echo $! >"${PIDFILE}"
  for _ in $(seq 1 60); do
    engine_up && { echo "docker-engine: up (pid $(cat "${PIDFILE}"))"; return 0; }
    sleep 1
  done
  echo "docker-engine: dockerd did not come up; see ${STATE_DIR}/dockerd.log" >&2
  return 1
}

stop() {
  [ -f "${PIDFILE}" ] || { echo "docker-engine: no daemon started by us"; return 0; }
  pid=$(cat "${PIDFILE}")
  if kill -0 "${pid}" 2>/dev/null; then
    kill "${pid}"
    for _ in $(seq 1 30); do kill -0 "${pid}" 2>/dev/null || break; sleep 1; done
    echo "docker-engine: stopped dockerd (pid ${pid})"
  fi
  rm -f "${PIDFILE}"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
