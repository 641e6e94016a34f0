//! The request protocol between the runtime user's `register`/`unregister` and the profile registrar
//! (`reconcile-profiles watch`, root): the runtime user never writes the scan directory, it leaves requests
//! in the profile directories it owns and waits for the registrar to act on them.
//!
//! - the unregister marker ([`UNREGISTER_MARKER`]): recorded by `unregister`, withdrawn by `register`; root
//!   only tests for the entry's existence, without following symlinks, and never reads it;
//! - the nudge: an entry created and removed in `H/profiles` so the registrar looks now;
//! - the wait: for the slot to appear (and run) or to go, within the caller's timeout.
//!
//! `register`/`unregister` (crate::registration) use it as the runtime user; the registrar and the boot
//! test for the marker.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{SysError, SysResult};
use crate::guarded::{Dir, Entry};
use crate::owner::Owner;
use crate::profiles::DEFAULT_PROFILE;
use crate::report::Report;
use crate::root::RootPrefix;
use crate::s6_slot::slot_name;

/// How long `register` waits for the registrar by default.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `unregister` waits by default (the registrar stops the gateway first: RP-19 allows 10 s).
pub const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(20);
const REQUEST_POLL: Duration = Duration::from_millis(20);

/// A request to keep a profile's gateway unregistered while its directory exists: an entry of this name
/// in the profile directory (`H` for the root profile).
pub const UNREGISTER_MARKER: &str = ".gateway-unregistered";

/// Whether the profile directory holds an [`UNREGISTER_MARKER`] (an entry of any type counts).
pub fn unregister_requested(dir: &Dir) -> SysResult<bool> {
    Ok(dir.stat(UNREGISTER_MARKER)?.is_some())
}

/// Records `unregister`'s request in the profile directory ([`UNREGISTER_MARKER`]), so neither the
/// registrar nor the next boot gives the profile a slot while its directory exists.
pub fn record_unregister_request(dir: &Dir, report: &Report, owner: Option<Owner>) -> Result<(), SysError> {
    crate::atomic::create_exclusive(dir, report, OsStr::new(UNREGISTER_MARKER), b"", 0o644, owner).map(|_| ())
}

/// Withdraws an `unregister` request (`register`).
pub fn clear_unregister_request(dir: &Dir, report: &Report) -> Result<(), SysError> {
    dir.unlink(report, UNREGISTER_MARKER).map(|_| ())
}

/// Waits until `done` holds, polling every 20 ms; false on timeout.
pub(crate) fn wait_for(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(REQUEST_POLL);
    }
}

pub(crate) fn slot_exists(scandir: &Dir, profile: &str) -> bool {
    matches!(scandir.stat(slot_name(profile)), Ok(Some(_)))
}

/// Creates and removes an entry in `H/profiles` (`H` for the root profile): an inotify event that makes
/// the registrar look at the profiles now, even when nothing else changed. Not in the profile directory:
/// the registrar watches that only once the profile has a slot.
pub(crate) fn nudge(root: &RootPrefix, home: &Path, profile: &str) {
    let Ok(Entry::Found(home)) = Dir::open_anchor(root, home) else {
        return;
    };
    let dir = if profile == DEFAULT_PROFILE {
        home
    } else {
        match home.subdir("profiles") {
            Ok(Entry::Found(d)) => d,
            _ => return,
        }
    };
    let name = format!(".gateway-register-request.{}", std::process::id());
    if rustix::fs::mknodat(
        dir.fd(),
        name.as_str(),
        rustix::fs::FileType::RegularFile,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .is_ok()
    {
        let _ = rustix::fs::unlinkat(dir.fd(), name.as_str(), rustix::fs::AtFlags::empty());
    }
}
