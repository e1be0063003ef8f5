//! The server against a real Garage: flows, store enforcement, every error code.
//! Run through `scripts/test.sh`, which starts Garage and sets `TEST_S3_*`.

mod errors;
mod flows;
mod names;
mod store_enforces;
