//! placeholder: cni
