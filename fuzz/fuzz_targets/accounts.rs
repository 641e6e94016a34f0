//! passwd/group parsing (CM-03): any bytes parse without a panic; what parses is well-formed.
#![no_main]

use boot_core::accounts::{account_from, name_of_uid, parse_group, parse_passwd};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte picks the name to look up; the rest is split into passwd and group at the first NUL.
    let (sel, rest) = data.split_first().unwrap_or((&0, &[]));
    let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let (passwd, group) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
    let entries = parse_passwd(passwd);
    for e in &entries {
        assert!(
            !e.name.contains(':') && !e.name.contains('\n'),
            "bad name {:?}",
            e.name
        );
    }
    let groups = parse_group(group);
    for g in &groups {
        assert!(!g.name.contains(':') && !g.name.contains('\n'));
    }
    let name = match sel % 3 {
        0 => "hermes".to_string(),
        _ => entries
            .get(*sel as usize % entries.len().max(1))
            .map(|e| e.name.clone())
            .unwrap_or_default(),
    };
    if let Some(a) = account_from(passwd, group, &name) {
        assert_eq!(a.name, name);
        assert!(
            a.group_set().contains(&a.gid),
            "primary gid missing from the group set"
        );
        assert_eq!(name_of_uid(passwd, a.uid).is_some(), true);
    }
});
