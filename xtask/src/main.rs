//! `cargo xtask <task>`: the project's chores as a plain Rust binary (no extra tooling to install).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    eprintln!("xtask: unknown task {:?}", args.first());
    std::process::exit(2);
}
