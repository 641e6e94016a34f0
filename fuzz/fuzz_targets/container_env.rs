//! Container environment directory reader (MW-05): whatever files it holds, every variable read has a
//! valid name and the file's content verbatim (NUL bytes as newlines), and nothing else is read.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use boot_core::container_env::{is_variable_name, read, value_of, CONTAINER_ENV_DIR};
use boot_core::report::Report;
use boot_core::root::RootPrefix;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Entries: `name \x01 content` separated by `\x02`. One root for the whole run, emptied per input.
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    let root = ROOT.get_or_init(|| tempfile::tempdir().expect("tempdir"));
    let dir = root.path().join(CONTAINER_ENV_DIR.trim_start_matches('/'));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("envdir");
    let mut written = Vec::new();
    for entry in data.split(|b| *b == 2).take(16) {
        let mut parts = entry.splitn(2, |b| *b == 1);
        let name = parts.next().unwrap_or_default();
        let content = parts.next().unwrap_or_default();
        let ok_name =
            !name.is_empty() && !name.contains(&b'/') && !name.contains(&0) && name != b"." && name != b"..";
        if ok_name && name.len() < 200 && std::fs::write(dir.join(OsStr::from_bytes(name)), content).is_ok() {
            written.push((name.to_vec(), content.to_vec()));
        }
        let _ = value_of(content);
    }
    let r = RootPrefix::new(root.path());
    let report = Report::main_wrapper();
    let vars = read(&r, &report)
        .expect("read envdir")
        .expect("envdir is a directory");
    for v in &vars {
        assert!(is_variable_name(&v.name), "invalid name {:?} read", v.name);
        let (_, content) = written
            .iter()
            .rev()
            .find(|(n, _)| n.as_slice() == v.name.as_bytes())
            .expect("read a file never written");
        assert_eq!(v.value, value_of(content));
        if let Some(val) = &v.value {
            assert!(!val.as_bytes().contains(&0));
        }
    }
    for (n, _) in &written {
        if is_variable_name(OsStr::from_bytes(n)) {
            assert!(
                vars.iter().any(|v| v.name.as_bytes() == n.as_slice()),
                "variable {n:?} not read"
            );
        }
    }
});
