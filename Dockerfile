# hermes-agent image: the application, s6-overlay v3 as PID 1, and the hermes-boot programs.
#
# Production (defaults): the four Rust programs compiled in a rust:1-bookworm stage,
# s6-overlay v3.2.3.2 downloaded from GitHub and checked against the official sha256
# sums, hermes-agent 0.19.0 installed from PyPI into /opt/hermes/.venv with every
# distribution pinned by hash (docker/app/requirements.txt).
#
#   docker build -t hermes-agent .
#
# Offline, air-gapped and test builds select other sources with build arguments
# (docker/README.md has the full table):
#
#   BASE_IMAGE            image every runtime stage starts from (default debian:13.4)
#   RUST_BUILDER_IMAGE    image of the compile stage; set it to BASE_IMAGE when
#                         BINARIES=prebuilt, so no unavailable image is needed
#   BINARIES              build | prebuilt   (prebuilt: PREBUILT_DIR in the context
#                         holds the four release binaries, of the image's architecture)
#   TARGETARCH            amd64 | arm64: the image's architecture (BuildKit sets it;
#                         else the build machine's, from dpkg). It picks the
#                         s6-overlay tarball and its pinned sha256, and prebuilt
#                         binaries of another architecture are refused.
#   S6_OVERLAY_SOURCE     download | local   (local: S6_OVERLAY_LOCAL_DIR in the
#                         context holds the release tarballs and a SHA256SUMS file)
#   HERMES_APP            pypi | wheels | none   (wheels: docker/app/wheels/ holds
#                         every wheel of docker/app/requirements.txt; none: the
#                         application comes from BASE_IMAGE or a later layer)
#   HERMES_AGENT_VERSION  the hermes-agent release; must match the lock file
#   HERMES_TEST_FIXTURES  0 | 1   (1: the Chromium double, a migration-helper double
#                         and a decoy PATH program used by the container suite)
#
# Only the classic builder's syntax is used, and the classic builder builds every
# stage: each stage therefore starts from an image that is available in every mode,
# and does its downloading inside a RUN that only the selected mode executes.

ARG BASE_IMAGE=debian:13.4
ARG RUST_BUILDER_IMAGE=rust:1-bookworm
# --- the four Rust programs ----------------------------------------------------
FROM ${RUST_BUILDER_IMAGE} AS programs
ARG BINARIES=build
# The image's architecture: given by BuildKit, else the build machine's.
ARG TARGETARCH
ARG PREBUILT_DIR=target/docker-bin
WORKDIR /src
COPY . /src
RUN set -eu; \
    progs="stage2-setup supervise-perms reconcile-profiles main-wrapper hermes-boot-doctor"; \
    mkdir -p /out; \
    case "$BINARIES" in \
      build) \
        locked=; if [ -f Cargo.lock ]; then locked=--locked; fi; \
        cargo build --release $locked -p stage2-setup -p supervise-perms -p reconcile-profiles -p hermes-boot-doctor; \
        for p in stage2-setup supervise-perms reconcile-profiles hermes-boot-doctor; do cp "target/release/$p" /out/; done; \
        # main-wrapper starts before every command and docker exec: linked statically, it skips \
        # the dynamic loader. The explicit target keeps the flag off build scripts and proc macros. \
        host=$(rustc -vV | sed -n 's/^host: //p'); \
        RUSTFLAGS="-C target-feature=+crt-static" cargo build --release $locked -p main-wrapper --target "$host"; \
        cp "target/$host/release/main-wrapper" /out/ ;; \
      prebuilt) \
        debarch=${TARGETARCH:-$(dpkg --print-architecture)}; \
        case "$debarch" in \
          amd64) arch=x86_64; machine=3e00 ;; \
          arm64) arch=aarch64; machine=b700 ;; \
          *) echo "BINARIES=prebuilt: architecture $debarch is not supported (amd64 or arm64)" >&2; exit 1 ;; \
        esac; \
        for p in $progs; do \
          if [ ! -f "$PREBUILT_DIR/$p" ]; then \
            echo "BINARIES=prebuilt: $PREBUILT_DIR/$p is missing from the build context" >&2; exit 1; \
          fi; \
          got=$(od -An -tx1 -j18 -N2 "$PREBUILT_DIR/$p" | tr -d ' \n'); \
          if [ "$got" != "$machine" ]; then \
            echo "BINARIES=prebuilt: $PREBUILT_DIR/$p is not an $arch program (ELF machine $got, want $machine for $debarch); build it with --target $arch-unknown-linux-gnu" >&2; exit 1; \
          fi; \
          cp "$PREBUILT_DIR/$p" /out/; \
        done ;; \
      *) echo "BINARIES must be build or prebuilt, not '$BINARIES'" >&2; exit 1 ;; \
    esac; \
    chmod 0755 /out/*

# --- s6-overlay ------------------------------------------------------------------
FROM ${BASE_IMAGE} AS s6-overlay
ARG S6_OVERLAY_SOURCE=download
ARG S6_OVERLAY_VERSION=3.2.3.2
ARG S6_OVERLAY_NOARCH_SHA256=5379750ed30a84bbd2e2dd74847ba6b5bd29cd0b2e3ea2ec58049b57eb2eda12
ARG S6_OVERLAY_X86_64_SHA256=e6befcc96a437a3831386ecfc51808c5d3e939dc5fe3c02ae9284599e8aa2408
ARG S6_OVERLAY_AARCH64_SHA256=b17f17a82e7a515c682a91edaf2ffdabb73f891981b6c1fd712115693a2f8b4c
ARG S6_OVERLAY_LOCAL_DIR=docker/s6-overlay
ARG TARGETARCH
COPY ${S6_OVERLAY_LOCAL_DIR}/ /tmp/s6-local/
# /out is laid over the final image's root.
RUN set -eu; \
    mkdir -p /out; \
    debarch=${TARGETARCH:-$(dpkg --print-architecture)}; \
    case "$debarch" in \
      amd64) arch=x86_64; arch_sha=$S6_OVERLAY_X86_64_SHA256 ;; \
      arm64) arch=aarch64; arch_sha=$S6_OVERLAY_AARCH64_SHA256 ;; \
      *) echo "no s6-overlay build for architecture $debarch" >&2; exit 1 ;; \
    esac; \
    if ! command -v xz >/dev/null; then \
      apt-get update; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends xz-utils; \
    fi; \
    case "$S6_OVERLAY_SOURCE" in \
      download) \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl; \
        base="https://github.com/just-containers/s6-overlay/releases/download/v${S6_OVERLAY_VERSION}"; \
        cd /tmp; \
        curl -fsSL --retry 3 -o s6-overlay-noarch.tar.xz "$base/s6-overlay-noarch.tar.xz"; \
        curl -fsSL --retry 3 -o "s6-overlay-$arch.tar.xz" "$base/s6-overlay-$arch.tar.xz"; \
        printf '%s  %s\n' "$S6_OVERLAY_NOARCH_SHA256" s6-overlay-noarch.tar.xz "$arch_sha" "s6-overlay-$arch.tar.xz" \
          | sha256sum -c -; \
        tar -C /out -Jxpf s6-overlay-noarch.tar.xz; tar -C /out -Jxpf "s6-overlay-$arch.tar.xz" ;; \
      local) \
        cd /tmp/s6-local; \
        [ -f SHA256SUMS ] || { echo "S6_OVERLAY_SOURCE=local: $S6_OVERLAY_LOCAL_DIR/SHA256SUMS missing" >&2; exit 1; }; \
        for t in s6-overlay-noarch.tar.xz "s6-overlay-$arch.tar.xz"; do \
          [ -f "$t" ] || { echo "S6_OVERLAY_SOURCE=local: $S6_OVERLAY_LOCAL_DIR/$t missing" >&2; exit 1; }; \
          grep -E " [* ]?$t\$" SHA256SUMS > /tmp/s6-sum || { echo "S6_OVERLAY_SOURCE=local: SHA256SUMS lists no $t" >&2; exit 1; }; \
          sha256sum -c /tmp/s6-sum; \
          tar -C /out -Jxpf "$t"; \
        done ;; \
      *) echo "S6_OVERLAY_SOURCE must be download or local, not '$S6_OVERLAY_SOURCE'" >&2; exit 1 ;; \
    esac; \
    installed=$(ls -d /out/package/admin/s6-overlay-[0-9]* | sed 's|.*/s6-overlay-||'); \
    case "$installed" in \
      3.2.3.2|3.2.3.0) ;; \
      *) echo "s6-overlay $installed is not a version this image supports (3.2.3.2, 3.2.3.0)" >&2; exit 1 ;; \
    esac; \
    echo "$installed" > /out/.s6-overlay-version

# --- the image ---------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG HERMES_APP=pypi
ARG HERMES_AGENT_VERSION=0.19.0
ARG HERMES_TEST_FIXTURES=0

COPY --from=s6-overlay /out/ /
COPY --from=programs /out/ /opt/hermes/docker/bin/
COPY docker/app/ /tmp/app/
COPY docker/rootfs/ /
COPY docker/cont-init.d/ /etc/cont-init.d/
COPY docker/s6-rc.d/ /etc/s6-overlay/s6-rc.d/
COPY docker/user-bundles.d/ /etc/s6-overlay/user-bundles.d/
COPY docker/SOUL.md /opt/hermes/docker/SOUL.md
COPY docker/test-fixtures/ /tmp/test-fixtures/

RUN set -eu; \
    s6v=$(cat /.s6-overlay-version); rm /.s6-overlay-version; \
    # 3.2.3.0 reads user bundles only from s6-rc.d (3.2.3.2 reads user-bundles.d and \
    # rewrites s6-rc.d/user/type under /etc at every boot when a bundle is there). \
    if [ "$s6v" = 3.2.3.0 ]; then \
      mkdir -p /etc/s6-overlay/s6-rc.d/user; \
      cp -R /etc/s6-overlay/user-bundles.d/user/. /etc/s6-overlay/s6-rc.d/user/; \
      rm -rf /etc/s6-overlay/user-bundles.d; \
    fi; \
    groupadd --gid 10000 hermes; \
    useradd --uid 10000 --gid 10000 --home-dir /opt/data --no-create-home --shell /bin/sh hermes; \
    mkdir -p /opt/data /opt/hermes/bin /opt/hermes/docker/bin /opt/hermes/tools /etc/hermes; \
    chown hermes:hermes /opt/data; \
    # A run without root (any --user) finds its own passwd entry through libnss-extrausers, in the \
    # directory stage2-setup writes under /run; no set-user-id program is left that would believe it. \
    # /run is root:nogroup 3777 so that s6-overlay's preinit accepts it for any uid and gid \
    # without a set-user-id s6-overlay-suexec (no-new-privileges); a root boot makes it \
    # root:root 0755 before /init (nss_entry.rs says why each bit). \
    apt-get update; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libnss-extrausers; \
    rm -rf /var/lib/apt/lists/*; \
    sed -i -E 's/^(passwd|group):([^#]*[^[:space:]#])/\1:\2 extrausers/' /etc/nsswitch.conf; \
    grep -Eq '^passwd:.* extrausers' /etc/nsswitch.conf && grep -Eq '^group:.* extrausers' /etc/nsswitch.conf; \
    rm -rf /var/lib/extrausers; ln -s /run/hermes-boot/nss /var/lib/extrausers; \
    chgrp nogroup /run; chmod 3777 /run; \
    ln -sf /opt/hermes/docker/bin/main-wrapper /opt/hermes/bin/hermes; \
    ln -sf /opt/hermes/docker/bin/hermes-boot-doctor /opt/hermes/bin/hermes-boot-doctor; \
    ln -sf /opt/hermes/docker/bin/main-wrapper /opt/hermes/docker/main-wrapper.sh; \
    ln -sf /opt/hermes/docker/bin/main-wrapper /opt/hermes/docker/entrypoint-dispatch.sh; \
    ln -sf /opt/hermes/docker/bin/stage2-setup /opt/hermes/docker/stage2-hook.sh; \
    case "$HERMES_APP" in \
      pypi|wheels) sh /tmp/app/install-app "$HERMES_APP" "$HERMES_AGENT_VERSION" ;; \
      none) \
        echo "# HERMES_APP=none: no application in this image; list its subcommands here (MW-10)." \
          > /etc/hermes/cli-subcommands ;; \
      *) echo "HERMES_APP must be pypi, wheels or none, not '$HERMES_APP'" >&2; exit 1 ;; \
    esac; \
    case "$HERMES_TEST_FIXTURES" in \
      0) ;; \
      1) sh /tmp/test-fixtures/install ;; \
      *) echo "HERMES_TEST_FIXTURES must be 0 or 1, not '$HERMES_TEST_FIXTURES'" >&2; exit 1 ;; \
    esac; \
    rm -rf /tmp/app /tmp/test-fixtures; \
    chown -R root:root /opt/hermes /etc/hermes; \
    chmod -R go-w /opt/hermes /etc/hermes; \
    chmod 0755 /opt/hermes/docker/bin/* /usr/bin/tini; \
    find / -xdev -type f -perm /6000 ! -name s6-overlay-suexec -exec chmod ug-s {} +

# PATH holds only root-owned directories: root (docker exec, cont-init) never runs
# a program the runtime user planted. The runtime user's /opt/data/.local/bin is
# added for its own processes by main-wrapper and the exec shim, and for its
# login shells by /etc/profile.d/hermes.sh.
# s6-overlay settings (docker/README.md explains each value):
#   S6_BEHAVIOUR_IF_STAGE2_FAILS=2  a failing cont-init step stops the container
#   S6_CMD_RECEIVE_SIGNALS=1        docker stop signals the command, whose exit status
#                                   becomes the container's
#   S6_SERVICES_GRACETIME=200       stage 3's waits after every service is already down:
#   S6_KILL_GRACETIME=200           200 ms instead of 3 s each (docker stop 3.6 s -> 0.8 s)
ENV HERMES_HOME=/opt/data \
    HERMES_WRITE_SAFE_ROOT=/opt/data:/tmp/hermes-files \
    HERMES_DISABLE_LAZY_INSTALLS=1 \
    PLAYWRIGHT_BROWSERS_PATH=/opt/hermes/tools \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    S6_BEHAVIOUR_IF_STAGE2_FAILS=2 \
    S6_CMD_RECEIVE_SIGNALS=1 \
    S6_SERVICES_GRACETIME=200 \
    S6_KILL_GRACETIME=200 \
    PATH=/opt/hermes/bin:/opt/hermes/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

LABEL org.opencontainers.image.title="hermes-agent" \
      org.opencontainers.image.description="hermes-agent under s6-overlay v3 with the hermes-boot boot layer" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="0.19.0"

EXPOSE 9119
VOLUME /opt/data
# hermes-boot-doctor's checks without the walk of the volume: about 20 ms inside the container.
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/opt/hermes/docker/bin/hermes-boot-doctor", "--quick"]
ENTRYPOINT ["/opt/hermes/docker/bin/main-wrapper"]
CMD []
