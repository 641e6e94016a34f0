# hermes-agent image boot layer: the hermes-boot programs under s6-overlay v3.
#
# Production (defaults): Rust programs compiled in a rust:1-bookworm stage,
# s6-overlay v3.2.3.0 downloaded from GitHub and checked against pinned sha256
# sums, application expected from the base image or a later layer.
#
#   docker build -t hermes-agent .
#
# Offline / air-gapped / test builds select other sources with build
# arguments (see docker/README.md):
#
#   BASE_IMAGE           image every runtime stage starts from (default debian:13.4)
#   RUST_BUILDER_IMAGE   image of the compile stage; set it to BASE_IMAGE when
#                        BINARIES=prebuilt, so no unavailable image is needed
#   BINARIES             build | prebuilt   (prebuilt: PREBUILT_DIR in the context
#                        holds the four release binaries)
#   S6_OVERLAY_SOURCE    download | local | standin
#                        local: tarballs and SHA256SUMS placed in docker/s6-overlay/
#                        standin: Debian's s6 + execline and a small /init
#                        stand-in (test images only)
#   HERMES_APP           none | test-double   (test-double: the fake hermes CLI,
#                        seed files and Chromium used by the container suite)
#
# Only the classic builder's syntax is used, and the classic builder builds
# every stage: each stage therefore starts from an image that is available in
# every mode, and does its downloading inside a RUN that only the selected
# mode executes.

ARG BASE_IMAGE=debian:13.4
ARG RUST_BUILDER_IMAGE=rust:1-bookworm

# --- the four Rust programs ----------------------------------------------------
FROM ${RUST_BUILDER_IMAGE} AS programs
ARG BINARIES=build
ARG PREBUILT_DIR=target/docker-bin
WORKDIR /src
COPY . /src
RUN set -eu; \
    progs="stage2-setup supervise-perms reconcile-profiles main-wrapper"; \
    mkdir -p /out; \
    case "$BINARIES" in \
      build) \
        locked=; if [ -f Cargo.lock ]; then locked=--locked; fi; \
        cargo build --release $locked \
          -p stage2-setup -p supervise-perms -p reconcile-profiles -p main-wrapper; \
        for p in $progs; do cp "target/release/$p" /out/; done ;; \
      prebuilt) \
        for p in $progs; do \
          if [ ! -f "$PREBUILT_DIR/$p" ]; then \
            echo "BINARIES=prebuilt: $PREBUILT_DIR/$p is missing from the build context" >&2; exit 1; \
          fi; \
          cp "$PREBUILT_DIR/$p" /out/; \
        done ;; \
      *) echo "BINARIES must be build or prebuilt, not '$BINARIES'" >&2; exit 1 ;; \
    esac; \
    chmod 0755 /out/*

# --- s6-overlay (or its offline stand-in) -------------------------------------
FROM ${BASE_IMAGE} AS s6-overlay
ARG S6_OVERLAY_SOURCE=download
ARG S6_OVERLAY_VERSION=3.2.3.0
ARG S6_OVERLAY_NOARCH_SHA256=b720f9d9340efc8bb07528b9743813c836e4b02f8693d90241f047998b4c53cf
ARG S6_OVERLAY_X86_64_SHA256=a93f02882c6ed46b21e7adb5c0add86154f01236c93cd82c7d682722e8840563
ARG S6_OVERLAY_AARCH64_SHA256=0952056ff913482163cc30e35b2e944b507ba1025d78f5becbb89367bf344581
COPY docker/s6-overlay/ /tmp/s6-local/
COPY docker/s6-overlay-standin/ /tmp/s6-standin/
# /out is laid over the final image's root.
RUN set -eu; \
    mkdir -p /out; \
    case "$(dpkg --print-architecture)" in \
      amd64) arch=x86_64; arch_sha=$S6_OVERLAY_X86_64_SHA256 ;; \
      arm64) arch=aarch64; arch_sha=$S6_OVERLAY_AARCH64_SHA256 ;; \
      *) arch=; arch_sha= ;; \
    esac; \
    extract() { tar -C /out -Jxpf "$1"; }; \
    case "$S6_OVERLAY_SOURCE" in \
      download) \
        [ -n "$arch" ] || { echo "no s6-overlay build for $(dpkg --print-architecture)" >&2; exit 1; }; \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl xz-utils; \
        base="https://github.com/just-containers/s6-overlay/releases/download/v${S6_OVERLAY_VERSION}"; \
        cd /tmp; \
        curl -fsSLo s6-overlay-noarch.tar.xz "$base/s6-overlay-noarch.tar.xz"; \
        curl -fsSLo "s6-overlay-$arch.tar.xz" "$base/s6-overlay-$arch.tar.xz"; \
        printf '%s  %s\n' "$S6_OVERLAY_NOARCH_SHA256" s6-overlay-noarch.tar.xz "$arch_sha" "s6-overlay-$arch.tar.xz" \
          | sha256sum -c -; \
        extract s6-overlay-noarch.tar.xz; extract "s6-overlay-$arch.tar.xz" ;; \
      local) \
        cd /tmp/s6-local; \
        [ -f SHA256SUMS ] || { echo "S6_OVERLAY_SOURCE=local: docker/s6-overlay/SHA256SUMS missing" >&2; exit 1; }; \
        [ -f s6-overlay-noarch.tar.xz ] && [ -f "s6-overlay-$arch.tar.xz" ] \
          || { echo "S6_OVERLAY_SOURCE=local: tarballs missing in docker/s6-overlay/" >&2; exit 1; }; \
        grep -E " [* ]?(s6-overlay-noarch|s6-overlay-$arch)\.tar\.xz\$" SHA256SUMS > /tmp/s6-sums; \
        [ "$(wc -l < /tmp/s6-sums)" -eq 2 ] || { echo "SHA256SUMS must list both tarballs" >&2; exit 1; }; \
        sha256sum -c /tmp/s6-sums; \
        if ! command -v xz >/dev/null; then \
          apt-get update; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends xz-utils; \
        fi; \
        extract s6-overlay-noarch.tar.xz; extract "s6-overlay-$arch.tar.xz" ;; \
      standin) \
        mkdir -p /out/command; \
        install -m 0755 /tmp/s6-standin/init /out/init; \
        install -m 0755 /tmp/s6-standin/with-contenv /out/command/with-contenv ;; \
      *) echo "S6_OVERLAY_SOURCE must be download, local or standin, not '$S6_OVERLAY_SOURCE'" >&2; exit 1 ;; \
    esac

# --- the image ---------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG S6_OVERLAY_SOURCE=download
ARG HERMES_APP=none

COPY --from=s6-overlay /out/ /
COPY --from=programs /out/ /opt/hermes/docker/bin/
COPY docker/cont-init.d/ /etc/cont-init.d/
COPY docker/s6-rc.d/ /etc/s6-overlay/s6-rc.d/
COPY docker/cli-subcommands /etc/hermes/cli-subcommands
COPY docker/SOUL.md /opt/hermes/docker/SOUL.md
COPY docker/test-double/ /tmp/test-double/

# Stand-in only: real s6-overlay lets a --user container own /run through its
# setuid helper; the stand-in has none, so test images make /run sticky and
# world-writable instead.
RUN set -eu; \
    pkgs=; \
    if [ "$S6_OVERLAY_SOURCE" = standin ]; then pkgs="$pkgs s6 execline"; fi; \
    if [ "$HERMES_APP" = test-double ]; then pkgs="$pkgs python3-minimal"; fi; \
    if [ -n "$pkgs" ]; then \
      apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    if [ "$S6_OVERLAY_SOURCE" = standin ]; then \
      for t in /usr/bin/s6-*; do ln -sf "$t" /command/; done; \
      chmod 1777 /run; \
    fi; \
    groupadd --gid 10000 hermes; \
    useradd --uid 10000 --gid 10000 --home-dir /opt/data --no-create-home --shell /bin/sh hermes; \
    mkdir -p /opt/data /opt/hermes/bin /opt/hermes/docker/bin /etc/hermes; \
    chown hermes:hermes /opt/data; \
    ln -sf /opt/hermes/docker/bin/main-wrapper /opt/hermes/bin/hermes; \
    ln -sf /opt/hermes/docker/bin/main-wrapper /opt/hermes/docker/main-wrapper.sh; \
    ln -sf /opt/hermes/docker/bin/main-wrapper /opt/hermes/docker/entrypoint-dispatch.sh; \
    ln -sf /opt/hermes/docker/bin/stage2-setup /opt/hermes/docker/stage2-hook.sh; \
    case "$HERMES_APP" in \
      none) ;; \
      test-double) \
        d=/tmp/test-double; \
        mkdir -p /opt/hermes/.venv/bin /opt/hermes/scripts /opt/hermes/tools/chromium-1000/chrome-linux; \
        ln -s /usr/bin/python3 /opt/hermes/.venv/bin/python; \
        printf '%s\n' '# test image: no real virtual environment' 'VIRTUAL_ENV=/opt/hermes/.venv' \
          'export VIRTUAL_ENV' 'PATH="$VIRTUAL_ENV/bin:$PATH"' 'export PATH' > /opt/hermes/.venv/bin/activate; \
        install -m 0755 "$d/hermes" /opt/hermes/.venv/bin/hermes; \
        install -m 0755 "$d/scripts/docker_config_migrate.py" /opt/hermes/scripts/; \
        install -m 0644 "$d/env.example" /opt/hermes/.env.example; \
        install -m 0644 "$d/cli-config.yaml.example" /opt/hermes/cli-config.yaml.example; \
        install -m 0755 "$d/chromium" /opt/hermes/tools/chromium-1000/chrome-linux/chrome; \
        printf '%s' /opt/hermes/tools/chromium-1000/chrome-linux/chrome > /etc/hermes/agent-browser-executable-path; \
        printf '%s\n' '#!/bin/sh' \
          '# Test fixture: a PATH program named like a hermes subcommand (SPEC MW-10).' \
          'echo "decoy /usr/local/bin/mcp ran instead of hermes mcp" >&2' 'exit 99' > /usr/local/bin/mcp; \
        chmod 0755 /usr/local/bin/mcp ;; \
      *) echo "HERMES_APP must be none or test-double, not '$HERMES_APP'" >&2; exit 1 ;; \
    esac; \
    rm -rf /tmp/test-double; \
    chown -R root:root /opt/hermes /etc/hermes; \
    chmod -R go-w /opt/hermes /etc/hermes; \
    chmod 0755 /opt/hermes/docker/bin/*

ENV HERMES_HOME=/opt/data \
    HERMES_WRITE_SAFE_ROOT=/opt/data:/tmp/hermes-files \
    PLAYWRIGHT_BROWSERS_PATH=/opt/hermes/tools \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/hermes/bin:/opt/hermes/.venv/bin:/opt/data/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

VOLUME /opt/data
ENTRYPOINT ["/opt/hermes/docker/bin/main-wrapper"]
CMD []
