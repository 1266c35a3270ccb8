//! RustDB engine: a catalog of objects whose artifacts decay in place.
pub mod transform;
