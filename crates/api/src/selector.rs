//! placeholder: selector
