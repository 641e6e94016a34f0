//! `.env` editor (S2-19, S2-20): unrelated lines are kept byte for byte and in order, the output ends
//! with a newline after an append, and the managed or generated line is present exactly once.
#![no_main]

use boot_core::dotenv::{
    has_key_line, is_empty_key_line, is_managed_line, managed_line, remove_empty_key_lines, sync_managed,
    with_generated_key, SyncChange, API_SERVER_KEY,
};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "NOUS_PORTAL_BASE_URL";

fn lines(b: &[u8]) -> Vec<&[u8]> {
    if b.is_empty() {
        return vec![];
    }
    b.strip_suffix(b"\n")
        .unwrap_or(b)
        .split(|c| *c == b'\n')
        .collect()
}

/// `kept` (the lines that must survive) appear in `out`, in order, byte for byte.
fn keeps_in_order(kept: &[&[u8]], out: &[u8]) {
    let out_lines = lines(out);
    let mut it = out_lines.iter();
    for k in kept {
        assert!(it.any(|l| l == k), "line {:?} lost", String::from_utf8_lossy(k));
    }
}

fuzz_target!(|data: &[u8]| {
    let (sel, content) = data.split_first().unwrap_or((&0, &[]));
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    // S2-19
    let out = with_generated_key(content, API_SERVER_KEY, key);
    let key_line = format!("{API_SERVER_KEY}={key}\n");
    assert!(out.ends_with(key_line.as_bytes()));
    let kept: Vec<&[u8]> = lines(content)
        .into_iter()
        .filter(|l| !is_empty_key_line(l, API_SERVER_KEY))
        .collect();
    keeps_in_order(&kept, &out);
    assert!(has_key_line(&out, API_SERVER_KEY));
    if let Some(r) = remove_empty_key_lines(content, API_SERVER_KEY) {
        assert!(r.len() < content.len());
        assert!(lines(&r).iter().all(|l| !is_empty_key_line(l, API_SERVER_KEY)));
    }
    // S2-20: the value is a slice of the input without newlines (the caller rejects newlines).
    let value: Vec<u8> = content
        .iter()
        .copied()
        .filter(|b| *b != b'\n')
        .take(usize::from(*sel))
        .collect();
    let set = if sel % 4 == 0 {
        None
    } else {
        Some(value.as_slice()).filter(|v| !v.is_empty())
    };
    let (out, change) = sync_managed(content, NAME, set);
    match set {
        None => {
            let kept: Vec<&[u8]> = lines(content)
                .into_iter()
                .filter(|l| !is_managed_line(l, NAME))
                .collect();
            keeps_in_order(&kept, &out);
            assert!(lines(&out).iter().all(|l| !is_managed_line(l, NAME)));
            assert_eq!(change == SyncChange::Unchanged, out == content);
        }
        Some(v) => {
            let wanted = managed_line(NAME, v);
            assert!(
                lines(&out).iter().any(|l| *l == wanted.as_slice()),
                "managed line missing"
            );
            if change == SyncChange::Synced {
                assert!(out.ends_with(b"\n"));
                let prefix = format!("{NAME}=");
                let kept: Vec<&[u8]> = lines(content)
                    .into_iter()
                    .filter(|l| !l.starts_with(prefix.as_bytes()))
                    .collect();
                keeps_in_order(&kept, &out);
                let n = lines(&out)
                    .iter()
                    .filter(|l| l.starts_with(prefix.as_bytes()))
                    .count();
                assert_eq!(n, 1, "more than one {NAME} line after a sync");
            } else {
                assert_eq!(out, content);
            }
        }
    }
    // A second sync with the same value changes nothing (idempotent, S2-01).
    let (again, c2) = sync_managed(&out, NAME, set);
    if set.is_some() {
        assert_eq!(c2, SyncChange::Unchanged);
        assert_eq!(again, out);
    }
});
