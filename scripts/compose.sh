#!/usr/bin/env bash
# Build and run cagnet's containers where no public image registry is reachable (docs/deploy.md).
#   scripts/compose.sh engine   a Docker engine answering (as root: Debian's docker.io, started with vfs)
#   scripts/compose.sh base     the base image $CAGNET_BASE_IMAGE, made with mmdebstrap if missing
#   scripts/compose.sh wheels   deploy/wheels: the hash-checked runtime wheels and a wheel of this tree
#   scripts/compose.sh images   the cagnet and cagnet-postgres images on that base
#   scripts/compose.sh test     all of the above, then docker-compose.yml up, the chair's query
#                               checked (verified, answered by all six), and everything torn down
# Settings: CAGNET_BASE_IMAGE (cagnet-base:bookworm), CAGNET_COMPOSE_PORTS (271: ports 27100-27106),
# CAGNET_COMPOSE_PROJECT (cagnet-compose-test), CAGNET_COMPOSE_KEEP=1 leaves the test's containers up.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${CAGNET_BASE_IMAGE:-cagnet-base:bookworm}
PROJECT=${CAGNET_COMPOSE_PROJECT:-cagnet-compose-test}
PYTHON=${PYTHON:-.venv/bin/python}
export CAGNET_IMAGE=${CAGNET_IMAGE:-cagnet:latest}
export CAGNET_POSTGRES_IMAGE=${CAGNET_POSTGRES_IMAGE:-cagnet-postgres:latest}
export CAGNET_COMPOSE_PORTS=${CAGNET_COMPOSE_PORTS:-271}
# Removing containers and volumes under the vfs storage driver is slow on a busy machine.
export COMPOSE_HTTP_TIMEOUT=${COMPOSE_HTTP_TIMEOUT:-600}
BUILD_LOG=${TMPDIR:-/tmp}/cagnet-image-build.log

say() { printf '== [%ds] %s\n' "$SECONDS" "$*"; }
die() { printf 'compose: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
    is_root && command -v apt-get >/dev/null || die "need $* (as root: apt-get install $*)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

engine() {
    if docker info >/dev/null 2>&1; then return; fi
    is_root || die "no Docker engine answers, and starting one needs root (docs/deploy.md)"
    command -v dockerd >/dev/null || { say "installing Debian's docker.io"; apt_install docker.io; }
    say "starting dockerd --storage-driver=vfs (log: /var/log/cagnet-dockerd.log)"
    nohup dockerd --storage-driver=vfs >/var/log/cagnet-dockerd.log 2>&1 &
    STARTED_DOCKERD=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
    die "dockerd did not answer within 60 s; see /var/log/cagnet-dockerd.log"
}

COMPOSE=()
compose() {
    # Debian bookworm packages Compose v1 (docker-compose 1.29); a v2 plugin is used where installed.
    if [ ${#COMPOSE[@]} = 0 ]; then
        if docker compose version >/dev/null 2>&1; then
            COMPOSE=(docker compose -p "$PROJECT")
        else
            command -v docker-compose >/dev/null || { say "installing Debian's docker-compose"; apt_install docker-compose; }
            COMPOSE=(docker-compose -p "$PROJECT")
        fi
    fi
    "${COMPOSE[@]}" "$@"
}

base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then return; fi
    command -v mmdebstrap >/dev/null || { say "installing mmdebstrap"; apt_install mmdebstrap; }
    say "making $BASE_IMAGE with mmdebstrap (Debian bookworm, python3, python3-venv, ca-certificates)"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates bookworm - |
        docker import - "$BASE_IMAGE" >/dev/null
}

wheels() {
    [ -x "$PYTHON" ] || die "$PYTHON is missing: run make .venv/.installed first"
    say "filling deploy/wheels from requirements/runtime.lock (hash-checked) and this tree"
    rm -f deploy/wheels/*.whl
    local arch
    arch=$(uname -m)
    # The image's Python is 3.11 on Linux: pick wheels for it, whatever Python runs this script.
    PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS='' "$PYTHON" -m pip download --quiet --require-hashes --no-deps \
        --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        --platform "manylinux_2_28_$arch" --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" \
        --platform any -d deploy/wheels -r requirements/runtime.lock
    "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w deploy/wheels . >/dev/null
}

images() {
    engine
    base
    wheels
    say "building $CAGNET_IMAGE and $CAGNET_POSTGRES_IMAGE on $BASE_IMAGE (log: $BUILD_LOG)"
    # Host networking for the build too: pip (without a wheelhouse) and apt-get reach their servers.
    {
        docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$CAGNET_IMAGE" . &&
            docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$CAGNET_POSTGRES_IMAGE" \
                -f deploy/postgres.Dockerfile .
    } >"$BUILD_LOG" 2>&1 || { tail -30 "$BUILD_LOG"; die "an image did not build"; }
}

teardown() {
    if [ "${CAGNET_COMPOSE_KEEP:-}" = 1 ]; then
        say "left running (CAGNET_COMPOSE_KEEP=1): docker-compose -p $PROJECT down -v"
        return
    fi
    say "tearing down"
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    # An engine this run started goes too: left running, it would answer the test suite's probe
    # for testcontainers, and a machine should be left as it was found.
    if [ -n "${STARTED_DOCKERD:-}" ]; then
        say "stopping the dockerd this run started"
        kill "$STARTED_DOCKERD" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 1; done
    fi
}

run_test() {
    images
    compose down -v --remove-orphans >/dev/null 2>&1 || true  # a previous run's leftovers
    trap teardown EXIT
    say "docker-compose up: init, six PostgreSQL, six nodes, the coordinator, the chair's query"
    # `up` returns once the query has started, that is once every node and the coordinator is healthy.
    if ! timeout 1800 "${COMPOSE[@]}" up -d --no-build; then
        compose ps
        compose logs --tail=30
        die "the network did not come up"
    fi
    compose ps
    local query status
    query=$(compose ps -q query)
    [ -n "$query" ] || die "the query service was not started"
    status=$(timeout 600 docker wait "$query") || die "the query did not finish within 10 minutes"
    say "the chair's query (exit $status)"
    local output
    output=$(compose logs --no-color query | grep -v '^Attaching to' | sed 's/^[^|]*| //')
    printf '%s\n' "$output"
    [ "$status" = 0 ] || { compose logs --tail=30; die "the query failed"; }
    grep -q "verified: supply-map bundle" <<<"$output" || die "no verified bundle"
    grep -q "6 signed contributions" <<<"$output" || die "not answered by all six members"
    grep -q "missing: none" <<<"$output" || die "a member is missing from the answer"
    say "compose test passed: a verified joint supply map answered by all six nodes"
}

case "${1:-}" in
engine) engine ;;
base) engine && base ;;
wheels) wheels ;;
images) images ;;
test) run_test ;;
*) die "usage: scripts/compose.sh engine|base|wheels|images|test" ;;
esac
