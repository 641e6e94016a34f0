//! Core of hermes-boot: every system effect the boot programs have lives here, one module per domain.
//!
//! The binaries (`stage2-setup`, `supervise-perms`, `reconcile-profiles`, `main-wrapper`) only parse their
//! arguments, call into this crate, print the report and pick the exit code.
//!
//! Security model: everything under `$HERMES_HOME` (and anything else the runtime user can write) is treated
//! as hostile while running as root. Such paths are only ever touched through [`guarded`] directory
//! descriptors, never by path.

pub mod config;
pub mod display;
pub mod error;
pub mod owner;
pub mod report;
pub mod root;

pub mod account_db;
pub mod account_line;
pub mod accounts;
pub mod anchor;
pub mod atomic;
pub mod boot_log;
pub mod boot_record;
pub mod capabilities;
pub mod chown_refusal;
pub mod doctor;
pub mod guarded;
pub mod handover;
pub mod nss_entry;
pub mod ownership;
pub mod privdrop;

pub mod cmd_stdin;
pub mod container_env;
pub mod data_home;
pub mod dotenv;
pub mod ids;
pub mod routing;
pub mod wrapper;

pub mod gateway_state;
pub mod profiles;
pub mod reconcile;
pub mod s6_command;
pub mod s6_perms;

pub mod registrar;
pub mod registration;
pub mod requests;
pub mod s6_slot;
pub mod stage2;
