//! The last boot: the warning and error lines its programs kept in the boot record.

use crate::boot_record;

use super::{Context, Finding, Status};

const AREA: &str = "boot";
/// Lines shown one by one; the rest are counted (the record holds up to 64 KiB of them).
const SHOWN: usize = 20;

pub(super) fn check(cx: &Context, out: &mut Vec<Finding>) {
    let path = format!("{}/{}", boot_record::DIR, boot_record::FILE);
    let lines = match boot_record::read(cx.root) {
        Ok(Some(lines)) => lines,
        Ok(None) => {
            out.push(
                Finding::ok(
                    AREA,
                    "last-boot",
                    format!("no boot record ({path} is absent): the boot has not run, or ran as a dry run"),
                )
                .with("recorded", false),
            );
            return;
        }
        Err(e) => {
            out.push(
                Finding::ok(AREA, "last-boot", format!("boot record unreadable: {e}"))
                    .with("recorded", false),
            );
            return;
        }
    };
    out.push(
        Finding::ok(
            AREA,
            "last-boot",
            match lines.len() {
                0 => "the last boot printed no warnings".to_string(),
                n => format!(
                    "the last boot printed {} (also in docker logs <container>)",
                    crate::report::plural(n as u32, "warning or error line")
                ),
            },
        )
        .at(&path)
        .with("recorded", true)
        .with("lines", lines.len()),
    );
    for line in lines.iter().take(SHOWN) {
        out.push(Finding {
            status: Status::Warning,
            ..Finding::ok(AREA, "boot-warning", line.clone()).with("line", line.clone())
        });
    }
    if lines.len() > SHOWN {
        out.push(Finding::ok(
            AREA,
            "boot-warning",
            format!("… and {} more in {path}", lines.len() - SHOWN),
        ));
    }
}
