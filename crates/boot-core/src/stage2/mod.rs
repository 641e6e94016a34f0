//! stage2-setup: the data-volume bootstrap (SPEC section 2), one step per requirement, in SPEC order.

pub mod identity;
