//! The application's own boot helpers, run with the venv Python as the runtime user (CM-10): config
//! migration (S2-22), dependency refresh (S2-23) and skills sync (S2-28). The Nous re-bootstrap (S2-26)
//! uses [`run_helper`] too.

use std::ffi::OsString;
use std::path::Path;

use crate::privdrop::{run_as_user, RunStatus};
use crate::report::Change;

use super::Ctx;

pub const VENV_PYTHON: &str = "/opt/hermes/.venv/bin/python";
pub const CONFIG_MIGRATE: &str = "/opt/hermes/scripts/docker_config_migrate.py";
pub const DEPENDENCY_REFRESH: &str = "/opt/hermes/scripts/docker_refresh_dependencies.py";
pub const SKILLS_SYNC: &str = "/opt/hermes/tools/skills_sync.py";
pub const SKILLS_DIR: &str = "/opt/hermes/skills";

/// Whether an image path exists (resolved normally: image paths are root's).
pub(super) fn image_path_exists(ctx: &Ctx, path: &str) -> bool {
    std::fs::symlink_metadata(ctx.root.path(path)).is_ok()
}

/// Runs `VENV_PYTHON script args…` as U. `None` in a dry run (nothing is run), else the status.
pub(super) fn run_helper(ctx: &Ctx, script: &str, args: &[OsString]) -> Option<RunStatus> {
    let mut argv: Vec<OsString> = vec![script.into()];
    argv.extend(args.iter().cloned());
    let shown: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let change =
        Change::new("run", VENV_PYTHON).detail(format_args!("{} as {}", shown.join(" "), ctx.user()));
    let Ok(status) = ctx.report.apply(change, None, || {
        Ok::<_, std::convert::Infallible>(Some(run_as_user(
            ctx.root,
            &ctx.account,
            Path::new(VENV_PYTHON),
            &argv,
        )))
    });
    status
}

fn script_name(script: &str) -> &str {
    script.rsplit('/').next().unwrap_or(script)
}

/// S2-22. `config.yaml` must be a regular file in H; the script decides everything else itself
/// (including `HERMES_SKIP_CONFIG_MIGRATION`, which it reads from the inherited environment).
pub fn config_migration(ctx: &Ctx) {
    let is_config = match &ctx.home_dir {
        Some(h) => matches!(h.stat("config.yaml"), Ok(Some(m)) if m.is_file()),
        // H is a symlink: the helper runs as U, so looking through U's link is U's business.
        None => std::fs::metadata(ctx.root.path(ctx.home.join("config.yaml"))).is_ok_and(|m| m.is_file()),
    };
    if !is_config {
        return;
    }
    if !image_path_exists(ctx, CONFIG_MIGRATE) {
        ctx.report.info(format_args!(
            "{} not present; skipping",
            script_name(CONFIG_MIGRATE)
        ));
        return;
    }
    if let Some(st) = run_helper(ctx, CONFIG_MIGRATE, &[]) {
        if !st.success() {
            ctx.report.warn(format_args!(
                "{} failed ({st}); continuing",
                script_name(CONFIG_MIGRATE)
            ));
        }
    }
}

/// S2-23. The script prints its own `[stage2] …` lines.
pub fn dependency_refresh(ctx: &Ctx) {
    if !image_path_exists(ctx, DEPENDENCY_REFRESH) {
        return;
    }
    if let Some(st) = run_helper(ctx, DEPENDENCY_REFRESH, &[]) {
        if !st.success() {
            ctx.report
                .warn(format_args!("dependency refresh failed ({st}) — continuing"));
        }
    }
}

/// S2-28
pub fn skills_sync(ctx: &Ctx) {
    let is_dir = std::fs::metadata(ctx.root.path(SKILLS_DIR)).is_ok_and(|m| m.is_dir());
    if !is_dir || !image_path_exists(ctx, SKILLS_SYNC) {
        return;
    }
    if let Some(st) = run_helper(ctx, SKILLS_SYNC, &[]) {
        if !st.success() {
            ctx.report.warn(format_args!(
                "{} failed ({st}); continuing",
                script_name(SKILLS_SYNC)
            ));
        }
    }
}
