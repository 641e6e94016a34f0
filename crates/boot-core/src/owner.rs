//! The owner of a file: a uid and a gid, as `chown` takes them and log lines show them (`1000:1000`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };

    pub fn new(uid: u32, gid: u32) -> Owner {
        Owner { uid, gid }
    }
}

impl From<(u32, u32)> for Owner {
    fn from((uid, gid): (u32, u32)) -> Owner {
        Owner { uid, gid }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_uid_colon_gid() {
        assert_eq!(Owner::new(1000, 100).to_string(), "1000:100");
        assert_eq!(Owner::from((0, 5)), Owner { uid: 0, gid: 5 });
    }
}
