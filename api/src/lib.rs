//! RustDB REST API. Filled in by the API work.
