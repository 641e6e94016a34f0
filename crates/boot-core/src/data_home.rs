//! Where the data volume is: `HERMES_HOME`, else `/opt/data` (the image's `VOLUME`). Every program that
//! looks for the volume asks here.

use std::path::PathBuf;

/// The variable naming the volume.
pub const ENV: &str = "HERMES_HOME";
/// The image's volume, used when the variable is unset or empty.
pub const DEFAULT: &str = "/opt/data";

/// H: `HERMES_HOME` as given (raw bytes kept), or [`DEFAULT`] when unset or empty.
pub fn of(env: &crate::config::Env) -> PathBuf {
    env.non_empty(ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT))
}
