#!/usr/bin/env bash
# Runs a RabbitMQ CLI tool against the broker that tests/env/rabbitmq.sh started in DIR.
#
#   tests/env/rabbitmqctl.sh DIR list_queues name messages_ready messages_unacknowledged
#   tests/env/rabbitmqctl.sh DIR --tool rabbitmq-diagnostics status
#   tests/env/rabbitmqctl.sh DIR --tool rabbitmq-queues quorum_status transmitter.approved
#
# It sets HOME (the Erlang cookie), RABBITMQ_NODENAME and ERL_EPMD_PORT for that node.
set -euo pipefail

LOG_TAG=rabbitmqctl
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 ]] || { echo "usage: $0 DIR [--tool rabbitmqctl|rabbitmq-diagnostics|rabbitmq-queues] ARGS..." >&2; exit 2; }
DIR=$(cd -- "$1" 2>/dev/null && pwd) || die "no such directory: $1"
shift
[[ -f "$DIR/ports" ]] || die "$DIR/ports missing: was the broker started with rabbitmq.sh start $DIR?"

tool=rabbitmqctl
if [[ "${1:-}" == --tool ]]; then
        tool=${2:?--tool needs a name}
        shift 2
fi
case "$tool" in
rabbitmqctl | rabbitmq-diagnostics | rabbitmq-queues | rabbitmq-plugins | rabbitmq-upgrade | rabbitmq-streams) ;;
*) die "unknown tool $tool" ;;
esac

# shellcheck source=/dev/null
. "$DIR/ports"
export HOME="$DIR"
export RABBITMQ_NODENAME="$NODENAME"
export RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf"
export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
export RABBITMQ_MNESIA_BASE="$DIR/mnesia"
export RABBITMQ_LOG_BASE="$DIR/log"
export ERL_EPMD_PORT="$EPMD_PORT"
exec "/usr/lib/rabbitmq/bin/$tool" -n "$NODENAME" "$@"
