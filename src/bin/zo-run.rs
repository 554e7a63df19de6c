//! zo-run: the command-line front end of zo.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zo-run",
    version,
    about = "Zeroth-order fine-tuning of LLMs as an inference workload"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {}

fn main() {
    let _cli = Cli::parse();
}
