#!/usr/bin/env bash
# Make sure a docker engine answers on the default socket; start dockerd in the background if none
# does. Prints "started <pid>" when this script started it (the caller stops it by that PID), or
# "running" when one was already up. Needs root. Never stops anything itself.
set -euo pipefail
LOG="${ST_DOCKERD_LOG:-/var/log/secure-trainer-dockerd.log}"
DOCKER="${DOCKER:-docker}"
if "$DOCKER" info >/dev/null 2>&1; then
  echo running
  exit 0
fi
command -v dockerd >/dev/null || { echo "dockerd missing: run scripts/system-deps.sh" >&2; exit 1; }
# setsid: the daemon outlives this script (and make), but not by accident a terminal's SIGHUP.
setsid dockerd >>"$LOG" 2>&1 < /dev/null &
pid=$!
for _ in $(seq 1 120); do
  if "$DOCKER" info >/dev/null 2>&1; then
    echo "started $pid"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { echo "dockerd exited early; see $LOG" >&2; tail -5 "$LOG" >&2; exit 1; }
  sleep 0.5
done
echo "dockerd did not answer within 60 s; see $LOG" >&2
exit 1
