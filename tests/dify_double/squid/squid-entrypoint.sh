#!/bin/sh
# Run Debian's squid in the foreground as the container's main process.
#
# squid starts as root (to bind its ports and write its pid file), then works as the
# user `proxy` (cache_effective_user), so the directories it writes to belong to proxy.
# Its log files are followed onto the container's output; squid's own messages (cache.log
# level 1) go to stderr as well. Extra arguments are passed to squid.
set -eu
CONF="${SQUID_CONF:-/etc/squid/squid.conf}"

mkdir -p /var/spool/squid /var/log/squid /run/squid
chown proxy:proxy /var/spool/squid /var/log/squid /run/squid
for log in access.log cache.log; do
  [ -e "/var/log/squid/$log" ] || install -o proxy -g proxy -m 0640 /dev/null "/var/log/squid/$log"
done
rm -f /run/squid.pid /run/squid/squid.pid

if ! out="$(squid -k parse -f "$CONF" 2>&1)"; then
  printf '%s\n' "$out" >&2
  echo "squid-entrypoint: $CONF does not parse" >&2
  exit 1
fi
# Cache directories, when the configuration has any (squid -z creates them and exits).
if grep -Eq '^[[:space:]]*cache_dir[[:space:]]' "$CONF"; then
  squid -N -z -f "$CONF"
fi

tail -q -n 0 -F /var/log/squid/access.log 2>/dev/null &
echo "squid-entrypoint: starting $(squid -v | head -n 1) with $CONF"
exec squid -N -d 1 -f "$CONF" "$@"
