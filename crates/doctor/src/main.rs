//! `hermes-boot-doctor`: what is wrong with this container, and the command that fixes each problem.
//! Only reads; run it with `docker exec <container> hermes-boot-doctor`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use boot_core::config::Config;
use boot_core::doctor::{self, Options};
use clap::Parser;

const AFTER_HELP: &str = "\
Checks: the runtime user and a pending remap, how the container was started (root, --user, user
namespace, read-only root); the data volume's mount, free space and ownership drift in the trees the
boot repairs; the owner and mode of .env and auth.json (never their contents); per profile the state
file, the slot and whether it is up, the last boot-log line, stale pid files; the s6 services and the
profile registrar; the last boot's warning and error lines (from /run/hermes-boot/warnings), shown as
warnings, which do not change the exit status.

Environment:
  HERMES_HOME                 the data volume (default /opt/data)
  HERMES_UID, PUID, HERMES_GID, PGID
                              the remap the container asked for, compared with /etc/passwd
  S6_PROFILE_GATEWAY_SCANDIR  the gateways' scan directory (default /run/service)
  HERMES_GATEWAY_SLOTS        root-owned (default) or user-owned slots
  GATEWAY_MULTIPLEX_PROFILES  whether named profiles' gateways start at boot
  HERMES_BOOT_ROOT            root prefix (as --root)
  HERMES_BOOT_USER            the runtime user's name (as --runtime-user)

Exit status:
  0  healthy: no problem found
  1  a problem was found (each is printed with its fix)
  2  usage";

/// Report what is wrong with this hermes container, and how to fix it (reads only).
#[derive(Parser, Debug)]
#[command(name = "hermes-boot-doctor", version, after_help = AFTER_HELP)]
struct Args {
    /// Treat DIR as the filesystem root (default: $HERMES_BOOT_ROOT, else /)
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Runtime user (default: $HERMES_BOOT_USER, else hermes)
    #[arg(long, value_name = "NAME")]
    runtime_user: Option<String>,
    /// One JSON object per line: every finding, then a summary
    #[arg(long)]
    json: bool,
    /// Skip the walk of the volume for ownership drift (the image's HEALTHCHECK)
    #[arg(long)]
    quick: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = Options {
        config: Config::from_args(args.root, args.runtime_user),
        quick: args.quick,
    };
    let findings = doctor::examine(&opts);
    let mut text = String::new();
    if args.json {
        for f in &findings {
            text.push_str(&f.to_json().to_string());
            text.push('\n');
        }
        text.push_str(&doctor::summary_json(&findings).to_string());
        text.push('\n');
    } else {
        text = doctor::render_text(&findings);
    }
    // A closed pipe (`| head`) is not a finding; the exit status still says healthy or not.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::from(doctor::exit_code(&findings))
}
