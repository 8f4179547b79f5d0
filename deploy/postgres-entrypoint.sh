#!/bin/sh
# Start PostgreSQL for one node (or for the test suite), making the cluster on first start.
#   CAGNET_PG_USER, CAGNET_PG_DATABASE  the role and database made on first start (cagnet, cagnet)
#   CAGNET_PG_SOCKET_DIR                where the Unix socket goes (/run/cagnet-db; a volume shared with the node)
#   CAGNET_PG_LISTEN, CAGNET_PG_PORT    TCP addresses ('' = none, the default) and port (5432)
#   CAGNET_PG_HOST_AUTH                 the method for TCP connections (reject; the suite's server: trust)
# Local socket connections are trusted: only a container that mounts the socket folder reaches it.
set -eu
: "${PGDATA:=/var/lib/cagnet/postgres/data}"
: "${CAGNET_PG_USER:=cagnet}"
: "${CAGNET_PG_DATABASE:=cagnet}"
: "${CAGNET_PG_SOCKET_DIR:=/run/cagnet-db}"
: "${CAGNET_PG_LISTEN:=}"
: "${CAGNET_PG_PORT:=5432}"
: "${CAGNET_PG_HOST_AUTH:=reject}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb --pgdata="$PGDATA" --username="$CAGNET_PG_USER" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host="$CAGNET_PG_HOST_AUTH" >/dev/null
    if [ "$CAGNET_PG_DATABASE" != postgres ]; then
        echo "CREATE DATABASE \"$CAGNET_PG_DATABASE\" OWNER \"$CAGNET_PG_USER\";" |
            postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "cagnet-postgres: made the cluster in $PGDATA (role $CAGNET_PG_USER, database $CAGNET_PG_DATABASE)"
fi
exec postgres -D "$PGDATA" -c listen_addresses="$CAGNET_PG_LISTEN" -c port="$CAGNET_PG_PORT" \
    -c unix_socket_directories="$CAGNET_PG_SOCKET_DIR" "$@"
