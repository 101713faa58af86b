//! `skiff-shim`: the container shim as a binary of its own, the same code as `skiff shim`, so this crate's
//! tests (and other crates' tests) can run real containers without building the whole `skiff` binary.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(skiff_runtime::shim::main(&args));
}
