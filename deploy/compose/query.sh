#!/bin/sh
# The CAG chair's joint supply map (docker-compose.yml, service `query`), saved as a signed
# bundle and then verified offline against the network's manifest.
set -eu
NETDIR=/var/lib/cagnet/network
BUNDLE=$NETDIR/bundles/supply-map.json
mkdir -p "$NETDIR/bundles"
cagnet query supply-map --network "$NETDIR" --out "$BUNDLE"
cagnet verify "$BUNDLE" --network "$NETDIR"
