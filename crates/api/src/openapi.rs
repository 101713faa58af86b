//! placeholder: openapi
