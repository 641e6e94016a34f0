//! `stage2-setup`: prepares the data volume and the runtime user before the container's services start
//! (SPEC section 2). Started by `/etc/cont-init.d/01-hermes-setup`, or by `main-wrapper` outside s6.

use std::path::PathBuf;

use boot_core::config::Config;
use boot_core::stage2::{self, Options};
use clap::Parser;

const AFTER_HELP: &str = "\
Environment:
  HERMES_UID, PUID            the runtime user's uid (HERMES_UID wins when both are set)
  HERMES_GID, PGID            the runtime user's primary gid (HERMES_GID wins)
  HERMES_HOME                 the data volume (default /opt/data)
  HERMES_BOOT_ROOT            root prefix (as --root)
  HERMES_BOOT_USER            the runtime user's name (as --runtime-user)
  HERMES_REAL_HOME            a home for the runtime user outside the volume, made and handed over
  XDG_RUNTIME_DIR             the runtime user's runtime directory, made 0700 and handed over
  HERMES_GATEWAY_SLOTS        root-owned (default) or user-owned gateway slots
  HERMES_GATEWAY_BOOTSTRAP_STATE
                              `running`: gateway_state.json seeded once, when it is missing
  HERMES_AUTH_JSON_BOOTSTRAP  auth.json written when the volume has none
  HERMES_AUTH_JSON_REBOOTSTRAP
                              set: the Nous session reseed helper runs on an existing auth.json
  HERMES_AUTH_HOME            where auth.json lives (default: $HERMES_HOME)
  PLAYWRIGHT_BROWSERS_PATH    where the browser helpers are looked for
  HERMES_PORTAL_BASE_URL, NOUS_PORTAL_BASE_URL, NOUS_INFERENCE_BASE_URL
                              routing variables synced into $HERMES_HOME/.env

Exit status:
  0  the volume and the user are ready (warnings, if any, are in the log)
  1  the runtime user is missing or unusable, or $HERMES_HOME cannot be made: nothing was changed
  2  usage";

/// Prepare $HERMES_HOME and the runtime user for the hermes container.
#[derive(Parser, Debug)]
#[command(name = "stage2-setup", version, after_help = AFTER_HELP)]
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
    /// One JSON object per line on stdout for every change (made, or planned with --dry-run), warning
    /// and refusal, then a summary; the log lines go to stderr.
    #[arg(long)]
    json: bool,
}

fn main() {
    // clap prints --help/--version on stdout with status 0 and usage errors on stderr with status 2.
    let args = Args::parse();
    let opts = Options {
        config: Config::from_args(args.root, args.runtime_user),
        dry_run: args.dry_run,
        json: args.json,
    };
    std::process::exit(stage2::run(&opts));
}
