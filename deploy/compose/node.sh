#!/bin/sh
# A compose node (docker-compose.yml, services `node-*`): brings its database to this image's
# schema (docs/migrations.md), on its first start loads realistic synthetic records into its own
# PostgreSQL (CAGNET_NODE_DATABASE_URL), then serves.
# An authority loading its own records runs `cagnet node import` instead (README.md).
set -eu
NODEDIR=/var/lib/cagnet/node
# A newer image refuses an older database until it is upgraded; on a current one this changes nothing.
cagnet node upgrade "$NODEDIR"
if [ ! -e "$NODEDIR/synthesised" ]; then
    cagnet node synth "$NODEDIR" --seed "${CAGNET_SYNTH_SEED:-1}"
    touch "$NODEDIR/synthesised"
fi
exec cagnet node serve "$NODEDIR"
