# One image for every cagnet process: a node, the coordinator, and the one-shot commands
# (`cagnet network init`, `cagnet query ...`). See docs/deploy.md.
#
#   docker build -t cagnet .                                        # where Docker Hub is reachable
#   make image CAGNET_BASE_IMAGE=cagnet-base:bookworm               # offline: a local base and wheelhouse
#
# BASE_IMAGE needs Python 3.11 with venv and CA certificates, e.g. a Debian bookworm made with
# `mmdebstrap --include=python3,python3-venv,ca-certificates bookworm - | docker import - NAME`.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG CAGNET_UID=10001
ENV PATH=/opt/cagnet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY requirements/runtime.lock /tmp/cagnet/runtime.lock
COPY deploy/wheels/ /tmp/cagnet/wheels/
COPY pyproject.toml README.md /tmp/cagnet/src/
COPY shared /tmp/cagnet/src/shared
COPY node /tmp/cagnet/src/node
COPY coordinator /tmp/cagnet/src/coordinator
COPY cagnet /tmp/cagnet/src/cagnet

# Exactly the locked runtime set, every file checked against its hash, then cagnet with no
# dependency resolution at all (as `make` installs it). A filled wheelhouse means no index is asked.
RUN set -eu; \
    python3 -m venv /opt/cagnet; \
    if ls /tmp/cagnet/wheels/*.whl >/dev/null 2>&1; then \
        /opt/cagnet/bin/pip install --no-cache-dir --no-index --find-links /tmp/cagnet/wheels \
            --require-hashes --no-deps -r /tmp/cagnet/runtime.lock; \
        /opt/cagnet/bin/pip install --no-cache-dir --no-index --no-deps /tmp/cagnet/wheels/cagnet-*.whl; \
    else \
        /opt/cagnet/bin/pip install --no-cache-dir --require-hashes --no-deps -r /tmp/cagnet/runtime.lock; \
        /opt/cagnet/bin/pip install --no-cache-dir --no-deps /tmp/cagnet/src; \
    fi; \
    /opt/cagnet/bin/pip check; \
    rm -rf /tmp/cagnet; \
    groupadd --system --gid "${CAGNET_UID}" cagnet; \
    useradd --system --uid "${CAGNET_UID}" --gid cagnet --home-dir /var/lib/cagnet --shell /usr/sbin/nologin cagnet; \
    mkdir -p /var/lib/cagnet/network /var/lib/cagnet/node /run/cagnet-db; \
    chown cagnet:cagnet /var/lib/cagnet /var/lib/cagnet/network /var/lib/cagnet/node /run/cagnet-db; \
    chmod 0700 /var/lib/cagnet/network /var/lib/cagnet/node /run/cagnet-db

USER cagnet
WORKDIR /var/lib/cagnet

# The gRPC health service over mTLS, as the party whose folder is mounted: a node by default;
# the coordinator's container sets CAGNET_HEALTH="--network /var/lib/cagnet/network".
ENV CAGNET_HEALTH="--node /var/lib/cagnet/node"
HEALTHCHECK --interval=10s --timeout=30s --start-period=120s --retries=3 \
    CMD cagnet health $CAGNET_HEALTH

ENTRYPOINT ["cagnet"]
CMD ["--help"]
