#!/usr/bin/env bash
# The shipped alerting rules: promtool check rules finds nothing, and promtool test rules passes
# conf/prometheus/transmitter.rules.test.yml (every alert firing, and not firing where it must not).
# Skipped (77) without promtool (Debian package prometheus; tests/install-deps.sh installs it).
#   check-prometheus-rules.sh conf/prometheus/transmitter.rules.yml conf/prometheus/transmitter.rules.test.yml
set -euo pipefail
rules=$1 tests=$2
command -v promtool >/dev/null || { echo "promtool not found (Debian package prometheus)"; exit 77; }
promtool check rules "$rules"
# promtool resolves rule_files relative to the test file.
promtool test rules "$tests"
