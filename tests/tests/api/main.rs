//! The server against a real Garage and against the embedded local backend:
//! flows, store enforcement, every error code. Every test runs on both
//! backends (`<test>::garage` and `<test>::local`); `cargo test` runs the
//! local ones and lists the Garage ones as ignored, `scripts/test.sh` (which
//! starts Garage and sets `TEST_S3_*`) runs both.

mod batch;
mod errors;
mod flows;
mod hardening;
mod hooks;
mod hostile;
mod metrics;
mod names;
mod openapi;
mod scoped_tokens;
mod sniff;
mod store_enforces;
mod sweeper;
mod webhooks;
