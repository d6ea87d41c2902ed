#!/bin/bash
# Runs on each worker instance (installed by the launch template's user data): polls the instance metadata
# service for EC2's spot interruption notice and writes it, as EC2 words it, into a file the worker's container
# mounts read-only. The container itself never reaches the metadata service.
#
# IMDS_ENDPOINT, NOTICE_DIR and POLL_SECONDS may be overridden (the tests point them at a local stand-in).
set -u
IMDS_ENDPOINT="${IMDS_ENDPOINT:-http://169.254.169.254}"
NOTICE_DIR="${NOTICE_DIR:-/run/whisper-batch}"
POLL_SECONDS="${POLL_SECONDS:-2}"

mkdir -p "$NOTICE_DIR"
chmod 755 "$NOTICE_DIR"
while true; do
  token="$(curl -sf -m 2 -X PUT "$IMDS_ENDPOINT/latest/api/token" \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' || true)"
  if [ -n "$token" ]; then
    notice="$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" \
      "$IMDS_ENDPOINT/latest/meta-data/spot/instance-action" || true)"
    if [ -n "$notice" ] && [ ! -s "$NOTICE_DIR/interruption.json" ]; then
      # Written whole, then renamed: the worker never reads half a notice.
      printf '%s\n' "$notice" > "$NOTICE_DIR/.interruption.json.tmp"
      mv -f "$NOTICE_DIR/.interruption.json.tmp" "$NOTICE_DIR/interruption.json"
      echo "spot interruption notice written: $notice"
    fi
  fi
  sleep "$POLL_SECONDS"
done
