#!/usr/bin/env bash
# Debian packages the test suite uses as real peers: iperf3, irtt, sipp
# (sip-tester), kamailio (registrar/proxy for the call probe), tshark, chromium (HTML report screenshots), tmux (TUI smoke
# test), iproute2/iptables (network namespaces), postgresql (the central
# history store: tests start their own server with initdb/pg_ctl), prometheus
# (scrapes the fleet exporter in a test). Installs what is missing when
# run as root on Debian/Ubuntu; otherwise says what is missing (tests that
# need a missing tool skip with a reason).
set -u
pkgs="iperf3 irtt sip-tester kamailio kamailio-tls-modules tshark chromium poppler-utils tmux iproute2 iptables procps postgresql prometheus"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "sysdeps: not root or no apt-get; missing:$missing (tests that need them will skip)" >&2
  exit 0
fi
echo "sysdeps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || echo "sysdeps: apt-get update failed" >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null \
  || { echo "sysdeps: apt-get install failed for:$missing" >&2; exit 1; }
