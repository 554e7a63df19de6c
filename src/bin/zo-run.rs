//! zo-run: the command-line front end of zo.

use std::path::PathBuf;
use std::process::ExitCode;

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
enum Cmd {
    /// Convert a GGUF model (llama/mistral/qwen2) into an HF directory: config.json,
    /// model.safetensors, tokenizer.json.
    ImportGguf {
        /// The .gguf file to read.
        input: PathBuf,
        /// Output directory (created if missing; existing files are replaced).
        out_dir: PathBuf,
        /// Storage dtype of model.safetensors: f32 keeps the dequantized values exactly.
        #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
        dtype: String,
    },
}

fn run(cmd: Cmd) -> zo::Result<()> {
    match cmd {
        Cmd::ImportGguf {
            input,
            out_dir,
            dtype,
        } => {
            let dtype = dtype.parse()?;
            let report = zo::io::gguf::import(&input, &out_dir, dtype)?;
            println!("{report}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(cmd) = cli.cmd else {
        return ExitCode::SUCCESS;
    };
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
