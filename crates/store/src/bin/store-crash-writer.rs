//! Test helper for `tests/crash.rs`: creates keys in an embedded store as fast as it can and prints
//! `<revision> <key>` for every acknowledged create, until it is killed.
//!
//! Usage: `store-crash-writer <db-path> [writers]`. Each line is written only after the store acknowledged
//! the write, so every printed key must be in the store after a `kill -9`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use skiff_store::Backend;
use skiff_store::embedded::EmbeddedBackend;

const USAGE: &str = "usage: store-crash-writer <db-path> [writers]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let writers = match args.next().map(|w| w.parse::<usize>()) {
        None => 16,
        Some(Ok(writers)) if writers > 0 => writers,
        Some(_) => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let backend = match EmbeddedBackend::open(&path) {
        Ok(backend) => Arc::new(backend),
        Err(err) => {
            eprintln!("opening the store at {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let backend = backend.clone();
        tasks.spawn(async move {
            for i in 0u64.. {
                let key = format!("/crash/w{writer:03}/{i:010}");
                let kv = backend
                    .create(&key, format!("value of {key}").into_bytes())
                    .await
                    .map_err(|err| format!("creating {key}: {err}"))?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{} {}", kv.mod_revision, kv.key)
                    .and_then(|()| out.flush())
                    .map_err(|err| format!("printing an acknowledged key: {err}"))?;
            }
            Ok::<(), String>(())
        });
    }
    // Writers only stop on an error (or when the process is killed).
    if let Some(Ok(Err(err))) = tasks.join_next().await {
        eprintln!("{err}");
    }
    ExitCode::FAILURE
}
