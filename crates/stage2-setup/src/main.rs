//! `stage2-setup`: prepares the data volume and the runtime user before the container's services start
//! (SPEC section 2). Started by `/etc/cont-init.d/01-hermes-setup`, or by `main-wrapper` outside s6.

use std::path::PathBuf;

use boot_core::accounts::runtime_user_name;
use boot_core::root::RootPrefix;
use boot_core::stage2::{self, Options};
use clap::Parser;

/// Prepare $HERMES_HOME and the runtime user for the hermes container.
#[derive(Parser, Debug)]
#[command(name = "stage2-setup", version)]
struct Args {
    /// Root prefix for every absolute path (default: $HERMES_BOOT_ROOT, else none).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The runtime user (default: $HERMES_BOOT_USER, else hermes).
    #[arg(long, value_name = "NAME")]
    runtime_user: Option<String>,
    /// Print what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn main() {
    // clap prints --help/--version on stdout with status 0 and usage errors on stderr with status 2.
    let args = Args::parse();
    let opts = Options {
        root: RootPrefix::from_arg_or_env(args.root),
        user: runtime_user_name(args.runtime_user),
        dry_run: args.dry_run,
    };
    std::process::exit(stage2::run(&opts));
}
