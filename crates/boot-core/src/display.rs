//! How bytes become output (SPEC CM-04): the one place where what the runtime user chose (names,
//! values, paths) is turned into text for log lines, reports and JSON.

use std::path::Path;

/// A path for a log line: UTF-8 as is, every other byte as `\xNN` (CM-04).
pub fn display_path(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    display_bytes(p.as_os_str().as_bytes())
}

/// Bytes for a log line, the one place where what the runtime user chose (names, values, paths) becomes
/// output: printable UTF-8 as is; control characters (C0, DEL, C1) and bytes that are not UTF-8 as
/// `\xNN` / `\u{NN}`, so a name can neither start a forged line nor send escape sequences to the
/// operator's terminal.
pub fn display_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\0'..='\x1f' | '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                '\u{80}'..='\u{9f}' => {
                    let _ = write!(out, "\\u{{{:02x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_escapes_invalid_utf8_only() {
        assert_eq!(display_bytes(b"caf\xc3\xa9/\xff\xfe"), "café/\\xff\\xfe");
        assert_eq!(display_bytes(b"plain"), "plain");
    }

    #[test]
    fn display_escapes_every_control_character() {
        assert_eq!(
            display_bytes(b"running\nreconcile: profile=x action=started"),
            "running\\x0areconcile: profile=x action=started"
        );
        assert_eq!(
            display_bytes(b"\x1b[31mred\r\t\x7f"),
            "\\x1b[31mred\\x0d\\x09\\x7f"
        );
        assert_eq!(display_bytes("a\u{85}b\u{9b}c".as_bytes()), "a\\u{85}b\\u{9b}c");
        assert!(!display_bytes(b"1000\n").contains('\n'));
    }
}
