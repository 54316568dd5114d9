# shellcheck shell=bash
# Docker for the 3D-env tests: sourced by .ci/run (bash, safe under `set -u` and `set -e`).
#
# Installs Docker (and mmdebstrap) if missing, starts ONE private dockerd, exports DOCKER_HOST,
# builds (or reuses) our dm_env_rpc server image offline and exports ALCHEMY_GYM_TEST_IMAGE.
# On any failure it prints a warning and returns: the docker tests then skip with a reason.
# The caller runs `alchemy_docker_cleanup` at exit, which stops that dockerd by its pid.
#
# Knobs: ALCHEMY_DOCKER_DIR (default ${TMPDIR:-/tmp}/alchemy-gym-docker; the image cache lives
# there, so later runs on the same machine reuse it), ALCHEMY_GYM_PYTHON (default python3).

ALCHEMY_DOCKER_DIR="${ALCHEMY_DOCKER_DIR:-${TMPDIR:-/tmp}/alchemy-gym-docker}"
ALCHEMY_DOCKER_STARTED_PID=""

_alchemy_docker_log() { echo "[docker-env] $*" >&2; }

_alchemy_docker_install() {
    local need=()
    command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
    command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
    [ "${#need[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
        _alchemy_docker_log "missing ${need[*]} and cannot apt-get install it here"
        return 1
    fi
    _alchemy_docker_log "installing ${need[*]} …"
    # keep apt from starting services (we start our own dockerd)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1
}

_alchemy_docker_ready() {
    DOCKER_HOST="unix://$ALCHEMY_DOCKER_DIR/docker.sock" "${ALCHEMY_GYM_PYTHON:-python3}" - <<'EOF' >/dev/null 2>&1
import docker
docker.from_env(timeout=3).ping()
EOF
}

_alchemy_docker_start() {
    local dir="$ALCHEMY_DOCKER_DIR" pid i
    mkdir -p "$dir" || return 1
    if [ -s "$dir/dockerd.pid" ]; then
        pid="$(cat "$dir/dockerd.pid")"
        if kill -0 "$pid" 2>/dev/null && _alchemy_docker_ready; then
            _alchemy_docker_log "reusing the running dockerd (pid $pid)"
            return 0
        fi
        rm -f "$dir/dockerd.pid" "$dir/docker.sock"
    fi
    dockerd --host="unix://$dir/docker.sock" --data-root="$dir/data" --exec-root="$dir/exec" \
        --pidfile="$dir/dockerd.pid" >"$dir/dockerd.log" 2>&1 &
    ALCHEMY_DOCKER_STARTED_PID=$!
    for i in $(seq 1 60); do
        if _alchemy_docker_ready; then
            _alchemy_docker_log "dockerd ready (pid $ALCHEMY_DOCKER_STARTED_PID) after ~$((i / 2)) s"
            return 0
        fi
        kill -0 "$ALCHEMY_DOCKER_STARTED_PID" 2>/dev/null || break
        sleep 0.5
    done
    _alchemy_docker_log "dockerd did not start; last lines of $dir/dockerd.log:"
    tail -n 15 "$dir/dockerd.log" >&2 || true
    return 1
}

alchemy_docker_cleanup() {
    local pid="${ALCHEMY_DOCKER_STARTED_PID:-}" i
    [ -n "$pid" ] || return 0
    if [ -n "${DOCKER_HOST:-}" ]; then  # leave no container of ours behind
        "${ALCHEMY_GYM_PYTHON:-python3}" - <<'EOF' >/dev/null 2>&1 || true
import docker
client = docker.from_env(timeout=10)
for c in client.containers.list(all=True, filters={"label": "alchemy-gym.managed"}):
    c.remove(force=True)
EOF
    fi
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null || true
    ALCHEMY_DOCKER_STARTED_PID=""
    return 0
}

alchemy_docker_env() {
    _alchemy_docker_install || return 1
    if ! "${ALCHEMY_GYM_PYTHON:-python3}" -c "import docker, grpc, dm_env_rpc" >/dev/null 2>&1; then
        _alchemy_docker_log "installing the Python docker SDK and dm-env-rpc …"
        "${ALCHEMY_GYM_PYTHON:-python3}" -m pip install -q "docker>=7.0" "dm-env-rpc>=1.1.6" "grpcio>=1.60" || return 1
    fi
    _alchemy_docker_start || return 1
    export DOCKER_HOST="unix://$ALCHEMY_DOCKER_DIR/docker.sock"
    local tag
    if ! tag="$("${ALCHEMY_GYM_PYTHON:-python3}" -m alchemy_gym.server.image)"; then
        _alchemy_docker_log "building the server image failed"
        return 1
    fi
    export ALCHEMY_GYM_TEST_IMAGE="$tag"
    _alchemy_docker_log "ALCHEMY_GYM_TEST_IMAGE=$tag"
    return 0
}

if ! alchemy_docker_env; then
    echo "WARNING: no Docker engine for the 3D-env tests: the tests marked 'docker' will be skipped" >&2
fi
