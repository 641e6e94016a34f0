//! `reconcile-profiles`: per-profile gateway slots in the s6 scan directory (SPEC section 4). Without a
//! subcommand it is the boot step; `watch` is the profile-registrar service; `register`/`unregister`
//! change one slot while s6-svscan runs (as root directly, as the runtime user through the registrar).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use boot_core::config::Config;
use boot_core::reconcile::{run_boot, Places};
use boot_core::registrar::{run_watch, RESCAN_INTERVAL};
use boot_core::registration::{run_register, run_unregister};
use boot_core::report::Report;
use boot_core::requests::{REGISTER_TIMEOUT, UNREGISTER_TIMEOUT};
use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Ownership (HERMES_GATEWAY_SLOTS):
  unset or root-owned  the scan directory and every gateway slot are root's; the runtime user controls its
                       gateways with s6-svc, s6-svstat and s6-svok, and registers them through the
                       profile registrar (`watch`, run as root by the profile-registrar service)
  user-owned           the scan directory and the slots are the runtime user's, as upstream; the runtime
                       user can then gain root (the boot prints a warning)

Slot cap (HERMES_GATEWAY_LIMIT, default 64, 1 to 10000):
  the most gateway slots, the root profile's included. Boot gives slots to the root profile and then to
  profiles in name order; watch keeps existing slots and adds new ones while there is room; every profile
  left without one gets one warning, and register fails for it (exit 1)

Exit status:
  0  done (boot: profiles may have been skipped; unregister: also when not registered)
  1  runtime user missing, I/O or s6 failure (register rolls back), register over the slot cap;
     register as the runtime user: no such profile (the profile directory $HERMES_HOME/profiles/<PROFILE> has no SOUL.md)
  2  usage, invalid profile name
  3  register as root: the slot already exists
  4  register/unregister as the runtime user: the registrar did not act within --timeout";

#[derive(Parser, Debug)]
#[command(
    name = "reconcile-profiles",
    version,
    about = "Create the s6 gateway slot of every hermes profile (boot), keep them in step with the \
             profiles (watch), or register/unregister one",
    after_help = AFTER_HELP
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
    /// One JSON object per line on stdout for every change (made, or planned with --dry-run), warning
    /// and refusal, then a summary; the log lines go to stderr
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add the slot gateway-<PROFILE> and have s6-svscan supervise it
    ///
    /// As root the slot is built here (exit 3 when it exists). As the runtime user this is a request to
    /// the profile registrar, and the profile must exist: without $HERMES_HOME/profiles/<PROFILE>/SOUL.md
    /// it fails with "profile '<PROFILE>' does not exist" and exit 1.
    Register {
        #[arg(value_parser = clap::value_parser!(OsString))]
        profile: OsString,
        /// Create the slot with a `down` file (not started)
        #[arg(long)]
        down: bool,
        /// As the runtime user: how long to wait for the registrar, above 0 and at most 86400 [default: 5]
        #[arg(long, value_name = "SECONDS", value_parser = parse_timeout, allow_negative_numbers = true)]
        timeout: Option<Duration>,
    },
    /// Stop and remove the slot gateway-<PROFILE>
    Unregister {
        #[arg(value_parser = clap::value_parser!(OsString))]
        profile: OsString,
        /// As the runtime user: how long to wait for the registrar, above 0 and at most 86400 [default: 20]
        #[arg(long, value_name = "SECONDS", value_parser = parse_timeout, allow_negative_numbers = true)]
        timeout: Option<Duration>,
    },
    /// Run the profile registrar (root): keep one slot per profile until SIGTERM
    Watch {
        /// Seconds between full rescans (inotify decides the rest), 1 to 86400
        #[arg(long, value_name = "SECONDS", default_value_t = RESCAN_INTERVAL.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS), allow_negative_numbers = true)]
        rescan_interval: u64,
    },
}

/// The largest wait or interval accepted (one day): beyond it a value is a mistake, and huge ones
/// overflow a `Duration` or an `Instant`.
const MAX_SECONDS: u64 = 86_400;

/// `--timeout`: a finite number of seconds above 0 and at most [`MAX_SECONDS`]; anything else is a usage
/// error (exit 2), never replaced by the default.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > MAX_SECONDS as f64 {
        return Err(format!(
            "'{text}' is out of range (above 0, at most {MAX_SECONDS} seconds)"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Config { root, user, env } = Config::from_args(cli.root, cli.runtime_user);
    let report = Report::reconcile(cli.dry_run).with_json(cli.json);
    let places = Places::from_env(&env);
    // The boot pass and the registrar add to the boot record; register/unregister run as the runtime
    // user, who cannot.
    if matches!(cli.command, None | Some(Command::Watch { .. })) {
        boot_core::boot_record::keep(&root, &report, false);
    }
    let code = match cli.command {
        None => run_boot(&root, &report, &user, &places),
        Some(Command::Register {
            profile,
            down,
            timeout,
        }) => run_register(
            &root,
            &report,
            &user,
            &places,
            &profile,
            down,
            timeout.unwrap_or(REGISTER_TIMEOUT),
        ),
        Some(Command::Unregister { profile, timeout }) => run_unregister(
            &root,
            &report,
            &user,
            &places,
            &profile,
            timeout.unwrap_or(UNREGISTER_TIMEOUT),
        ),
        Some(Command::Watch { rescan_interval }) => run_watch(
            &root,
            &report,
            &user,
            &places,
            Duration::from_secs(rescan_interval),
        ),
    };
    ExitCode::from(report.finish(code))
}
