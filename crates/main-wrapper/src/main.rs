//! main-wrapper: the container ENTRYPOINT, s6-overlay's main program and the `hermes` exec shim (SPEC §5).
//!
//! Every argument belongs to the container command, so there is no option parsing here; the roles live in
//! `boot_core::wrapper`.

fn main() {
    let code = boot_core::wrapper::main(std::env::args_os().collect(), env!("CARGO_PKG_VERSION"));
    std::process::exit(code);
}
