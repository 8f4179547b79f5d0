#!/bin/sh
# The compose network's one-shot setup (docker-compose.yml, service `init`): the network folder
# and one node folder per member, each step skipped when already done so that `up` can be re-run.
#   CAGNET_INIT_NETWORK_NAME           the network's name
#   CAGNET_INIT_COORDINATOR_ENDPOINT   host:port the coordinator listens on
#   CAGNET_INIT_MEMBERS                "GSS_CODE=host:port ..." in order; the first makes the linkage key
#   CAGNET_INIT_DIAL_OUT               "GSS_CODE ..." members whose nodes open no port: each holds a
#                                      connection to the coordinator and is asked on it (--dial-out)
# It runs as root only to hand the freshly made volumes to the cagnet user; every file it makes
# ends up owned by cagnet, keys mode 0600.
set -eu
NETDIR=/var/lib/cagnet/network
NODES=/var/lib/cagnet/nodes

if [ ! -e "$NETDIR/manifest.json" ]; then
    cagnet network init "$NETDIR" --name "$CAGNET_INIT_NETWORK_NAME" --coordinator-endpoint "$CAGNET_INIT_COORDINATOR_ENDPOINT"
fi
first=""
for member in $CAGNET_INIT_MEMBERS; do
    code=${member%%=*}
    endpoint=${member#*=}
    nodedir=$NODES/$code
    transport=""
    for dialling in ${CAGNET_INIT_DIAL_OUT:-}; do
        if [ "$dialling" = "$code" ]; then transport="--dial-out"; fi
    done
    if [ ! -e "$nodedir/node.toml" ]; then
        if [ -z "$first" ]; then
            cagnet node init "$nodedir" --network "$NETDIR" --authority "$code" --endpoint "$endpoint" ${transport:-}
        else
            # Members share the network linkage key; the coordinator's folder never holds it.
            cagnet node init "$nodedir" --network "$NETDIR" --authority "$code" --endpoint "$endpoint" \
                --linkage-key "$first/identity/linkage.key" ${transport:-}
        fi
    fi
    first=${first:-$nodedir}
done
chown -R cagnet:cagnet "$NETDIR" "$NODES"
cagnet network show "$NETDIR"
