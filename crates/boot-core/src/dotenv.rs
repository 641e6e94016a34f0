//! Line editing of `.env` files for stage2-setup (SPEC S2-19, S2-20): bytes in, bytes out.
//!
//! Content is handled as raw bytes and split on `\n` only, so a file with CRLF endings, non-UTF-8 bytes or
//! no trailing newline survives every edit except the lines an edit is about. Nothing here touches the
//! filesystem; the callers read and write through `atomic`.

/// The variable stage2-setup generates for the loopback gateway api_server.
pub const API_SERVER_KEY: &str = "API_SERVER_KEY";

/// The marker that makes a line one stage2-setup owns (S2-20).
pub const MANAGED_SUFFIX: &str = " # stage2-managed";

/// The lines of `content`, without their `\n`. A final line without a newline is a line; the empty
/// remainder after a final newline is not.
fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let empty = content.is_empty();
    body.split(|b| *b == b'\n').filter(move |_| !empty)
}

fn assignment_prefix(key: &str) -> Vec<u8> {
    let mut p = key.as_bytes().to_vec();
    p.push(b'=');
    p
}

/// Removes every line for which `drop` holds; every kept line keeps its own terminator (only the
/// original last line may lack a `\n`, and only if it had none). `None` when no line matched (the caller
/// then does not rewrite the file at all).
fn remove_lines(content: &[u8], drop: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let all: Vec<&[u8]> = lines(content).collect();
    let unterminated_last = if content.ends_with(b"\n") {
        None
    } else {
        all.len().checked_sub(1)
    };
    let mut out = Vec::with_capacity(content.len());
    let mut removed = false;
    for (i, l) in all.iter().enumerate() {
        if drop(l) {
            removed = true;
            continue;
        }
        out.extend_from_slice(l);
        if Some(i) != unterminated_last {
            out.push(b'\n');
        }
    }
    removed.then_some(out)
}

/// A "key line": `KEY=` followed by at least one character.
pub fn is_key_line(line: &[u8], key: &str) -> bool {
    let p = assignment_prefix(key);
    line.len() > p.len() && line.starts_with(&p)
}

/// An "empty key line": exactly `KEY=`.
pub fn is_empty_key_line(line: &[u8], key: &str) -> bool {
    line == assignment_prefix(key).as_slice()
}

/// Whether `content` holds a key line for `key`.
pub fn has_key_line(content: &[u8], key: &str) -> bool {
    lines(content).any(|l| is_key_line(l, key))
}

/// `content` without its empty key lines for `key`; `None` when there were none.
pub fn remove_empty_key_lines(content: &[u8], key: &str) -> Option<Vec<u8>> {
    remove_lines(content, |l| is_empty_key_line(l, key))
}

/// Appends `line` (given without a newline) following the newline rule of S2-19: a `\n` is inserted first
/// when the content is non-empty and does not end in one, and the appended line is terminated.
pub fn append_line(content: &[u8], line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + line.len() + 2);
    out.extend_from_slice(content);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(line);
    out.push(b'\n');
    out
}

/// The new content after generating a key (S2-19): the old content without empty key lines, then the key
/// line under the newline rule.
pub fn with_generated_key(content: &[u8], key: &str, value: &str) -> Vec<u8> {
    let base = remove_empty_key_lines(content, key).unwrap_or_else(|| content.to_vec());
    let mut line = assignment_prefix(key);
    line.extend_from_slice(value.as_bytes());
    append_line(&base, &line)
}

/// What S2-19 does about the api_server key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// The container environment provides the key: no generation. `shadowed`: `.env` has a key line,
    /// which wins at runtime; `too_short`: the environment value is under 16 characters (only reported
    /// when it is the one in effect).
    UseEnvironment {
        shadowed: bool,
        too_short: bool,
    },
    /// `.env` already has a key.
    Keep,
    Generate,
}

/// Decides S2-19 from the environment value (non-empty or `None`) and the current `.env` (`None` when
/// it does not exist).
pub fn decide_api_key(env_value: Option<&[u8]>, env_file: Option<&[u8]>) -> KeyAction {
    let has_key = env_file.is_some_and(|c| has_key_line(c, API_SERVER_KEY));
    match env_value.filter(|v| !v.is_empty()) {
        Some(v) => KeyAction::UseEnvironment {
            shadowed: has_key,
            too_short: !has_key && v.len() < 16,
        },
        None if has_key => KeyAction::Keep,
        None => KeyAction::Generate,
    }
}

/// `NAME=value # stage2-managed`
pub fn managed_line(name: &str, value: &[u8]) -> Vec<u8> {
    let mut l = assignment_prefix(name);
    l.extend_from_slice(value);
    l.extend_from_slice(MANAGED_SUFFIX.as_bytes());
    l
}

/// A line stage2-setup wrote for `name`: `NAME=<anything> # stage2-managed`.
pub fn is_managed_line(line: &[u8], name: &str) -> bool {
    let p = assignment_prefix(name);
    line.starts_with(&p) && line[p.len()..].ends_with(MANAGED_SUFFIX.as_bytes())
}

/// What a routing-override sync did to one variable of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncChange {
    Unchanged,
    /// Managed lines were removed because the variable is no longer set.
    Removed,
    /// The managed line was (re)written.
    Synced,
}

/// The first byte sequence in `value` that a `.env` reader could take for the end of a line, named for a
/// warning: `\n`, `\r` (dotenv parsers split on it), NUL, the other ASCII breaks of Python's
/// `str.splitlines` (VT, FF, FS, GS, RS) and the UTF-8 of NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR.
/// A value written to `.env` must contain none, or one line could become two variables.
pub fn line_break_in(value: &[u8]) -> Option<&'static str> {
    const SEQUENCES: [(&[u8], &str); 11] = [
        (b"\n", "a newline"),
        (b"\r", "a carriage return"),
        (b"\0", "a NUL byte"),
        (b"\x0b", "a vertical tab"),
        (b"\x0c", "a form feed"),
        (b"\x1c", "a file separator"),
        (b"\x1d", "a group separator"),
        (b"\x1e", "a record separator"),
        ("\u{85}".as_bytes(), "a next-line character"),
        ("\u{2028}".as_bytes(), "a line separator"),
        ("\u{2029}".as_bytes(), "a paragraph separator"),
    ];
    SEQUENCES
        .iter()
        .find(|(seq, _)| value.windows(seq.len()).any(|w| w == *seq))
        .map(|(_, name)| *name)
}

/// One variable's sync (S2-20) applied to `content`. `value` `None` (unset or empty): managed lines of
/// `name` are removed and hand-written lines kept. `Some(v)`: nothing when the exact managed line is
/// present, else every `NAME=` line is removed and the managed line appended. The caller rejects values
/// for which [`line_break_in`] finds something before calling this.
pub fn sync_managed(content: &[u8], name: &str, value: Option<&[u8]>) -> (Vec<u8>, SyncChange) {
    match value {
        None => match remove_lines(content, |l| is_managed_line(l, name)) {
            Some(out) => (out, SyncChange::Removed),
            None => (content.to_vec(), SyncChange::Unchanged),
        },
        Some(v) => {
            let wanted = managed_line(name, v);
            if lines(content).any(|l| l == wanted.as_slice()) {
                return (content.to_vec(), SyncChange::Unchanged);
            }
            let p = assignment_prefix(name);
            let base = remove_lines(content, |l| l.starts_with(&p)).unwrap_or_else(|| content.to_vec());
            (append_line(&base, &wanted), SyncChange::Synced)
        }
    }
}

/// 32 bytes from the kernel CSPRNG as 64 lowercase hex characters.
pub fn generate_key() -> std::io::Result<String> {
    let mut buf = [0u8; 32];
    let mut filled = 0;
    while filled < buf.len() {
        let n = rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())
            .map_err(std::io::Error::from)?;
        filled += n;
    }
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = API_SERVER_KEY;

    #[test]
    fn key_lines_need_at_least_one_character() {
        assert!(is_key_line(b"API_SERVER_KEY=x", K));
        assert!(!is_key_line(b"API_SERVER_KEY=", K));
        assert!(is_empty_key_line(b"API_SERVER_KEY=", K));
        assert!(!is_key_line(b"# API_SERVER_KEY=x", K));
        assert!(!is_key_line(b"API_SERVER_KEYS=x", K));
        assert!(!is_key_line(b" API_SERVER_KEY=x", K));
        assert!(has_key_line(b"A=1\nAPI_SERVER_KEY=abc", K));
        assert!(!has_key_line(b"A=1\nAPI_SERVER_KEY=\n", K));
        assert!(!has_key_line(b"", K));
    }

    #[test]
    fn generated_key_follows_the_newline_rule() {
        assert_eq!(with_generated_key(b"", K, "ab"), b"API_SERVER_KEY=ab\n");
        assert_eq!(with_generated_key(b"A=1", K, "ab"), b"A=1\nAPI_SERVER_KEY=ab\n");
        assert_eq!(with_generated_key(b"A=1\n", K, "ab"), b"A=1\nAPI_SERVER_KEY=ab\n");
        assert_eq!(with_generated_key(b"\n", K, "ab"), b"\nAPI_SERVER_KEY=ab\n");
    }

    #[test]
    fn generated_key_drops_empty_key_lines_and_keeps_everything_else() {
        let old = b"# comment\nAPI_SERVER_KEY=\nB=\xff\r\nAPI_SERVER_KEY=\nC=3";
        assert_eq!(
            with_generated_key(old, K, "ff"),
            b"# comment\nB=\xff\r\nC=3\nAPI_SERVER_KEY=ff\n".to_vec()
        );
        // The only line was an empty key line: nothing is left but the key.
        assert_eq!(
            with_generated_key(b"API_SERVER_KEY=", K, "ff"),
            b"API_SERVER_KEY=ff\n"
        );
        assert_eq!(
            with_generated_key(b"API_SERVER_KEY=\n", K, "ff"),
            b"API_SERVER_KEY=ff\n"
        );
    }

    #[test]
    fn removing_empty_key_lines_reports_whether_anything_changed() {
        assert_eq!(remove_empty_key_lines(b"A=1\nAPI_SERVER_KEY=x\n", K), None);
        assert_eq!(
            remove_empty_key_lines(b"A=1\nAPI_SERVER_KEY=\n", K),
            Some(b"A=1\n".to_vec())
        );
        // A last line without newline stays without newline.
        assert_eq!(
            remove_empty_key_lines(b"API_SERVER_KEY=\nA=1", K),
            Some(b"A=1".to_vec())
        );
        // Removing the unterminated last line leaves the kept lines as they were, terminator included.
        assert_eq!(
            remove_empty_key_lines(b"A=1\nAPI_SERVER_KEY=", K),
            Some(b"A=1\n".to_vec())
        );
    }

    #[test]
    fn managed_lines_are_recognised_by_name_and_marker() {
        let n = "NOUS_PORTAL_BASE_URL";
        assert!(is_managed_line(
            b"NOUS_PORTAL_BASE_URL=https://x # stage2-managed",
            n
        ));
        assert!(is_managed_line(b"NOUS_PORTAL_BASE_URL= # stage2-managed", n));
        assert!(!is_managed_line(b"NOUS_PORTAL_BASE_URL=https://x", n));
        assert!(!is_managed_line(
            b"HERMES_PORTAL_BASE_URL=https://x # stage2-managed",
            n
        ));
        assert_eq!(managed_line(n, b"v"), b"NOUS_PORTAL_BASE_URL=v # stage2-managed");
    }

    #[test]
    fn sync_adds_replaces_and_leaves_exact_lines_alone() {
        let n = "NOUS_PORTAL_BASE_URL";
        let (out, c) = sync_managed(b"A=1", n, Some(b"https://p"));
        assert_eq!(c, SyncChange::Synced);
        assert_eq!(out, b"A=1\nNOUS_PORTAL_BASE_URL=https://p # stage2-managed\n");
        // A hand-written line of that name is replaced when the variable is set.
        let (out, c) = sync_managed(b"NOUS_PORTAL_BASE_URL=old\nB=2\n", n, Some(b"new"));
        assert_eq!(c, SyncChange::Synced);
        assert_eq!(out, b"B=2\nNOUS_PORTAL_BASE_URL=new # stage2-managed\n");
        let (again, c) = sync_managed(&out, n, Some(b"new"));
        assert_eq!(c, SyncChange::Unchanged);
        assert_eq!(again, out);
        // A changed value replaces the old managed line.
        let (out2, c) = sync_managed(&out, n, Some(b"newer"));
        assert_eq!(c, SyncChange::Synced);
        assert_eq!(out2, b"B=2\nNOUS_PORTAL_BASE_URL=newer # stage2-managed\n");
    }

    #[test]
    fn unset_variable_removes_only_managed_lines() {
        let n = "HERMES_PORTAL_BASE_URL";
        let old = b"HERMES_PORTAL_BASE_URL=mine\nHERMES_PORTAL_BASE_URL=x # stage2-managed\nZ=1\n";
        let (out, c) = sync_managed(old, n, None);
        assert_eq!(c, SyncChange::Removed);
        assert_eq!(out, b"HERMES_PORTAL_BASE_URL=mine\nZ=1\n");
        let (out, c) = sync_managed(b"HERMES_PORTAL_BASE_URL=mine\n", n, None);
        assert_eq!(c, SyncChange::Unchanged);
        assert_eq!(out, b"HERMES_PORTAL_BASE_URL=mine\n");
        let (out, c) = sync_managed(b"", n, None);
        assert_eq!((out.as_slice(), c), (&b""[..], SyncChange::Unchanged));
    }

    #[test]
    fn environment_key_takes_precedence_over_generation() {
        use KeyAction::*;
        let long = Some(&b"0123456789abcdef"[..]);
        assert_eq!(
            decide_api_key(long, None),
            UseEnvironment {
                shadowed: false,
                too_short: false
            }
        );
        assert_eq!(
            decide_api_key(Some(b"short"), Some(b"A=1\n")),
            UseEnvironment {
                shadowed: false,
                too_short: true
            }
        );
        // The file's key wins at runtime, so the short environment value does not matter then.
        assert_eq!(
            decide_api_key(Some(b"short"), Some(b"API_SERVER_KEY=x\n")),
            UseEnvironment {
                shadowed: true,
                too_short: false
            }
        );
        assert_eq!(decide_api_key(Some(b""), Some(b"API_SERVER_KEY=x")), Keep);
        assert_eq!(decide_api_key(None, Some(b"API_SERVER_KEY=\n")), Generate);
        assert_eq!(decide_api_key(None, None), Generate);
    }

    #[test]
    fn generated_keys_are_64_lowercase_hex_and_differ() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn removing_an_unterminated_last_line_keeps_the_previous_terminator() {
        // Found by fuzzing: the kept line lost its newline when the removed one was the unterminated last.
        let input = b"\xc9\nNOUS_PORTAL_BASE_URL=\xf3";
        let out = remove_lines(input, |l| l.starts_with(b"NOUS_PORTAL_BASE_URL=")).unwrap();
        assert_eq!(out, b"\xc9\n");
        let out = remove_lines(b"A=1\nX=y # stage2-managed", |l| l.starts_with(b"X=")).unwrap();
        assert_eq!(out, b"A=1\n");
        let out = remove_lines(b"A=1\nX=y\nB=2", |l| l.starts_with(b"X=")).unwrap();
        assert_eq!(
            out, b"A=1\nB=2",
            "an unterminated last line that is kept stays unterminated"
        );
    }

    #[test]
    fn every_line_breaking_sequence_is_found() {
        assert_eq!(line_break_in(b"https://portal.example/v1"), None);
        assert_eq!(line_break_in("caf\u{e9}".as_bytes()), None);
        assert_eq!(line_break_in(b"a\nb"), Some("a newline"));
        assert_eq!(
            line_break_in(b"https://x\rOPENAI_BASE_URL=https://attacker.example"),
            Some("a carriage return")
        );
        assert_eq!(line_break_in(b"a\0b"), Some("a NUL byte"));
        for b in [0x0bu8, 0x0c, 0x1c, 0x1d, 0x1e] {
            assert!(line_break_in(&[b'a', b, b'b']).is_some(), "{b:#x}");
        }
        for c in ['\u{85}', '\u{2028}', '\u{2029}'] {
            assert!(line_break_in(format!("a{c}b").as_bytes()).is_some(), "{c:?}");
        }
    }
}
