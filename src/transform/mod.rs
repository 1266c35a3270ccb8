//! Type-aware transforms, one module per kind. Filled in by the transform work.
