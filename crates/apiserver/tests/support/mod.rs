//! The in-process API server for these tests is `skiff_apiserver::testing`.

#[allow(unused_imports)]
pub use skiff_apiserver::testing::{InProcess, start};
