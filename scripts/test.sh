#!/usr/bin/env bash
# The one test command (README, `make test`, .ci/run). Stages, in order:
#   env      venv from requirements-dev.txt (cached), Docker engine, test images and the
#            contract double's image archive (cached)
#   lint     yamllint, ansible-lint (production profile), antsibull-changelog lint
#   sanity   ansible-test sanity on a copy of the collection
#   pytest   unit tests for plugins/, bad-input tests, every molecule scenario, the lab tests,
#            in four streams side by side (the single-node lab; the three-host lab and its
#            restore drill; molecule, two at a time; the bad-input and unit tests)
# `scripts/test.sh lint|sanity|unit|pytest [pytest args]` runs one stage.
# If this script started the Docker engine, it stops that daemon (and only it) at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${SELFHOST_CACHE_DIR:-${HOME}/.cache/selfhost-dify}"
export SELFHOST_CACHE_DIR="$CACHE"
# Dify's source snapshots for the api image (the Makefile passes them; a checkout next to
# ../shared/upstream finds them there when run directly).
if [ -z "${SELFHOST_DIFY_SOURCE_DIR:-}" ] && [ -d "$ROOT/../shared/upstream" ]; then
  SELFHOST_DIFY_SOURCE_DIR="$(cd "$ROOT/../shared/upstream" && pwd)"
fi
export SELFHOST_DIFY_SOURCE_DIR="${SELFHOST_DIFY_SOURCE_DIR:-}"
# Grafana's Loki and Promtail release zips (the logging scenario and the labs install them as an
# air-gapped host does): ../shared/artifacts when it exists; copied into the cache below.
if [ -z "${SELFHOST_LOGGING_ARTIFACT_DIR:-}" ] && [ -d "$ROOT/../shared/artifacts" ]; then
  SELFHOST_LOGGING_ARTIFACT_DIR="$(cd "$ROOT/../shared/artifacts" && pwd)"
fi
export SELFHOST_LOGGING_ARTIFACT_DIR="${SELFHOST_LOGGING_ARTIFACT_DIR:-}"
export PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 ANSIBLE_NOCOLOR=1 NO_COLOR=1
STAGE="${1:-all}"; shift || true
T0=$(date +%s)

stamp() { printf '\n==== [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# Debian packages the tests use on this machine, installed when missing (CI starts bare).
need_packages() {
  local missing=() pkg
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "test.sh: installing ${missing[*]} from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

stage_env() {
  stamp "environment"
  scripts/venv.sh
  # The browser tests: Debian's Chromium, and certutil to trust the lab's CA in its own NSS database.
  need_packages chromium libnss3-tools fonts-liberation
  if ! docker info >/dev/null 2>&1; then
    scripts/docker-engine.sh start
    STARTED_ENGINE=1
  fi
  scripts/build-images.sh
  # Dify's api image from upstream's source, one per release the tests run (the lab and the
  # dify scenario: 1.13.0, and 1.11.1 for the upgrade), its web and sandbox, and the contract
  # double's image archive (the plugin daemon), before the streams that use them start.
  if [ -n "${SELFHOST_DIFY_SOURCE_DIR:-}" ]; then
    scripts/build-dify-api.sh "$SELFHOST_DIFY_SOURCE_DIR"/dify-[0-9]*.tar.gz
    # Dify's web (1.13.0, the release the lab runs and the dify scenario upgrades to) and its code
    # sandbox (0.2.12, what both releases run), from their upstream source.
    scripts/build-dify-web.sh "$SELFHOST_DIFY_SOURCE_DIR"/dify-web-1.13.0-*.tar.gz "$SELFHOST_DIFY_SOURCE_DIR"/web-build-1.13.0
    scripts/build-dify-sandbox.sh "$SELFHOST_DIFY_SOURCE_DIR"/dify-sandbox-0.2.12-*.tar.gz
  else
    echo "test.sh: SELFHOST_DIFY_SOURCE_DIR is not set: Dify's api image cannot be built (the lab and" >&2
    echo "         the dify scenario need it); set it to a directory of Dify source tarballs" >&2
  fi
  scripts/build-dify-double.sh
  if [ -n "${SELFHOST_LOGGING_ARTIFACT_DIR:-}" ]; then
    mkdir -p "$CACHE/artifacts"
    for f in loki-linux-amd64-3.6.15.zip promtail-linux-amd64-3.6.15.zip; do
      [ -f "$CACHE/artifacts/$f" ] || cp "$SELFHOST_LOGGING_ARTIFACT_DIR/$f" "$CACHE/artifacts/$f"
    done
  else
    echo "test.sh: SELFHOST_LOGGING_ARTIFACT_DIR is not set: the logging scenario and the labs need the" >&2
    echo "         Loki and Promtail 3.6.15 release zips; set it to a directory holding them" >&2
  fi
}

stage_lint() {
  stamp "yamllint"
  yamllint --strict .
  stamp "ansible-lint (production profile)"
  ansible-lint --offline
  stamp "antsibull-changelog lint"
  antsibull-changelog lint
}

stage_sanity() {
  stamp "ansible-test sanity"
  need_packages shellcheck
  local dest="$CACHE/sanity/ansible_collections/selfhost/dify"
  rm -rf "$dest"; mkdir -p "$dest"
  # The collection as it would be built: tracked and new files, minus the dev-only symlink.
  git ls-files -co --exclude-standard -z | grep -zv '^collections/' | xargs -0 cp --parents -t "$dest"
  # ansible-test fetches a pip bootstrap script from the internet; give it one that uses
  # the interpreter's bundled pip instead (the name follows ansible-core's pinned pip).
  mkdir -p "$HOME/.ansible/test/cache"
  for f in get_pip_24_2.py get_pip_25_1.py; do
    [ -f "$HOME/.ansible/test/cache/$f" ] || echo 'import ensurepip; ensurepip.bootstrap(upgrade=True)' >"$HOME/.ansible/test/cache/$f"
  done
  (cd "$dest" && git init -q && git add -A && \
   ansible-test sanity --python 3.11 --venv --color no 2>&1 | grep -vE '^(WARNING: Reviewing|Running sanity test)' )
}

stage_pytest() {
  stamp "pytest: unit, bad input, molecule scenarios, the labs (four streams side by side)"
  mkdir -p tests/output
  rm -f tests/output/junit-*.xml
  # Four independent streams, all started at once (the machine's CPUs stay busy to the end,
  # none runs alone while the others are done): the single-node lab's tests share one
  # converged lab (one process, in order); the three-host lab's share theirs, its restore
  # drill last (tests/lab_three/conftest.py orders it; it reports RTO and RPO); every molecule
  # scenario stands alone (two at a time); the bad-input and unit tests share a container or
  # server per file (one process).
  local pids=() names=(lab lab-three molecule integration) rc=0 i
  pytest tests/lab --junitxml=tests/output/junit-lab.xml "$@" >tests/output/pytest-lab.log 2>&1 & pids+=($!)
  pytest tests/lab_three --junitxml=tests/output/junit-lab-three.xml "$@" \
    >tests/output/pytest-lab-three.log 2>&1 & pids+=($!)
  pytest -n 2 --dist load tests/molecule --junitxml=tests/output/junit-molecule.xml "$@" \
    >tests/output/pytest-molecule.log 2>&1 & pids+=($!)
  pytest tests/integration tests/unit --junitxml=tests/output/junit-integration.xml "$@" \
    >tests/output/pytest-integration.log 2>&1 & pids+=($!)
  for i in 0 1 2 3; do
    if wait "${pids[$i]}"; then :; else rc=1; fi
    stamp "pytest stream ${names[$i]} finished"
    cat "tests/output/pytest-${names[$i]}.log"
  done
  return $rc
}

# The last line of a full run: every test that ran, as "tests: N passed, N failed, N skipped",
# counted from the junit reports: pytest's own (one per stream; a molecule scenario is one test
# there) and testinfra's inside each molecule scenario (junit-testinfra-<scenario>.xml, each test
# once per host it ran on).
closing_line() {
  ls tests/output/junit-*.xml >/dev/null 2>&1 || return 0
  python3 - <<'PY'
import glob
import xml.etree.ElementTree as ET
counts = {"pytest": [0, 0, 0], "testinfra": [0, 0, 0]}
for path in sorted(glob.glob("tests/output/junit-*.xml")):
    root = ET.parse(path).getroot()
    kind = "testinfra" if "/junit-testinfra-" in path else "pytest"
    for s in [root] if root.tag == "testsuite" else list(root):
        counts[kind][0] += int(s.get("tests", 0))
        counts[kind][1] += int(s.get("failures", 0)) + int(s.get("errors", 0))
        counts[kind][2] += int(s.get("skipped", 0))
total, failed, skipped = (sum(c[i] for c in counts.values()) for i in range(3))
detail = ", ".join(f"{k} {c[0]}" for k, c in counts.items())
print(f"tests: {total - failed - skipped} passed, {failed} failed, {skipped} skipped ({detail})")
PY
}

cleanup() {
  rc=$?
  if [ "${STARTED_ENGINE:-0}" = 1 ]; then scripts/docker-engine.sh stop || true; fi
  stamp "finished (exit $rc) in $(( $(date +%s) - T0 ))s"
  if [ "$STAGE" = all ] || [ "$STAGE" = pytest ]; then closing_line; fi
  exit $rc
}
trap cleanup EXIT

case "$STAGE" in
  all) rm -f tests/output/junit*.xml; stage_env; stage_lint; stage_sanity; stage_pytest "$@" ;;
  env) stage_env ;;
  lint) scripts/venv.sh; stage_lint ;;
  sanity) scripts/venv.sh; stage_sanity ;;
  unit) scripts/venv.sh; pytest tests/unit "$@" ;;
  pytest) stage_env; stage_pytest "$@" ;;
  *) echo "usage: $0 [all|env|lint|sanity|unit|pytest]" >&2; exit 2 ;;
esac
