//! placeholder: bundle
