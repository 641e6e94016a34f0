//! passwd/group editors (CM-09): lines other than the edited one are kept byte for byte, the result ends
//! with a newline, and the edit is what was asked.
#![no_main]

use boot_core::account_db::{add_member, append_group, change_gid, set_primary_gid, set_uid};
use boot_core::accounts::{parse_group, parse_passwd};
use libfuzzer_sys::fuzz_target;

fn lines(b: &[u8]) -> Vec<&[u8]> {
    let body = b.strip_suffix(b"\n").unwrap_or(b);
    if b.is_empty() {
        return vec![];
    }
    body.split(|c| *c == b'\n').collect()
}

/// Same number of lines, at most `max_changed` differ, and the output ends with a newline.
fn check_edit(before: &[u8], after: &[u8], max_changed: usize) {
    assert!(after.ends_with(b"\n"), "edited file does not end with a newline");
    let (a, b) = (lines(before), lines(after));
    assert_eq!(a.len(), b.len(), "line count changed");
    let changed = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(changed <= max_changed, "{changed} lines changed");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let id = u32::from(u16::from_le_bytes([data[0], data[1]]));
    let op = data[2];
    let text = &data[3..];
    let users = parse_passwd(text);
    let user = users
        .first()
        .map(|u| u.name.clone())
        .unwrap_or_else(|| "hermes".into());
    match op % 5 {
        0 => {
            if let Some(out) = set_uid(text, &user, id) {
                check_edit(text, &out, 1);
                let now = parse_passwd(&out);
                assert_eq!(now.iter().find(|u| u.name == user).map(|u| u.uid), Some(id));
            }
        }
        1 => {
            let old = users.first().map(|u| u.gid).unwrap_or(0);
            if let Some((out, n)) = set_primary_gid(text, old, id) {
                check_edit(text, &out, n);
                assert!(n >= 1);
            }
        }
        2 => {
            let old = parse_group(text).first().map(|g| g.gid).unwrap_or(0);
            if let Some((out, name)) = change_gid(text, old, id) {
                check_edit(text, &out, 1);
                assert!(parse_group(&out).iter().any(|g| g.name == name && g.gid == id));
            }
        }
        3 => {
            let gid = parse_group(text).first().map(|g| g.gid).unwrap_or(id);
            if let Some((out, name)) = add_member(text, gid, "hermes") {
                check_edit(text, &out, 1);
                let g = parse_group(&out)
                    .into_iter()
                    .find(|g| g.name == name && g.gid == gid);
                assert!(g.is_some_and(|g| g.members.iter().any(|m| m == "hermes")));
            }
        }
        _ => {
            let out = append_group(text, "hostgid44", id, "hermes");
            assert!(out.ends_with(b"\n"));
            assert!(out.starts_with(text), "append changed the existing content");
            let tail = format!("hostgid44:x:{id}:hermes\n");
            assert!(out.ends_with(tail.as_bytes()));
        }
    }
});
