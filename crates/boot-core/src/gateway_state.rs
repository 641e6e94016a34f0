//! A profile's recorded gateway state (SPEC RP-06) and the way its last run ended (RP-07).
//!
//! The files live in the profile directory, which the runtime user writes; they are read as root, so they
//! are opened without following symlinks, size-capped, and any content at all — garbage, a 10,000-level
//! nested array, a non-string value — yields an answer instead of stopping the boot (B11).

use std::ffi::OsStr;

use crate::display::display_path;
use crate::guarded::{Dir, Entry};
use crate::report::Report;

/// `gateway_state.json`, relative to a profile directory.
pub const STATE_FILE: &str = "gateway_state.json";
/// Largest state or lifecycle file that is read (RP-06).
pub const STATE_LIMIT: u64 = 1 << 20;

/// What a state file says the gateway should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorState {
    /// A JSON string value, as written.
    Text(String),
    /// Any other JSON value, as its compact JSON text; it never counts as `running`.
    Other(String),
}

impl PriorState {
    pub fn is_running(&self) -> bool {
        matches!(self, PriorState::Text(s) if s == "running")
    }
    pub fn as_str(&self) -> &str {
        match self {
            PriorState::Text(s) | PriorState::Other(s) => s,
        }
    }
}

/// `prior_state=` of the report and log lines: the value (escaped: the runtime user wrote it), or `None`.
pub fn display_prior(p: &Option<PriorState>) -> String {
    p.as_ref()
        .map(|s| crate::display::display_bytes(s.as_str().as_bytes()))
        .unwrap_or_else(|| "None".to_string())
}

/// Whether an optional prior state is the string `running`.
pub fn is_running(p: &Option<PriorState>) -> bool {
    p.as_ref().is_some_and(PriorState::is_running)
}

/// Why a file's bytes could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    NotUtf8,
    NotJson(String),
    NotObject,
}

/// Parses the bytes of a JSON object file: UTF-8 with an optional BOM. serde_json limits nesting to 128
/// levels, so a deeply nested document is an error, never a stack overflow.
pub fn parse_object(bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, Unreadable> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| Unreadable::NotUtf8)?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(Unreadable::NotObject),
        Err(e) => Err(Unreadable::NotJson(e.to_string())),
    }
}

/// RP-06 on an already parsed object: `desired_state` when present and not null, else `gateway_state` with
/// `draining`/`degraded` read as `running`.
pub fn prior_from_object(obj: &serde_json::Map<String, serde_json::Value>) -> Option<PriorState> {
    use serde_json::Value;
    let pick = |v: &Value, map_transient: bool| -> Option<PriorState> {
        match v {
            Value::Null => None,
            Value::String(s) if map_transient && (s == "draining" || s == "degraded") => {
                Some(PriorState::Text("running".to_string()))
            }
            Value::String(s) => Some(PriorState::Text(s.clone())),
            other => Some(PriorState::Other(other.to_string())),
        }
    };
    match obj.get("desired_state") {
        Some(v) if !v.is_null() => pick(v, false),
        _ => obj.get("gateway_state").and_then(|v| pick(v, true)),
    }
}

/// RP-06 on raw bytes.
pub fn parse_prior_state(bytes: &[u8]) -> Result<Option<PriorState>, Unreadable> {
    parse_object(bytes).map(|o| prior_from_object(&o))
}

/// Reads `D/gateway_state.json` of the profile directory `dir` (RP-06). Every failure is one warning and
/// `None`; a symlink is refused.
pub fn read_prior_state(dir: &Dir, report: &Report) -> Option<PriorState> {
    let file = dir.child(STATE_FILE);
    let could_not = || {
        report.warn(format_args!(
            "could not read {}; treating as no prior state",
            display_path(&file)
        ))
    };
    match dir.read_regular(STATE_FILE, STATE_LIMIT) {
        Ok(Entry::Found(bytes)) => match parse_prior_state(&bytes) {
            Ok(p) => p,
            Err(_) => {
                could_not();
                None
            }
        },
        Ok(Entry::Missing) => None,
        Ok(Entry::Symlink) => {
            report.warn_refusing("read", &file);
            None
        }
        Ok(Entry::Other(_)) | Err(_) => {
            could_not();
            None
        }
    }
}

/// How the profile's previous gateway run ended (RP-07).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorExit {
    Clean,
    Unclean,
    Unknown,
}

impl PriorExit {
    pub fn label(self) -> &'static str {
        match self {
            PriorExit::Clean => "clean",
            PriorExit::Unclean => "unclean",
            PriorExit::Unknown => "unknown",
        }
    }
}

/// RP-07 on raw bytes: `phase` `exited` → clean, `running` → unclean, anything else → unknown.
pub fn parse_prior_exit(bytes: &[u8]) -> PriorExit {
    match parse_object(bytes) {
        Ok(o) => match o.get("phase").and_then(|v| v.as_str()) {
            Some("exited") => PriorExit::Clean,
            Some("running") => PriorExit::Unclean,
            _ => PriorExit::Unknown,
        },
        Err(_) => PriorExit::Unknown,
    }
}

/// Reads `D/state/gateway.lifecycle.json` (RP-07): same guarded reading as RP-06, never a warning.
pub fn read_prior_exit(dir: &Dir) -> PriorExit {
    let Ok(Entry::Found(state)) = dir.subdir(OsStr::new("state")) else {
        return PriorExit::Unknown;
    };
    match state.read_regular("gateway.lifecycle.json", STATE_LIMIT) {
        Ok(Entry::Found(bytes)) => parse_prior_exit(&bytes),
        _ => PriorExit::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::RootPrefix;

    fn text(s: &str) -> Option<PriorState> {
        Some(PriorState::Text(s.to_string()))
    }
    fn other(s: &str) -> Option<PriorState> {
        Some(PriorState::Other(s.to_string()))
    }

    #[test]
    fn desired_state_wins_over_gateway_state() {
        assert_eq!(
            parse_prior_state(br#"{"desired_state":"stopped","gateway_state":"running"}"#),
            Ok(text("stopped"))
        );
        assert_eq!(
            parse_prior_state(br#"{"desired_state":null,"gateway_state":"running"}"#),
            Ok(text("running"))
        );
        assert_eq!(
            parse_prior_state(br#"{"gateway_state":"stopped"}"#),
            Ok(text("stopped"))
        );
        // desired_state is taken as written: draining is only mapped for gateway_state.
        assert_eq!(
            parse_prior_state(br#"{"desired_state":"draining"}"#),
            Ok(text("draining"))
        );
    }

    #[test]
    fn draining_and_degraded_read_as_running_but_not_starting() {
        assert_eq!(
            parse_prior_state(br#"{"gateway_state":"draining"}"#),
            Ok(text("running"))
        );
        assert_eq!(
            parse_prior_state(br#"{"gateway_state":"degraded"}"#),
            Ok(text("running"))
        );
        assert_eq!(
            parse_prior_state(br#"{"gateway_state":"starting"}"#),
            Ok(text("starting"))
        );
        assert_eq!(
            parse_prior_state(br#"{"gateway_state":"startup_failed"}"#),
            Ok(text("startup_failed"))
        );
    }

    #[test]
    fn missing_or_null_means_no_prior_state() {
        assert_eq!(parse_prior_state(b"{}"), Ok(None));
        assert_eq!(parse_prior_state(br#"{"gateway_state":null}"#), Ok(None));
        assert_eq!(parse_prior_state(br#"{"other":"running"}"#), Ok(None));
    }

    #[test]
    fn non_string_values_are_compact_json_and_never_running() {
        let cases: [(&[u8], &str); 5] = [
            (br#"{"desired_state":true}"#, "true"),
            (br#"{"desired_state":1}"#, "1"),
            (br#"{"gateway_state": ["running"]}"#, r#"["running"]"#),
            (br#"{"gateway_state": {"a": "running" }}"#, r#"{"a":"running"}"#),
            (br#"{"desired_state":1.5}"#, "1.5"),
        ];
        for (bytes, shown) in cases {
            let p = parse_prior_state(bytes).unwrap();
            assert_eq!(p, other(shown));
            assert!(!is_running(&p));
            assert_eq!(display_prior(&p), shown);
        }
        assert!(is_running(&text("running")));
        assert_eq!(display_prior(&None), "None");
    }

    #[test]
    fn bom_is_accepted() {
        assert_eq!(
            parse_prior_state(b"\xef\xbb\xbf{\"gateway_state\":\"running\"}\n"),
            Ok(text("running"))
        );
    }

    #[test]
    fn non_objects_and_garbage_are_unreadable() {
        assert_eq!(parse_prior_state(b"[]"), Err(Unreadable::NotObject));
        assert_eq!(parse_prior_state(br#""x""#), Err(Unreadable::NotObject));
        assert_eq!(parse_prior_state(b"null"), Err(Unreadable::NotObject));
        assert_eq!(
            parse_prior_state(b"{\"gateway_state\":\"run\xffning\"}"),
            Err(Unreadable::NotUtf8)
        );
        assert!(matches!(parse_prior_state(b""), Err(Unreadable::NotJson(_))));
        assert!(matches!(
            parse_prior_state(b"{\"a\":"),
            Err(Unreadable::NotJson(_))
        ));
        // A second BOM is not a BOM any more.
        assert!(matches!(
            parse_prior_state(b"\xef\xbb\xbf\xef\xbb\xbf{}"),
            Err(Unreadable::NotJson(_))
        ));
    }

    #[test]
    fn ten_thousand_levels_of_nesting_is_an_error_not_a_stack_overflow() {
        let mut doc = String::from("{\"gateway_state\":");
        doc.push_str(&"[".repeat(10_000));
        doc.push_str(&"]".repeat(10_000));
        doc.push('}');
        match parse_prior_state(doc.as_bytes()) {
            Err(Unreadable::NotJson(msg)) => assert!(msg.contains("recursion limit"), "{msg}"),
            other => panic!("expected a recursion-limit error, got {other:?}"),
        }
    }

    #[test]
    fn prior_exit_labels() {
        assert_eq!(parse_prior_exit(br#"{"phase":"exited"}"#), PriorExit::Clean);
        assert_eq!(parse_prior_exit(br#"{"phase":"running"}"#), PriorExit::Unclean);
        assert_eq!(parse_prior_exit(br#"{"phase":"starting"}"#), PriorExit::Unknown);
        assert_eq!(parse_prior_exit(br#"{"phase":1}"#), PriorExit::Unknown);
        assert_eq!(parse_prior_exit(b"[]"), PriorExit::Unknown);
        assert_eq!(parse_prior_exit(b"\xff"), PriorExit::Unknown);
        assert_eq!(PriorExit::Clean.label(), "clean");
        assert_eq!(PriorExit::Unclean.label(), "unclean");
        assert_eq!(PriorExit::Unknown.label(), "unknown");
    }

    fn anchor(t: &tempfile::TempDir) -> Dir {
        Dir::open_anchor(&RootPrefix::none(), t.path())
            .unwrap()
            .found()
            .unwrap()
    }

    #[test]
    fn reading_files_warns_once_per_bad_file() {
        let t = tempfile::tempdir().unwrap();
        let r = Report::reconcile(false);
        let d = anchor(&t);
        assert_eq!(read_prior_state(&d, &r), None);
        assert_eq!(r.warnings(), 0, "an absent file is not a warning");

        std::fs::write(t.path().join(STATE_FILE), br#"{"gateway_state":"running"}"#).unwrap();
        assert_eq!(read_prior_state(&d, &r), text("running"));
        assert_eq!(r.warnings(), 0);

        std::fs::write(t.path().join(STATE_FILE), b"\xff\xfe").unwrap();
        assert_eq!(read_prior_state(&d, &r), None);
        assert_eq!(r.warnings(), 1);

        let mut big = br#"{"gateway_state":"running","pad":""#.to_vec();
        big.resize(2 << 20, b' ');
        big.extend_from_slice(b"\"}");
        std::fs::write(t.path().join(STATE_FILE), &big).unwrap();
        assert_eq!(read_prior_state(&d, &r), None, "a 2 MiB file is not read");
        assert_eq!(r.warnings(), 2);

        std::fs::remove_file(t.path().join(STATE_FILE)).unwrap();
        std::fs::create_dir(t.path().join(STATE_FILE)).unwrap();
        assert_eq!(read_prior_state(&d, &r), None);
        assert_eq!(r.warnings(), 3);
    }

    #[test]
    fn symlinked_state_file_is_refused_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("s"), br#"{"gateway_state":"running"}"#).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("s"), t.path().join(STATE_FILE)).unwrap();
        let r = Report::reconcile(false);
        assert_eq!(read_prior_state(&anchor(&t), &r), None);
        assert_eq!(r.warnings(), 1);
    }

    #[test]
    fn lifecycle_file_is_read_below_state() {
        let t = tempfile::tempdir().unwrap();
        let d = anchor(&t);
        assert_eq!(read_prior_exit(&d), PriorExit::Unknown);
        std::fs::create_dir(t.path().join("state")).unwrap();
        std::fs::write(
            t.path().join("state/gateway.lifecycle.json"),
            br#"{"phase":"exited"}"#,
        )
        .unwrap();
        assert_eq!(read_prior_exit(&d), PriorExit::Clean);
        std::fs::remove_file(t.path().join("state/gateway.lifecycle.json")).unwrap();
        std::fs::write(t.path().join("elsewhere.json"), br#"{"phase":"running"}"#).unwrap();
        std::os::unix::fs::symlink(
            t.path().join("elsewhere.json"),
            t.path().join("state/gateway.lifecycle.json"),
        )
        .unwrap();
        assert_eq!(
            read_prior_exit(&d),
            PriorExit::Unknown,
            "symlinks are not followed"
        );
    }
}
