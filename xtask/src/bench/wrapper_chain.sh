#!/bin/sh
# The work of the shell wrapper main-wrapper replaces, as a POSIX sh chain for `cargo xtask bench`: what runs
# between s6-overlay starting the container's main program and the program itself. Paths are below $ROOT
# (the benchmark's temporary root prefix). Run as root: `sh wrapper_chain.sh PROGRAM [ARGS…]`.
#
# Two deliberate savings over the real chain, so that the comparison errs in the shell's favour: the
# environment is rehydrated by s6-envdir directly (with-contenv adds an execlineb start before it), and
# s6-setuidgid gets the numeric uid:gid (no passwd look-up).
set -e

# s6-overlay scrubs the environment of the main program: rehydrate it from the container environment
# directory, once.
if [ -z "${HERMES_MAIN_WRAPPER_ENV_READY:-}" ] && [ -z "${HERMES_HOME:-}" ]; then
    export HERMES_MAIN_WRAPPER_ENV_READY=1
    exec s6-envdir -fn "$ROOT/run/s6/container_environment" sh "$0" "$@"
fi
unset HERMES_MAIN_WRAPPER_ENV_READY

run_as_user() {
    if [ "$(id -u)" = 0 ]; then
        set -- s6-setuidgid 10000:10000 "$@"
    fi
    exec "$@"
}

# Refuse an arbitrary --user.
me="$(id -u)"
if [ "$me" != 0 ] && [ "$me" != "$(id -u hermes)" ]; then
    echo "[hermes] ERROR: container started with --user $me (an arbitrary, non-hermes UID) — not supported." >&2
    exit 1
fi

export HOME=/opt/data
export HERMES_HOME="${HERMES_HOME:-$HOME}"
start_dir="${HERMES_ORIG_CWD:-$PWD}"

cd "$ROOT/opt/data"
. "$ROOT/opt/hermes/.venv/bin/activate"
cd "$start_dir"

if [ $# -eq 0 ]; then
    run_as_user hermes
fi
if command -v "$1" >/dev/null 2>&1; then
    run_as_user "$@"
fi
run_as_user hermes "$@"
