#!/usr/bin/env bash
# Fails when the core library (src/core, src/util) refers to a symbol of libsystemd, librabbitmq,
# libpq, libcurl or libmicrohttpd: the core decides, the adapters talk.
set -euo pipefail
lib=$1
command -v nm >/dev/null || { echo "nm not found (binutils)"; exit 77; }
undefined=$(nm --undefined-only --format=posix "$lib" | awk '{print $1}' | sort -u)
[[ -n "$undefined" ]] || { echo "no undefined symbols in $lib: is this the core library?"; exit 1; }
bad=$(grep -E '^(sd_|amqp_|PQ|pg_|lo_|curl_|Curl_|MHD_)' <<<"$undefined" || true)
if [[ -n "$bad" ]]; then
        echo "the core library $lib uses I/O libraries' symbols:"
        echo "$bad"
        exit 1
fi
echo "core library: $(wc -l <<<"$undefined") undefined symbols, none from libsystemd, librabbitmq, libpq, libcurl or libmicrohttpd"
