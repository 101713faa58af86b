//! placeholder: validation
