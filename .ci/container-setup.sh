#!/usr/bin/env bash
# Makes this machine able to build and run the project's image without Docker Hub (docs/CONTAINER.md):
# podman, runc and debootstrap from Debian's packages; a containers.conf for this sandbox; a Debian bookworm base
# bootstrapped from the mirror apt uses; and on it a CPU "torch base" (Python 3.11, pip, the host's CA bundle,
# torch==2.13.0 from the wheel pip finds here) that stands in for pytorch/pytorch. Idempotent and cached: each
# step is skipped when its result is already there (the podman image store, and $MTL_CONTAINER_CACHE).
# Prints the variables the container test reads. Usage: .ci/container-setup.sh [--print-env]
set -euo pipefail

CACHE=${MTL_CONTAINER_CACHE:-/var/cache/mtl-container}
DEBIAN_IMAGE=localhost/mtl-debian:bookworm
TORCH_BASE=localhost/mtl-torch-cpu:2.13.0
CONF=$CACHE/containers.conf
PYTHON=${PYTHON:-python3.11}
log() { echo "container-setup: $*" >&2; }

print_env() {
    echo "export CONTAINERS_CONF=$CONF"
    echo "export MTL_TORCH_BASE=$TORCH_BASE"
}
if [[ ${1:-} == --print-env ]]; then print_env; exit 0; fi

# 1. Packages. crun 1.8 (podman's default here) fails with "cgroups in hybrid mode not supported"; runc works.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing podman runc debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
mkdir -p "$CACHE"

# 2. containers.conf, selected with CONTAINERS_CONF: runc, and ulimits this sandbox can grant (it cannot raise
# them, and podman's defaults ask for more; --ulimit host fails too). nofile is the hard limit we have.
nofile=$(ulimit -Hn)
[[ $nofile == unlimited ]] && nofile=1048576
cat > "$CONF.new" <<CONFEOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONFEOF
mv "$CONF.new" "$CONF"
export CONTAINERS_CONF=$CONF

# 3. Debian bookworm, bootstrapped from the mirror apt uses (the only registry of OS packages reachable here).
if ! podman image exists "$DEBIAN_IMAGE"; then
    if [[ ! -s $CACHE/bookworm-minbase.tar ]]; then
        mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
        mirror=${mirror:-$(awk '$1 == "deb" && $3 ~ /^bookworm/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
        mirror=${mirror:-http://deb.debian.org/debian}
        log "debootstrap bookworm from $mirror (about a minute)"
        rootfs=$(mktemp -d "$CACHE/rootfs.XXXX")
        debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
            bookworm "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -cf "$CACHE/bookworm-minbase.tar.new" .
        mv "$CACHE/bookworm-minbase.tar.new" "$CACHE/bookworm-minbase.tar"
        rm -rf "$rootfs"
    fi
    log "importing $DEBIAN_IMAGE"
    podman import --quiet "$CACHE/bookworm-minbase.tar" "$DEBIAN_IMAGE" >/dev/null
fi

# 4. The CPU torch base: what pytorch/pytorch is to the CUDA build. pip must trust the CA bundle this machine's
# traffic is signed with (copied from the host), Debian's pip 23.0 cannot build seqeval's sdist (upgraded), and
# torch comes from the wheel on this machine's disk (a plain `torch` from the index would be a multi-GB CUDA build).
if ! podman image exists "$TORCH_BASE"; then
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    wheel=$(ls "$CACHE"/wheels/torch-2.13.0*-cp311-*.whl 2>/dev/null | head -1 || true)
    if [[ -z $wheel ]]; then
        log "finding the torch==2.13.0 wheel"
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$CACHE/wheels" "torch==2.13.0"
        wheel=$(ls "$CACHE"/wheels/torch-2.13.0*-cp311-*.whl | head -1)
    fi
    cp "$wheel" "$context/"
    cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
    cat > "$context/Containerfile" <<CFEOF
FROM $DEBIAN_IMAGE
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt PIP_BREAK_SYSTEM_PACKAGES=1 \\
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
COPY $(basename "$wheel") /tmp/
RUN python -m pip install --quiet "pip>=24" && python -m pip install --quiet /tmp/$(basename "$wheel") \\
    && rm /tmp/*.whl && python -c "import torch; print('torch', torch.__version__)"
CFEOF
    log "building $TORCH_BASE"
    podman build --quiet --network host --format docker -t "$TORCH_BASE" "$context" >/dev/null
fi
log "ready: $TORCH_BASE"
print_env
