//! `supervise-perms`: lets the runtime group control the static s6-rc services (SPEC section 3).

use std::path::PathBuf;
use std::process::ExitCode;

use boot_core::config::Config;
use boot_core::report::Report;
use boot_core::s6_perms::run_supervise_perms;
use clap::Parser;

const AFTER_HELP: &str = "\
Environment:
  HERMES_BOOT_ROOT      root prefix (as --root)
  HERMES_BOOT_USER      the runtime user's name (as --runtime-user)
  HERMES_GATEWAY_SLOTS  user-owned: event directories the group may create FIFOs in (as upstream);
                        otherwise root-owned ones it may only enter

Exit status:
  0  done, or nothing to do (not root, no /run/s6-rc/servicedirs); a service that could not be
     changed is a warning
  1  the runtime user is not in /etc/passwd, or passwd cannot be read
  2  usage";

#[derive(Parser, Debug)]
#[command(
    name = "supervise-perms",
    version,
    after_help = AFTER_HELP,
    about = "Give the runtime user's group control of the static s6-rc services (owner stays root)"
)]
struct Cli {
    /// Treat DIR as the filesystem root (default: $HERMES_BOOT_ROOT, else /)
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Runtime user (default: $HERMES_BOOT_USER, else hermes)
    #[arg(long, value_name = "NAME")]
    runtime_user: Option<String>,
    /// Print what would change and change nothing
    #[arg(long)]
    dry_run: bool,
    /// One JSON object per line on stdout for every change (made, or planned with --dry-run), warning
    /// and refusal, then a summary; the log lines go to stderr
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = Config::from_args(cli.root, cli.runtime_user);
    let report = Report::supervise_perms(cli.dry_run).with_json(cli.json);
    boot_core::boot_record::keep(&config.root, &report, false);
    ExitCode::from(report.finish(run_supervise_perms(&config, &report)))
}
