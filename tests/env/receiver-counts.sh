#!/usr/bin/env bash
# Prints the test receiver's admin JSON.
#
#   tests/env/receiver-counts.sh DIR [PATH]      PATH defaults to /counts (/latency, /requests, ...)
#
# DIR is the receiver's directory (or a devenv DIR, which has receiver/ inside).
# Equivalent: curl -fsS "$RECEIVER_ADMIN_URL/counts"
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: $0 DIR [PATH]" >&2; exit 2; }
dir=$1
[[ -f "$dir/env" && ! -f "$dir/receiver/env" ]] || dir=$dir/receiver
[[ -f "$dir/env" ]] || { echo "receiver-counts: no receiver env in $1" >&2; exit 1; }
# shellcheck source=/dev/null
. "$dir/env"
exec curl -fsS --max-time 10 "$RECEIVER_ADMIN_URL${2:-/counts}"
