//! `skiff`: the command line. `skiff server` runs the control plane; more roles come with their issues.

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
    /// Join a node to a server (not available yet: it comes with the node agent).
    Agent {
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        token: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Server(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(server::run(*args))
        }
        Command::Agent { .. } => {
            anyhow::bail!("`skiff agent` is not available yet: the node agent has not been built")
        }
    }
}
