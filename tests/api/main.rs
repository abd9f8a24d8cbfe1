//! Integration tests of the orders API against the real Postgres of `make stack`.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod invariants;
mod limits;
mod orders;
mod overload;
mod persisted;
mod race;
mod readiness;
mod retry;
