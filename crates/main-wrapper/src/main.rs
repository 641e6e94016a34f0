//! main-wrapper: the container ENTRYPOINT, s6-overlay's main program and the `hermes` exec shim (SPEC §5).
//!
//! Every argument belongs to the container command, so there is no option parsing here; the roles live in
//! `boot_core::wrapper`.

// The C entry point instead of Rust's `main`: the program runs before every container command and every
// `docker exec`, and only execs another, so the runtime's start-up work (finding the stack guard through
// `/proc/self/maps`, the SIGSEGV/SIGBUS handlers and their alternate stack, ignoring SIGPIPE) is about
// fifteen system calls of nothing. `std::env::args_os` still works: glibc hands argv to std's
// initialiser. A child still starts with the default SIGPIPE: `Command` resets it.
// (The test build keeps the harness's `main`.)
#![cfg_attr(not(test), no_main)]

/// Called by the C runtime. `#[no_mangle]` exports it under the name the runtime looks for; nothing else in
/// the program has that name.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    boot_core::wrapper::main(std::env::args_os().collect(), env!("CARGO_PKG_VERSION"))
}
