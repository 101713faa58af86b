//! `skiff`: the command line. `skiff server` runs the control plane; more roles come with their issues.

mod agent;
mod components;
mod image;
mod join;
mod host_gw;
mod killall;
mod node;
mod server;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "skiff", version, about = "Skiff: the Kubernetes system in one small binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server and its store) and, later, a local node.
    Server(Box<server::ServerArgs>),
    /// Print this server's join token (from `<data-dir>/token`).
    Token {
        #[arg(long, short = 'd', default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
        data_dir: std::path::PathBuf,
    },
    /// The node's images: import archives, list, remove, pull (`<data-dir>/agent/images`).
    Image(image::ImageArgs),
    /// Stop and remove every pod a node agent left under the data dir (stop the agent or server first).
    Killall {
        #[arg(long, short = 'd', default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
        data_dir: std::path::PathBuf,
    },
    /// Join this machine to a server as a node and run its pods.
    Agent(Box<agent::AgentArgs>),
    /// The per-container shim the node agent starts (internal: `skiff shim --id ... --bundle ...`).
    #[command(hide = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Caps glibc's malloc arenas. By default every thread that allocates may get its own arena (up to
/// eight per core), and each keeps freed memory: a server with a blocking-thread pool then holds tens
/// of MiB it does not use. Two arenas cost nothing measurable in throughput here (BENCHMARKS.md).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Shim { args } => std::process::exit(skiff_runtime::shim::main(&args)),
        Command::Server(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(server::run(*args))
        }
        Command::Token { data_dir } => {
            let path = data_dir.join("token");
            let token = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e} (has `skiff server --data-dir {}` started once?)", path.display(), data_dir.display()))?;
            println!("{}", token.trim());
            Ok(())
        }
        Command::Image(args) => image::run(args),
        Command::Killall { data_dir } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(killall::run(&data_dir))
        }
        Command::Agent(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(agent::run(*args))
        }
    }
}
