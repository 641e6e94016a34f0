//! Files stage2-setup writes into the volume: first-boot seeds (S2-18), the api_server key (S2-19), the
//! routing-override sync (S2-20) and the gateway state seed (S2-27). Files are created per CM-06 and
//! rewritten per CM-07, never through a symlink.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::atomic::{self, Created};
use crate::display::display_path;
use crate::dotenv::{self, KeyAction, SyncChange, API_SERVER_KEY};
use crate::error::SysError;
use crate::guarded::{Dir, Entry, Meta};

use super::Ctx;

/// The largest `.env` stage2-setup edits; anything bigger is not a dotenv file.
const ENV_LIMIT: u64 = 4 << 20;

/// S2-18: destination in H, image source, mode.
pub const FIRST_BOOT_SEEDS: &[(&str, &str, u32)] = &[
    (".env", "/opt/hermes/.env.example", 0o600),
    ("config.yaml", "/opt/hermes/cli-config.yaml.example", 0o640),
    ("SOUL.md", "/opt/hermes/docker/SOUL.md", 0o644),
];

/// S2-20
pub const ROUTING_VARIABLES: &[&str] = &[
    "HERMES_PORTAL_BASE_URL",
    "NOUS_PORTAL_BASE_URL",
    "NOUS_INFERENCE_BASE_URL",
];

pub const GATEWAY_STATE_FILE: &str = "gateway_state.json";

/// S2-18. Copies each seed whose destination has no entry at all.
pub fn first_boot_seeds(ctx: &Ctx) {
    let Some(home) = &ctx.home_dir else { return };
    for &(dest, src, mode) in FIRST_BOOT_SEEDS {
        let name = OsStr::new(dest);
        match home.stat(name) {
            Ok(Some(m)) if m.is_symlink() => {
                ctx.report.warn_refusing("seed", &home.child(name));
                continue;
            }
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => {
                ctx.report.warn_err(&e);
                continue;
            }
        }
        // The source is an image file: root's, resolved normally.
        let host = ctx.root.path(src);
        match std::fs::metadata(&host) {
            Ok(m) if m.is_file() => {}
            _ => continue,
        }
        let content = match crate::guarded::read_image_file(ctx.root, src, crate::guarded::IMAGE_FILE_LIMIT) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                ctx.report.warn_err(&e);
                continue;
            }
        };
        match atomic::create_exclusive(home, ctx.report, name, &content, mode, ctx.new_file_owner()) {
            Ok(Created::Created) => {
                ctx.report
                    .info_made(format_args!("Seeded {}", display_path(&home.child(name))));
            }
            Ok(_) => {}
            Err(e) => ctx.report.warn_err(&e),
        }
    }
}

/// Reads `.env`-like `name` in `dir` for editing. `Ok(None)` when absent; `Err(())` after a warning
/// (`action` names the refused operation for a symlink).
fn read_env_file(ctx: &Ctx, dir: &Dir, name: &OsStr, action: &str) -> Result<Option<(Vec<u8>, Meta)>, ()> {
    match atomic::read_for_rewrite(dir, name, ENV_LIMIT) {
        Ok(Entry::Found(x)) => Ok(Some(x)),
        Ok(Entry::Missing) => Ok(None),
        Ok(Entry::Symlink) => {
            ctx.report.warn_refusing(action, &dir.child(name));
            Err(())
        }
        Ok(Entry::Other(_)) => {
            ctx.report.warn(format_args!(
                "{} is not a regular file; not editing it — continuing",
                display_path(&dir.child(name))
            ));
            Err(())
        }
        Err(e) => {
            ctx.report.warn_err(&e);
            Err(())
        }
    }
}

/// Replaces the content of an existing file (CM-07). Root refuses to rewrite a hard-linked file it did
/// not give the user: the rename would leave the other link alone, but the copy would carry a foreign
/// file's content into the volume.
fn rewrite_env_file(ctx: &Ctx, dir: &Dir, name: &OsStr, meta: &Meta, content: &[u8]) -> bool {
    if ctx.is_root && meta.nlink > 1 && meta.uid != ctx.u0 && meta.uid != ctx.account.uid {
        ctx.report.warn(format_args!(
            "refusing rewrite of hard-linked file {} ({} links) — continuing",
            display_path(&dir.child(name)),
            meta.nlink
        ));
        return false;
    }
    match atomic::rewrite(dir, ctx.report, name, meta, content) {
        Ok(()) => true,
        Err(e) => {
            ctx.report.warn_err(&e);
            false
        }
    }
}

/// S2-19. Keeps the loopback gateway api_server usable: an operator key from the environment wins,
/// otherwise a key is generated once into `.env`.
pub fn api_server_key(ctx: &Ctx) {
    let Some(home) = &ctx.home_dir else { return };
    let report = ctx.report;
    let name = OsStr::new(".env");
    let env_path = home.child(name);

    let current = match read_env_file(ctx, home, name, "append") {
        Ok(c) => c,
        // With a key from the environment the operator's setting is in effect whatever `.env` is.
        Err(()) if ctx.env_non_empty(API_SERVER_KEY).is_some() => None,
        Err(()) => return,
    };
    let env_value = ctx.env_non_empty(API_SERVER_KEY);
    let action = dotenv::decide_api_key(
        env_value.as_ref().map(|v| v.as_bytes()),
        current.as_ref().map(|(c, _)| c.as_slice()),
    );
    match action {
        KeyAction::Keep => return,
        KeyAction::Generate => {}
        KeyAction::UseEnvironment { shadowed, too_short } => {
            if shadowed {
                report.warn(format_args!(
                    "API_SERVER_KEY is set in both the container environment and {}; the .env value wins at runtime — continuing",
                    display_path(&env_path)
                ));
            }
            if too_short {
                report.warn(
                    "API_SERVER_KEY from the container environment is shorter than 16 characters; the api_server will refuse to start — continuing",
                );
            }
            if let Some((content, meta)) = &current {
                if let Some(clean) = dotenv::remove_empty_key_lines(content, API_SERVER_KEY) {
                    rewrite_env_file(ctx, home, name, meta, &clean);
                }
            }
            report.info("API_SERVER_KEY provided via container environment — skipping generation");
            return;
        }
    }
    let key = match dotenv::generate_key() {
        Ok(k) => k,
        Err(e) => return report.warn_err(&SysError::new("getrandom", &env_path, e)),
    };
    let written = match current {
        Some((content, meta)) => {
            let new = dotenv::with_generated_key(&content, API_SERVER_KEY, &key);
            rewrite_env_file(ctx, home, name, &meta, &new)
        }
        None => {
            let new = dotenv::with_generated_key(b"", API_SERVER_KEY, &key);
            match atomic::create_exclusive(home, report, name, &new, 0o600, ctx.new_file_owner()) {
                Ok(Created::Created) => true,
                Ok(Created::Existed) => {
                    // Someone created it meanwhile; their content stays, the key is appended.
                    match read_env_file(ctx, home, name, "append") {
                        Ok(Some((content, meta))) if !dotenv::has_key_line(&content, API_SERVER_KEY) => {
                            let new = dotenv::with_generated_key(&content, API_SERVER_KEY, &key);
                            rewrite_env_file(ctx, home, name, &meta, &new)
                        }
                        _ => false,
                    }
                }
                Err(_) => {
                    report.warn(format_args!(
                        "could not create {} — gateway api_server (cron fires) will be unavailable — continuing",
                        display_path(&env_path)
                    ));
                    false
                }
            }
        }
    };
    if written {
        report.info_made("Generated API_SERVER_KEY for the loopback gateway api_server");
    }
}

/// S2-20. Mirrors the routing-override variables into H's `.env` and every profile's `.env` as managed
/// lines; hand-written lines are never touched when a variable is unset.
pub fn routing_override_sync(ctx: &Ctx) {
    let Some(home) = &ctx.home_dir else { return };
    let report = ctx.report;
    // Values to sync; `None` = unset or empty (managed lines go). A value with a line break is skipped
    // entirely: it cannot be one line (a `\r` would inject a second variable), and removing the old line
    // would lose the operator's setting.
    let mut wanted: Vec<(&str, Option<Vec<u8>>)> = Vec::new();
    for &var in ROUTING_VARIABLES {
        match ctx.env_non_empty(var) {
            None => wanted.push((var, None)),
            Some(v) => match dotenv::line_break_in(v.as_bytes()) {
                Some(what) => report.warn(format_args!("{var} contains {what}; not synced — continuing")),
                None => wanted.push((var, Some(v.as_bytes().to_vec()))),
            },
        }
    }
    sync_file(ctx, home, &wanted);
    let profiles = match home.subdir("profiles") {
        Ok(Entry::Found(d)) => d,
        Ok(Entry::Symlink) => return report.warn_refusing("sync", &home.child("profiles")),
        Ok(_) => return,
        Err(e) => return report.warn_err(&e),
    };
    let names = match profiles.list() {
        Ok(n) => n,
        Err(e) => return report.warn_err(&e),
    };
    for (name, _) in names {
        match profiles.subdir(&name) {
            Ok(Entry::Found(p)) => sync_file(ctx, &p, &wanted),
            Ok(Entry::Symlink) => report.warn_refusing("sync", &profiles.child(&name)),
            Ok(_) => {}
            Err(e) => report.warn_err(&e),
        }
    }
}

/// One `.env`: every variable applied in memory, then at most one write.
fn sync_file(ctx: &Ctx, dir: &Dir, wanted: &[(&str, Option<Vec<u8>>)]) {
    let name = OsStr::new(".env");
    let path = dir.child(name);
    let current = match read_env_file(ctx, dir, name, "sync") {
        Ok(c) => c,
        Err(()) => return,
    };
    let mut content = current.as_ref().map(|(c, _)| c.clone()).unwrap_or_default();
    let mut messages = Vec::new();
    for (var, value) in wanted {
        // A missing file has no managed lines to remove.
        if value.is_none() && current.is_none() {
            continue;
        }
        let (next, change) = dotenv::sync_managed(&content, var, value.as_deref());
        match change {
            SyncChange::Unchanged => continue,
            SyncChange::Removed => messages.push(format!(
                "Removed {var} from {} (no longer set in the container environment)",
                display_path(&path)
            )),
            SyncChange::Synced => messages.push(format!(
                "Synced {var} from the container environment into {}",
                display_path(&path)
            )),
        }
        content = next;
    }
    if messages.is_empty() {
        return;
    }
    let ok = match &current {
        Some((_, meta)) => rewrite_env_file(ctx, dir, name, meta, &content),
        None => {
            match atomic::create_exclusive(dir, ctx.report, name, &content, 0o600, ctx.new_file_owner()) {
                Ok(Created::Created) => true,
                Ok(Created::Existed) => {
                    ctx.report.warn(format_args!(
                        "{} appeared while syncing; not synced this boot — continuing",
                        display_path(&path)
                    ));
                    false
                }
                Err(e) => {
                    ctx.report.warn_err(&e);
                    false
                }
            }
        }
    };
    if ok {
        for m in messages {
            ctx.report.info_made(m);
        }
    }
}

/// S2-27. `HERMES_GATEWAY_BOOTSTRAP_STATE=running` seeds `gateway_state.json` once.
pub fn gateway_state_seed(ctx: &Ctx) {
    if ctx.env_os("HERMES_GATEWAY_BOOTSTRAP_STATE").as_deref() != Some(OsStr::new("running")) {
        return;
    }
    let Some(home) = &ctx.home_dir else { return };
    let name = OsStr::new(GATEWAY_STATE_FILE);
    match home.stat(name) {
        Ok(Some(m)) if m.is_symlink() => return ctx.report.warn_refusing("seed", &home.child(name)),
        Ok(Some(_)) => return,
        Ok(None) => {}
        Err(e) => return ctx.report.warn_err(&e),
    }
    let content = b"{\"gateway_state\":\"running\"}\n";
    match atomic::create_exclusive(home, ctx.report, name, content, 0o644, ctx.new_file_owner()) {
        Ok(Created::Created) => ctx.report.info_made(format_args!(
            "Seeded {} with gateway_state running",
            display_path(&home.child(name))
        )),
        Ok(_) => {}
        Err(e) => ctx.report.warn_err(&e),
    }
}
