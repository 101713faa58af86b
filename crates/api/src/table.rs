//! placeholder: table
