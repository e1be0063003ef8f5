//! The rules both ends of an upload agree on.
//!
//! `upload-core` holds the HTTP contract's wire types ([`wire`]), the constraint
//! checks ([`UploadConstraints::check`]), the multipart part planner
//! ([`plan_parts`]), object-key and filename rules ([`key`]) and the stable
//! error codes ([`ErrorCode`]). The server and the browser client (compiled to
//! `wasm32-unknown-unknown`) call the very same functions, so a file the
//! browser lets through is a file the server accepts, and the other way round.
//! The server reads and writes the wire types with serde; the browser client
//! reads the answers with [`read`] (over the browser's parsed JSON, tested to
//! agree with serde on every type it reads).
//!
//! Architecture invariant: this crate does no I/O, spawns nothing and depends
//! on no async runtime.
#![warn(missing_docs)]

mod constraints;
mod error;
pub mod key;
mod plan;
pub mod read;
pub mod wire;

pub use constraints::{
    AcceptPattern, ConstraintError, DEFAULT_CONTENT_TYPE, MAX_CONTENT_TYPE_LEN, MAX_NAME_LEN, UploadConstraints,
    normalize_content_type,
};
pub use error::ErrorCode;
pub use plan::{MAX_OBJECT_SIZE, MAX_PART_COUNT, MAX_PART_SIZE, MIN_PART_SIZE, PartPlan, PlanError, plan_parts};
