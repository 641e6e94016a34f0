//! What a program was told, read once at its start: the common options (`--root`, `--runtime-user`) and
//! the process environment. Nothing else in the core reads the environment; every program builds one
//! [`Config`] in `main` and passes it (or its [`Env`]) down.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::root::RootPrefix;

/// The options every program takes (SPEC CM-01 … CM-03), resolved against the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: RootPrefix,
    /// The runtime user's name: `--runtime-user`, else `HERMES_BOOT_USER`, else `hermes`.
    pub user: String,
    pub env: Env,
}

impl Config {
    /// From the command line's `--root` and `--runtime-user` and the process environment.
    pub fn from_args(root: Option<PathBuf>, user: Option<String>) -> Config {
        Config::with_env(root, user, Env::from_process())
    }

    pub fn with_env(root: Option<PathBuf>, user: Option<String>, env: Env) -> Config {
        Config {
            root: RootPrefix::from_arg_or(root, env.get(crate::root::ENV_ROOT)),
            user: crate::accounts::runtime_user_name(user, env.get(crate::accounts::ENV_USER)),
            env,
        }
    }
}

/// The process environment as the program started with it, raw bytes kept; for main-wrapper also
/// the environment the program it execs will get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<OsString, OsString>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars_os().collect(),
        }
    }
    pub fn from_pairs<K: Into<OsString>, V: Into<OsString>>(pairs: impl IntoIterator<Item = (K, V)>) -> Env {
        Env {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }
    pub fn get(&self, name: impl AsRef<OsStr>) -> Option<&OsStr> {
        self.vars.get(name.as_ref()).map(OsString::as_os_str)
    }
    /// Unset or set to the empty string — the shell's `${X:-}` test.
    pub fn is_unset_or_empty(&self, name: impl AsRef<OsStr>) -> bool {
        match self.get(name) {
            None => true,
            Some(v) => v.is_empty(),
        }
    }
    pub fn set(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) {
        self.vars.insert(name.into(), value.into());
    }
    pub fn remove(&mut self, name: impl AsRef<OsStr>) {
        self.vars.remove(name.as_ref());
    }
    pub fn iter(&self) -> impl Iterator<Item = (&OsString, &OsString)> {
        self.vars.iter()
    }

    /// Set and not empty.
    pub fn non_empty(&self, name: impl AsRef<OsStr>) -> Option<&OsStr> {
        self.get(name).filter(|v| !v.is_empty())
    }
}
