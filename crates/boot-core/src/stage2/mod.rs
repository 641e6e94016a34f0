//! stage2-setup: the data-volume bootstrap (SPEC section 2), one step per requirement, in SPEC order.
//!
//! [`run`] is the whole program after argument parsing. Only the identity checks (S2-02, S2-03) and the
//! creation of `$HERMES_HOME` (S2-04) can end it early; every later step reports its own failures as
//! warnings and the run goes on, so a container always gets as far as its services.

pub mod identity;

mod app_helpers;
mod browser;
mod credentials;
mod fly_socket;
mod home;
mod runtime_dirs;
mod seeds;
pub(crate) mod volume;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::accounts::Account;
use crate::config::{Config, Env};
use crate::guarded::Dir;
use crate::owner::Owner;
use crate::report::{plural, Report};
use crate::root::RootPrefix;

pub use browser::{pick_browser, BROWSER_NAMES};
pub use credentials::{auth_home_problem, residence_dir};

/// What the command line and the environment decided.
#[derive(Debug, Clone)]
pub struct Options {
    /// The root prefix, the runtime user's name (CM-03) and the environment.
    pub config: Config,
    pub dry_run: bool,
    /// `--json` ([`Report::with_json`]).
    pub json: bool,
}

/// Everything a step needs: where things are, who the runtime user is now, and the report.
pub(crate) struct Ctx<'a> {
    pub root: &'a RootPrefix,
    pub report: &'a Report,
    /// The runtime user as passwd records it after any remap.
    pub account: Account,
    /// The user's uid before this run changed anything (hard-link rule of CM-05).
    pub u0: u32,
    /// What the ownership repair may hand over to the runtime user, judged against H's owner when this
    /// run started (the previous runtime uid).
    pub handover: crate::handover::Handover,
    pub is_root: bool,
    /// `$HERMES_HOME`, in-container.
    pub home: PathBuf,
    /// H opened without following a symlink; `None` when H is a symlink (root-side steps inside H are
    /// skipped) or, in a dry run, when H does not exist yet.
    pub home_dir: Option<Dir>,
    /// The environment stage2-setup started with.
    pub env: &'a Env,
    /// The volume refused a chown outright ([`crate::ownership::volume_refuses_chown`]) and said so
    /// once: later steps do not try again.
    pub chown_refused: std::sync::atomic::AtomicBool,
}

impl Ctx<'_> {
    /// u:g
    pub fn owner(&self) -> Owner {
        Owner::new(self.account.uid, self.account.gid)
    }

    /// The owner new files get: u:g when root (files a non-root run creates are its own anyway).
    pub fn new_file_owner(&self) -> Option<Owner> {
        self.is_root.then(|| self.owner())
    }

    pub fn user(&self) -> &str {
        &self.account.name
    }

    /// A path-valued environment variable, raw bytes kept.
    pub fn env_os(&self, name: &str) -> Option<OsString> {
        self.env.get(name).map(OsStr::to_os_string)
    }

    /// A non-empty environment variable.
    pub fn env_non_empty(&self, name: &str) -> Option<OsString> {
        self.env.non_empty(name).map(OsStr::to_os_string)
    }
}

/// Runs stage2-setup; returns the exit code.
pub fn run(opts: &Options) -> i32 {
    let report = Report::stage2(opts.dry_run).with_json(opts.json);
    i32::from(report.finish(setup(opts, &report)))
}

fn setup(opts: &Options, report: &Report) -> u8 {
    let (root, env) = (&opts.config.root, &opts.config.env);
    crate::boot_record::keep(root, report, true);

    // S2-02, S2-03: fatal, before any change.
    let Ok(account) = identity::preflight(root, report, &opts.config.user) else {
        return 1;
    };

    // S2-04: fatal when H cannot be made.
    let Ok((home, home_dir)) = home::open_home(root, report, env) else {
        return 1;
    };

    // S2-05 … S2-10
    // A non-UTF-8 value must reach validation (and be warned about as invalid), not read as unset.
    let var = |name: &str| {
        env.get(name)
            .map(|v| crate::display::display_bytes(std::os::unix::ffi::OsStrExt::as_bytes(v)))
    };
    let id = identity::remap(root, report, account, &var);
    if id.is_root {
        crate::nss_entry::secure_run_dir(root, report);
        crate::capabilities::warn_if_supervision_cannot_signal(report, id.account.uid);
    } else {
        crate::nss_entry::publish(root, report, &id.account);
    }

    // Before any repair: H's owner is the uid the previous container ran as (the runtime user cannot
    // chown H), which is what the repair may treat as the user's own.
    let previous_uid = home_dir.as_ref().and_then(|h| h.meta().ok()).map_or(0, |m| m.uid);
    let handover = crate::handover::Handover::new(&id.account, id.u0, previous_uid);
    let ctx = Ctx {
        root,
        report,
        account: id.account,
        u0: id.u0,
        handover,
        is_root: id.is_root,
        home,
        home_dir,
        env,
        chown_refused: std::sync::atomic::AtomicBool::new(false),
    };

    volume::repair_ownership(&ctx); // S2-11
    volume::repair_top_level(&ctx); // S2-12
    volume::seed_directory_tree(&ctx); // S2-13
    runtime_dirs::xdg_runtime_dir(&ctx); // S2-14
    runtime_dirs::real_home(&ctx); // S2-15
    runtime_dirs::scratch_dir(&ctx); // S2-16
    volume::remove_install_method_stamp(&ctx); // S2-17
    seeds::first_boot_seeds(&ctx); // S2-18
    seeds::api_server_key(&ctx); // S2-19
    seeds::routing_override_sync(&ctx); // S2-20
    fly_socket::grant_fly_socket(&ctx); // S2-21
    app_helpers::config_migration(&ctx); // S2-22
    app_helpers::dependency_refresh(&ctx); // S2-23
    let residence = credentials::credential_residence(&ctx); // S2-24
    credentials::auth_json_bootstrap(&ctx, &residence); // S2-25
    credentials::nous_rebootstrap(&ctx, &residence); // S2-26
    seeds::gateway_state_seed(&ctx); // S2-27
    app_helpers::skills_sync(&ctx); // S2-28
    browser::export_browser_path(&ctx); // S2-29

    summary(report); // S2-30
    0
}

/// S2-30
fn summary(report: &Report) {
    report.closing(match report.warnings() {
        0 => "Setup complete; starting user services".to_string(),
        n => format!(
            "Setup complete with {}; starting user services",
            plural(n, "warning")
        ),
    });
}
