//! Kubernetes API knowledge with no I/O: the resource table, `Status` errors, selectors, defaulting and
//! validation, Table printing, the OpenAPI schema data (and what it drives: OpenAPI documents, strategic
//! merge patch, unknown-field detection) and protobuf request-body decoding.

pub mod crd;
pub mod defaults;
pub mod managedfields;
pub mod openapi;
pub mod protobuf;
pub mod resources;
pub mod selector;
pub mod smp;
pub mod status;
pub mod table;
pub mod validation;

pub use resources::{ResourceInfo, RESOURCES};
pub use status::{ApiError, FieldError};
