//! Shared helpers for the container suite (see tests/).
