# Sourced by e2e/cluster/cluster.sh: images built offline with buildah (FROM
# scratch plus binaries built on this machine), kept as OCI archives in the
# cache and imported into the cluster's containerd.

IMAGE_CACHE="${PLEXUS_CACHE:-/var/cache/plexus}/images"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
# Every image the project builds (stages of e2e/images/*Dockerfile).
PROJECT_IMAGES=(test-server toolbox proxy operator webhook)

buildah_cmd() {
    # vfs and chroot isolation: no overlay mounts or user namespaces needed.
    buildah --root "$IMAGE_CACHE/buildah" --runroot "$RUN_DIR/buildah" --storage-driver vfs "$@"
}

# oci_archive NAME CONTEXT DOCKERFILE TARGET: builds the TARGET stage of
# DOCKERFILE with CONTEXT and writes it as $IMAGE_CACHE/<short name>.tar,
# named NAME (as containerd will look it up).
oci_archive() {
    local name=$1 context=$2 dockerfile=$3 target=$4
    local archive="$IMAGE_CACHE/${target}.tar"
    mkdir -p "$IMAGE_CACHE" "$RUN_DIR/buildah"
    BUILDAH_ISOLATION=chroot buildah_cmd bud --quiet --layers=false --target "$target" \
        -f "$dockerfile" -t "$name" "$context" >/dev/null ||
        die "buildah could not build $name"
    rm -f "$archive"
    buildah_cmd push --quiet "$name" "oci-archive:$archive:$name" >/dev/null ||
        die "buildah could not write $archive"
    buildah_cmd rmi --force "$name" >/dev/null 2>&1 || true
    echo "$archive"
}

# The sandbox ("pause") image containerd starts every pod with. It cannot be
# pulled here, so it is a tiny static program of our own.
build_pause_image() {
    [[ -f $IMAGE_CACHE/pause.tar ]] && return 0
    local work
    work=$(mktemp -d)
    gcc -static -O2 -o "$work/pause" "$HERE/pause.c" || die "compiling pause.c"
    printf 'FROM scratch AS pause\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$work/Dockerfile"
    oci_archive "$PAUSE_IMAGE" "$work" "$work/Dockerfile" pause >/dev/null
    rm -rf "$work"
}

# The project's images, from e2e/images/prebuilt.Dockerfile with binaries
# built here: static glibc binaries, since no musl target can be installed.
build_project_images() {
    local tag context
    tag=$(image_tag)
    context=$(mktemp -d)
    log "building the test-server, the proxy, the operator and the webhook (release, static)"
    (cd "$REPO_ROOT" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --quiet --release --locked --target x86_64-unknown-linux-gnu \
            -p plexus-e2e --bin test-server -p plexus-proxy --bin plexus-proxy \
            -p plexus-operator --bin plexus-operator -p plexus-webhook --bin plexus-webhook) ||
        die "cargo build of the project's binaries failed"
    local binary
    for binary in test-server plexus-proxy plexus-operator plexus-webhook; do
        cp "$REPO_ROOT/target/x86_64-unknown-linux-gnu/release/$binary" "$context/"
    done
    cp /bin/busybox "$context/busybox"
    "$REPO_ROOT/e2e/images/nft-root.sh" "$context/nft-root" || die "collecting nft for the proxy image"
    local image
    for image in "${PROJECT_IMAGES[@]}"; do
        log "building image plexus/$image:$tag"
        oci_archive "docker.io/plexus/$image:$tag" "$context" "$REPO_ROOT/e2e/images/prebuilt.Dockerfile" "$image" >/dev/null
    done
    rm -rf "$context"
}

# The tag of every project image: the workspace version.
image_tag() {
    "$REPO_ROOT/e2e/images/tag.sh"
}

load_project_images() {
    local tag archive
    tag=$(image_tag)
    local image
    for image in "${PROJECT_IMAGES[@]}"; do
        ctr_k8s images import "$IMAGE_CACHE/$image.tar" >/dev/null || die "importing $IMAGE_CACHE/$image.tar into the cluster"
    done
    log "images ${PROJECT_IMAGES[*]} (plexus/<name>:$tag) are in the cluster"
}
