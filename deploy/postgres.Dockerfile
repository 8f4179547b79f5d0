# PostgreSQL from Debian's packages, on the same base as the cagnet image, for a node's store
# where no postgres image can be pulled. Runs as the same uid as cagnet (10001), so the two can
# share a socket folder; by default it listens on that Unix socket only (no TCP port at all).
#
#   docker build -f deploy/postgres.Dockerfile --build-arg BASE_IMAGE=cagnet-base:bookworm -t cagnet-postgres .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG CAGNET_UID=10001
RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; \
    apt-get clean; rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid "${CAGNET_UID}" cagnet; \
    useradd --system --uid "${CAGNET_UID}" --gid cagnet --home-dir /var/lib/cagnet --shell /usr/sbin/nologin cagnet; \
    mkdir -p /var/lib/cagnet/postgres /run/cagnet-db; \
    chown cagnet:cagnet /var/lib/cagnet /var/lib/cagnet/postgres /run/cagnet-db; \
    chmod 0700 /var/lib/cagnet/postgres /run/cagnet-db

COPY deploy/postgres-entrypoint.sh /usr/local/bin/cagnet-postgres
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/cagnet/postgres/data
USER cagnet
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=5 \
    CMD pg_isready -q -h "${CAGNET_PG_LISTEN:-${CAGNET_PG_SOCKET_DIR:-/run/cagnet-db}}" -p "${CAGNET_PG_PORT:-5432}" -U "${CAGNET_PG_USER:-cagnet}"
ENTRYPOINT ["cagnet-postgres"]
