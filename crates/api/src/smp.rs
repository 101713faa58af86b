//! placeholder: smp
