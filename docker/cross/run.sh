#!/bin/sh
# Runs inside the `cargo xtask cross` container (Debian trixie's Rust): the MSRV build for x86_64 and
# aarch64, clippy for aarch64, then the aarch64 tests, which the host runs through qemu (binfmt_misc).
# The workspace is mounted read-only at /src; sources come from the vendored copy in /out/vendor.
set -eu
phase() { echo "cross: $*"; }
# The registrar's overflow test lowers an inotify limit for a moment (and restores it).
mount -o remount,rw /proc/sys 2>/dev/null || phase "/proc/sys stays read-only: the inotify overflow test cannot set its limit"
phase "$(rustc --version), $(cargo --version)"
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
  phase "build $target"
  cargo build --workspace --all-targets --locked --offline --target "$target"
done
phase "clippy aarch64-unknown-linux-gnu"
cargo clippy --workspace --all-targets --locked --offline --target aarch64-unknown-linux-gnu -- -D warnings
phase "test aarch64-unknown-linux-gnu (emulated)"
# Under qemu-user the adversarial loops run about ten times slower: a quarter of their native rounds.
# A corpus case takes at most 16 ms natively, so natively one still running after 10 s is hung; emulated,
# with the corpus's three programs run side by side, one case once stalled past 10 s: here the limit is 60 s.
export HERMES_CRASH_ROUNDS=15 HERMES_ATTACK_BOOTS=25 HERMES_HANG_LIMIT_SECS=60
# Tests that cannot run under qemu-user, and why (each runs natively in `cargo xtask test`):
# - qemu-user reports a failed exec (missing file, FIFO) as a child that exits 127, not as an error from
#   the spawn, so these see the wrong failure:
#     s6_command::tests::reports_status_and_output, fallback_without_stage2_is_an_error,
#     main_wrapper_survives_the_corpus;
# - qemu's statx returns no mount id, which the openat fallback needs to see a same-filesystem bind
#   mount: bind_mount_of_same_filesystem_is_not_entered_without_openat2 (the openat2 path runs);
# - the FUSE volume tests mount bindfs, which needs /dev/fuse and the mount capability this container
#   is not given: a_volume_that_refuses_chown_gets_one_warning_and_the_boot_goes_on,
#   a_frozen_fuse_mount_inside_the_volume_is_not_walked_and_does_not_hang_the_boot.
SKIP="s6_command::tests::reports_status_and_output fallback_without_stage2_is_an_error main_wrapper_survives_the_corpus bind_mount_of_same_filesystem_is_not_entered_without_openat2 a_volume_that_refuses_chown_gets_one_warning_and_the_boot_goes_on a_frozen_fuse_mount_inside_the_volume_is_not_walked_and_does_not_hang_the_boot"
phase "not run under emulation: $SKIP"
set --
for t in $SKIP; do set -- "$@" --skip "$t"; done
# container-suite needs the Docker engine and xtask is the host's tool; everything else runs.
cargo test --locked --offline --target aarch64-unknown-linux-gnu --workspace \
  --exclude container-suite --exclude xtask --no-fail-fast -- "$@"
