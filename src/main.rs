//! `xvr`: offline tools around the xvr pipeline.
mod pcap;
mod replay;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "xvr", version, about = "xvr virtual router tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run capture files through the pipeline offline, as if each had
    /// arrived on a port, and write one pcap per output port.
    Replay {
        /// Desired state (JSON), as xvrd takes it.
        #[arg(long)]
        config: PathBuf,
        /// NAME=FILE: frames of FILE (pcap or pcapng) arrive on port NAME. Repeatable.
        #[arg(long = "port", value_name = "NAME=FILE", value_parser = parse_port_input, required = true)]
        ports: Vec<(String, PathBuf)>,
        /// Directory for NAME.pcap per output port and kernel.pcap.
        #[arg(long)]
        out: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_port_input(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("{s:?}: want NAME=FILE, e.g. vm1=in.pcap")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay {
            config,
            ports,
            out,
            json,
        } => replay::run(&replay::Args {
            config,
            inputs: ports,
            out,
            json,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xvr: {message}");
            ExitCode::from(2)
        }
    }
}
