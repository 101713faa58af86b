//! placeholder: protobuf
