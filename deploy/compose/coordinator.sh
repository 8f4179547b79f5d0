#!/bin/sh
# The compose coordinator (docker-compose.yml, service `coordinator`): brings its databases to
# this image's schema (docs/migrations.md; on current ones this changes nothing), then serves on
# CAGNET_COMPOSE_LISTEN.
set -eu
NETDIR=/var/lib/cagnet/network
cagnet coordinator upgrade "$NETDIR"
exec cagnet coordinator serve "$NETDIR" --listen "$CAGNET_COMPOSE_LISTEN"
