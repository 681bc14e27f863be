//! `carillon serve`: start-up only; everything else is in the library.

use std::io::Write;
use std::process::ExitCode;

use carillon_server::{Cli, Command, Config, Node};
use clap::Parser;
use tracing_subscriber::EnvFilter;

// The request path allocates small objects at a high rate (JSON, headers, frames); mimalloc's
// thread-local free lists cost a fraction of glibc malloc's locking there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("CARILLON_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve(mut args) = cli.command;
    // Secrets come from the environment (or the config file), never from a flag.
    if let Ok(secret) = std::env::var("CARILLON_WEBHOOK_SECRET") {
        args.webhook_secret = Some(secret);
    }
    let config = match Config::resolve(args, std::env::var("CARILLON_CREDENTIALS").ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("carillon: {e}");
            return ExitCode::from(2);
        }
    };
    if config.dev_credentials {
        tracing::warn!(
            "no credentials configured: accepting only the development pair {} / {}",
            carillon_server::config::DEV_ACCESS_KEY_ID,
            carillon_server::config::DEV_SECRET_ACCESS_KEY
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("carillon: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let node = match Node::start(config).await {
            Ok(node) => node,
            Err(e) => {
                eprintln!("carillon: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut out = std::io::stdout().lock();
        for line in node.endpoints() {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        drop(out);
        match node.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("carillon: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
