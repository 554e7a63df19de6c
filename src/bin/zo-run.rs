//! zo-run: the command-line front end of zo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

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
    /// Zero-shot accuracy of a model on a task split; prints one line of JSON.
    Eval(EvalArgs),
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

#[derive(Args)]
struct EvalArgs {
    /// Model directory (config.json, safetensors, tokenizer.json).
    #[arg(long, default_value = "assets/smollm2-135m")]
    model: PathBuf,
    /// Built-in task name (sentiment) or a task spec JSON file.
    #[arg(long, default_value = "sentiment")]
    task: String,
    /// Directory holding the split files (<split>.jsonl or <split>.tsv).
    #[arg(long, default_value = "assets/data/sentiment")]
    data: PathBuf,
    #[arg(long, default_value = "test", value_parser = ["test", "dev", "train"])]
    split: String,
    /// Evaluate only the first N examples of the split.
    #[arg(long, value_parser = positive)]
    limit: Option<usize>,
    /// Examples per scored plan.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    batch: usize,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a whole number of at least 1, got {s:?}")),
    }
}

fn eval(a: EvalArgs) -> zo::Result<()> {
    let opts = zo::eval::EvalOptions {
        model: a.model,
        task: a.task,
        data: a.data,
        split: a.split,
        limit: a.limit,
        batch: a.batch,
    };
    let report = zo::eval::run(&opts, true)?;
    println!(
        "{}",
        serde_json::to_string(&report).expect("an eval report serializes")
    );
    Ok(())
}

fn run(cmd: Cmd) -> zo::Result<()> {
    match cmd {
        Cmd::Eval(a) => eval(a),
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
        Cli::command().print_help().expect("help prints to stdout");
        println!();
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
