#!/bin/sh
# A compose node (docker-compose.yml, services `node-*`): on its first start it loads realistic
# synthetic records into its own PostgreSQL (CAGNET_NODE_DATABASE_URL), then it serves.
# An authority loading its own records runs `cagnet node import` instead (README.md).
set -eu
NODEDIR=/var/lib/cagnet/node
if [ ! -e "$NODEDIR/synthesised" ]; then
    cagnet node synth "$NODEDIR" --seed "${CAGNET_SYNTH_SEED:-1}"
    touch "$NODEDIR/synthesised"
fi
exec cagnet node serve "$NODEDIR"
