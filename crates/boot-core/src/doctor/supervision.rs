//! The supervision tree: s6-overlay's version, the static services' states, the profile registrar.

use std::ffi::OsString;
use std::path::Path;

use crate::guarded::{Dir, Entry};
use crate::reconcile::SlotMode;
use crate::s6_perms::SERVICEDIRS;

use super::{Context, Finding};

const AREA: &str = "services";
/// The service that registers gateway slots for the runtime user in the default (root-owned) mode.
const REGISTRAR: &str = "profile-registrar";

pub(super) fn check(cx: &Context, out: &mut Vec<Finding>) {
    // s6-overlay installs itself as /package/admin/s6-overlay-<version> behind a symlink.
    let version = std::fs::read_link(cx.root.path("/package/admin/s6-overlay"))
        .ok()
        .and_then(|t| {
            t.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("s6-overlay-"))
                .map(str::to_string)
        });
    let services = match Dir::open_anchor(cx.root, Path::new(SERVICEDIRS)) {
        Ok(Entry::Found(d)) => d,
        _ => {
            out.push(
                Finding::ok(
                    AREA,
                    "supervision",
                    format!(
                        "no s6-rc services ({SERVICEDIRS} is absent): the container runs without s6-overlay as PID 1{}",
                        version.as_deref().map(|v| format!(" (s6-overlay {v} is installed)")).unwrap_or_default()
                    ),
                )
                .with("s6_overlay", version.clone().unwrap_or_default()),
            );
            return;
        }
    };
    out.push(
        Finding::ok(
            AREA,
            "supervision",
            format!("s6-overlay {}", version.as_deref().unwrap_or("(version unknown)")),
        )
        .with("s6_overlay", version.unwrap_or_default()),
    );
    let mut names: Vec<OsString> = services
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| {
            let b = std::os::unix::ffi::OsStrExt::as_bytes(n.as_os_str());
            !b.starts_with(b".") && !b.starts_with(b"s6rc-") && !b.starts_with(b"s6-linux-")
        })
        .collect();
    names.sort();
    let mut registrar_up = false;
    for name in &names {
        let shown = name.to_string_lossy().into_owned();
        let path = Path::new(SERVICEDIRS).join(name);
        let text = super::svstat(cx.root, &path).unwrap_or_else(|| "not supervised".to_string());
        let up = text.starts_with("up");
        if shown == REGISTRAR {
            registrar_up = up;
        }
        // `want up` on a service that is down: s6 keeps restarting it and it keeps failing.
        let failing = !up && text.contains("want up");
        let f = if failing {
            Finding::problem(
                AREA,
                "service",
                format!("{shown}: {text}: it keeps failing"),
                "docker logs <container> (its output), then docker restart <container>",
            )
        } else {
            Finding::ok(AREA, "service", format!("{shown}: {text}"))
        };
        out.push(
            f.at(&path)
                .with("service", shown)
                .with("up", up)
                .with("state", text),
        );
    }
    let root_owned = cx.places.slot_mode == SlotMode::RootOwned;
    if root_owned && names.iter().any(|n| n == REGISTRAR) && !registrar_up {
        out.push(Finding::problem(
            AREA,
            "registrar",
            "the profile registrar is not running: `hermes profile create` and gateway registration by the runtime user wait for it in vain",
            "docker restart <container>",
        ));
    }
}
