//! The one reading of `/etc/passwd`, `/etc/group` and `/etc/gshadow` lines, shared by the account reader
//! ([`crate::accounts`]) and the editor ([`crate::account_db`]), so that an edit always lands on the line
//! the reader takes for the account.
//!
//! A line describes an account only when it is UTF-8, has the file's number of fields, a name that is
//! neither empty nor a NIS `+`/`-` entry, and numeric ids; every other line is preserved by the editor but
//! never read as an account.

/// A well-formed passwd line (`name:pw:uid:gid:gecos:home:shell`), borrowing from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswdLine<'a> {
    pub name: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub home: &'a str,
}

/// A well-formed group line (`name:pw:gid:member,member`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLine<'a> {
    pub name: &'a str,
    pub gid: u32,
    /// The raw member field; see [`members`].
    pub members: &'a str,
}

/// A well-formed gshadow line (`name:password:admins:members`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GshadowLine<'a> {
    pub name: &'a str,
    pub members: &'a str,
}

/// Index of the uid field of a passwd line.
pub const PASSWD_UID: usize = 2;
/// Index of the gid field of a passwd line.
pub const PASSWD_GID: usize = 3;
/// Index of the gid field of a group line.
pub const GROUP_GID: usize = 2;
/// Index of the member field of a group or gshadow line.
pub const MEMBERS: usize = 3;

/// The lines of `text` without their newline; a last line without a newline is kept, the empty piece after
/// a final newline is not.
pub fn lines(text: &[u8]) -> Vec<&[u8]> {
    if text.is_empty() {
        return Vec::new();
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    body.split(|b| *b == b'\n').collect()
}

pub fn passwd(line: &[u8]) -> Option<PasswdLine<'_>> {
    let f = fields(line, 7)?;
    Some(PasswdLine {
        name: f[0],
        uid: numeric(f[PASSWD_UID])?,
        gid: numeric(f[PASSWD_GID])?,
        home: f[5],
    })
}

pub fn group(line: &[u8]) -> Option<GroupLine<'_>> {
    let f = fields(line, 4)?;
    Some(GroupLine {
        name: f[0],
        gid: numeric(f[GROUP_GID])?,
        members: f[MEMBERS],
    })
}

pub fn gshadow(line: &[u8]) -> Option<GshadowLine<'_>> {
    let f = fields(line, 4)?;
    Some(GshadowLine {
        name: f[0],
        members: f[MEMBERS],
    })
}

/// The names of a member field; empty pieces (`a,,b`, a trailing comma) name nobody.
pub fn members(field: &str) -> impl Iterator<Item = &str> {
    field.split(',').filter(|m| !m.is_empty())
}

fn fields(line: &[u8], min_fields: usize) -> Option<Vec<&str>> {
    let s = std::str::from_utf8(line).ok()?;
    let f: Vec<&str> = s.split(':').collect();
    if f.len() < min_fields || f[0].is_empty() || f[0].starts_with(['+', '-']) {
        return None;
    }
    Some(f)
}

/// ASCII digits that fit a u32; no sign, no spaces, no empty field.
fn numeric(field: &str) -> Option<u32> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_lines_are_accounts() {
        assert_eq!(
            passwd(b"hermes:x:10000:10001::/opt/data:/bin/sh"),
            Some(PasswdLine {
                name: "hermes",
                uid: 10000,
                gid: 10001,
                home: "/opt/data"
            })
        );
        for bad in [
            &b"hermes:x:10000:10001::/opt/data"[..],
            b":x:1:1::/:/bin/sh",
            b"+nis:x:1:1::/:/bin/sh",
            b"-nis:x:1:1::/:/bin/sh",
            b"a:x:-1:1::/:/bin/sh",
            b"a:x: 1:1::/:/bin/sh",
            b"a:x::1::/:/bin/sh",
            b"a:x:1:4294967296::/:/bin/sh",
            b"r\xffw:x:1:1::/:/bin/sh",
        ] {
            assert_eq!(passwd(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            passwd(b"a:x:4294967295:0::/:/bin/sh").map(|p| p.uid),
            Some(u32::MAX)
        );
    }

    #[test]
    fn group_and_gshadow_fields() {
        let g = group(b"render:x:109:alice,,hermes,").unwrap();
        assert_eq!((g.name, g.gid), ("render", 109));
        assert_eq!(members(g.members).collect::<Vec<_>>(), vec!["alice", "hermes"]);
        assert_eq!(group(b"render:x:109"), None);
        let s = gshadow(b"video:!::hermes").unwrap();
        assert_eq!((s.name, s.members), ("video", "hermes"));
        assert_eq!(gshadow(b"video:!:"), None);
    }

    #[test]
    fn lines_drop_only_the_final_newline() {
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"a\n\nb"), vec![&b"a"[..], b"", b"b"]);
        assert_eq!(lines(b"a\nb\n"), vec![&b"a"[..], b"b"]);
    }
}
