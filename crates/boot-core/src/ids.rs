//! Remap targets for the runtime user (SPEC S2-06): which variable supplies the uid or gid, and whether its
//! value is usable.
//!
//! Values are compared as numbers, never as strings (`0099` is 99), and a string of any length is handled
//! without overflow: a 40-digit value is simply out of range.

/// Smallest and largest id a remap may target (0 is root; 65535 is `(uid_t)-1` on 16-bit tools).
pub const MIN_ID: u32 = 1;
pub const MAX_ID: u32 = 65534;

/// A variable and its alias, in precedence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdVars {
    pub primary: &'static str,
    pub alias: &'static str,
}

pub const UID_VARS: IdVars = IdVars {
    primary: "HERMES_UID",
    alias: "PUID",
};
pub const GID_VARS: IdVars = IdVars {
    primary: "HERMES_GID",
    alias: "PGID",
};

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Neither variable is set to a non-empty value.
    Unset,
    /// `var` holds a valid id.
    Valid { var: &'static str, id: u32 },
    /// `var` won and its value is unusable; the remap is skipped (there is no fallback to the alias).
    Invalid { var: &'static str, value: String },
}

/// The outcome of [`select`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub target: Target,
    /// Both variables are set and name different ids: stage2 prints `<primary> overrides <alias>`.
    pub overrides: bool,
}

/// Parses a remap value: one or more ASCII digits (leading zeros allowed, no sign, no whitespace) whose
/// value is `MIN_ID..=MAX_ID`.
pub fn parse_id(value: &str) -> Option<u32> {
    let digits = canonical_digits(value)?;
    // At most five significant digits can be in range; longer strings are rejected before parsing.
    if digits.len() > 5 {
        return None;
    }
    let n: u32 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    (MIN_ID..=MAX_ID).contains(&n).then_some(n)
}

/// The digits of `value` without leading zeros (`""` for zero), or `None` when it is not all ASCII digits.
fn canonical_digits(value: &str) -> Option<&str> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.trim_start_matches('0'))
}

/// Whether two values name the same id: numerically for digit strings of any length, textually otherwise.
pub fn same_value(a: &str, b: &str) -> bool {
    match (canonical_digits(a), canonical_digits(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Picks the source of one remap target: the primary variable when non-empty, else the alias.
/// `env` returns a variable's value; a value that is not UTF-8 should be passed lossily converted, which
/// makes it invalid here.
pub fn select(vars: IdVars, env: &dyn Fn(&str) -> Option<String>) -> Selection {
    let primary = env(vars.primary).filter(|v| !v.is_empty());
    let alias = env(vars.alias).filter(|v| !v.is_empty());
    let overrides = match (&primary, &alias) {
        (Some(p), Some(a)) => !same_value(p, a),
        _ => false,
    };
    let (var, value) = match (primary, alias) {
        (Some(p), _) => (vars.primary, p),
        (None, Some(a)) => (vars.alias, a),
        (None, None) => {
            return Selection {
                target: Target::Unset,
                overrides,
            }
        }
    };
    let target = match parse_id(&value) {
        Some(id) => Target::Valid { var, id },
        None => Target::Invalid { var, value },
    };
    Selection { target, overrides }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn validation_table() {
        let forty_nines = "9".repeat(40);
        let forty_digit_small = format!("{}{}", "0".repeat(39), "7");
        let cases: &[(&str, Option<u32>)] = &[
            ("", None),
            ("abc", None),
            ("0", None),
            ("000", None),
            ("65535", None),
            ("65534", Some(65534)),
            ("1", Some(1)),
            ("0099", Some(99)),
            ("+1", None),
            ("-1", None),
            (" 1000", None),
            ("1000 ", None),
            ("1000\n", None),
            ("10_000", None),
            ("１２", None), // full-width digits are not ASCII
            (&forty_nines, None),
            (&forty_digit_small, Some(7)),
            ("4294967296", None),
            ("99999", None),
        ];
        for (value, want) in cases {
            assert_eq!(parse_id(value), *want, "value {value:?}");
        }
    }

    #[test]
    fn same_value_compares_numbers_of_any_length() {
        assert!(same_value("0099", "99"));
        assert!(same_value(&format!("{}5", "0".repeat(45)), "5"));
        assert!(!same_value(&"9".repeat(40), &"9".repeat(41)));
        assert!(!same_value("1000", "1001"));
        assert!(same_value("abc", "abc"));
        assert!(!same_value("abc", "0"));
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn primary_wins_over_alias() {
        let s = select(UID_VARS, &env_of(&[("HERMES_UID", "1000"), ("PUID", "2000")]));
        assert_eq!(
            s.target,
            Target::Valid {
                var: "HERMES_UID",
                id: 1000
            }
        );
        assert!(s.overrides);
    }

    #[test]
    fn alias_used_when_primary_unset_or_empty() {
        for env in [
            env_of(&[("PGID", "100")]),
            env_of(&[("HERMES_GID", ""), ("PGID", "100")]),
        ] {
            let s = select(GID_VARS, &env);
            assert_eq!(s.target, Target::Valid { var: "PGID", id: 100 });
            assert!(!s.overrides);
        }
    }

    #[test]
    fn invalid_primary_does_not_fall_back_to_alias() {
        let s = select(UID_VARS, &env_of(&[("HERMES_UID", "abc"), ("PUID", "1000")]));
        assert_eq!(
            s.target,
            Target::Invalid {
                var: "HERMES_UID",
                value: "abc".into()
            }
        );
        assert!(s.overrides);
    }

    #[test]
    fn equal_values_do_not_print_overrides() {
        let s = select(UID_VARS, &env_of(&[("HERMES_UID", "0099"), ("PUID", "99")]));
        assert_eq!(
            s.target,
            Target::Valid {
                var: "HERMES_UID",
                id: 99
            }
        );
        assert!(!s.overrides);
        let s = select(UID_VARS, &env_of(&[("HERMES_UID", "1000"), ("PUID", "1000")]));
        assert!(!s.overrides);
    }

    #[test]
    fn nothing_set_is_unset() {
        let s = select(GID_VARS, &env_of(&[("HERMES_GID", ""), ("PGID", "")]));
        assert_eq!(s.target, Target::Unset);
        assert!(!s.overrides);
    }

    #[test]
    fn invalid_alias_alone_is_reported_under_its_name() {
        let s = select(GID_VARS, &env_of(&[("PGID", "65535")]));
        assert_eq!(
            s.target,
            Target::Invalid {
                var: "PGID",
                value: "65535".into()
            }
        );
    }
}
