//! placeholder: defaults
