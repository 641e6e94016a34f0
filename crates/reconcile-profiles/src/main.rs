//! `reconcile-profiles`: per-profile gateway slots in the s6 scan directory (SPEC section 4). Without a
//! subcommand it is the boot step; `register`/`unregister` change one slot while s6-svscan runs.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use boot_core::accounts::runtime_user_name;
use boot_core::reconcile::{run_boot, run_register, run_unregister, Places};
use boot_core::report::Report;
use boot_core::root::RootPrefix;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "reconcile-profiles",
    version,
    about = "Create the s6 gateway slot of every hermes profile (boot), or register/unregister one"
)]
struct Cli {
    /// Treat DIR as the filesystem root (default: $HERMES_BOOT_ROOT, else /)
    #[arg(long, value_name = "DIR", global = true)]
    root: Option<PathBuf>,
    /// Runtime user (default: $HERMES_BOOT_USER, else hermes)
    #[arg(long, value_name = "NAME", global = true)]
    runtime_user: Option<String>,
    /// Print what would change and change nothing
    #[arg(long, global = true)]
    dry_run: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add the slot gateway-<PROFILE> and have s6-svscan supervise it
    Register {
        #[arg(value_parser = clap::value_parser!(OsString))]
        profile: OsString,
        /// Create the slot with a `down` file (not started)
        #[arg(long)]
        down: bool,
    },
    /// Stop and remove the slot gateway-<PROFILE>
    Unregister {
        #[arg(value_parser = clap::value_parser!(OsString))]
        profile: OsString,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = RootPrefix::from_arg_or_env(cli.root);
    let report = Report::reconcile(cli.dry_run);
    let user = runtime_user_name(cli.runtime_user);
    let places = Places::from_env();
    let code = match cli.command {
        None => run_boot(&root, &report, &user, &places),
        Some(Command::Register { profile, down }) => {
            run_register(&root, &report, &user, &places, &profile, down)
        }
        Some(Command::Unregister { profile }) => run_unregister(&root, &report, &places, &profile),
    };
    ExitCode::from(code)
}
