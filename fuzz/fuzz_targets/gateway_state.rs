//! RP-06/RP-07 readers: any bytes parse without a panic, and only the string `running` reads as running.
#![no_main]

use boot_core::gateway_state::{
    parse_object, parse_prior_exit, parse_prior_state, prior_from_object, PriorState,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let prior = parse_prior_state(data);
    if let Ok(Some(p)) = &prior {
        assert_eq!(p.is_running(), matches!(p, PriorState::Text(s) if s == "running"));
        if let PriorState::Other(text) = p {
            // A non-string is shown as compact JSON, never as a bare word that could read as a state.
            assert!(serde_json_is_not_string(text), "non-string shown as {text:?}");
        }
    }
    // The two-step path agrees with the one-step one.
    match parse_object(data) {
        Ok(obj) => assert_eq!(prior.ok(), Some(prior_from_object(&obj))),
        Err(_) => assert!(prior.is_err()),
    }
    let _ = parse_prior_exit(data).label();
});

fn serde_json_is_not_string(text: &str) -> bool {
    !text.starts_with('"')
}
