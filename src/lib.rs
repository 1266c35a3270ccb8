//! RustDB engine: a catalog of objects whose artifacts decay in place.
//!
//! Rooms: `catalog` (the only SQL), `store` (backing files), `policy` and `decay` (pure stage
//! rules), `heat`, `transform` (one module per kind), `engine` (the operations), `scheduler`;
//! `fs_backend` and `api_backend` adapt the engine to the traits of the `fs/` and `api/` crates.
pub mod api_backend;
pub mod catalog;
pub mod clock;
pub mod decay;
pub mod engine;
pub mod faults;
pub mod fs_backend;
pub mod fsck;
pub mod heat;
pub mod policy;
pub mod scheduler;
pub mod store;
pub mod transform;
