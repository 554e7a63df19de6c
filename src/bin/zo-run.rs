//! zo-run: the command-line front end of zo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zo-run",
    version,
    about = "Zeroth-order fine-tuning of LLMs as an inference workload",
    after_help = "Without a command, zo-run runs the built-in default: the default model \
                  (assets/smollm2-135m) on the default task (assets/data/sentiment), dev \
                  accuracy and loss before and after a short LoZO run, outputs in runs/default/. \
                  tools/fetch-assets provides the assets."
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
    /// Zeroth-order fine-tuning (MeZO/LoZO families) with seed-log checkpoints.
    Train(Box<TrainArgs>),
    /// Completions of a model or a trained checkpoint, for --prompt texts or a task split;
    /// prints one JSON line per completion, then a summary (EM/F1 for generation tasks).
    Generate(Box<GenerateArgs>),
    /// Time ZO steps on synthetic weights of any architecture against compute and memory
    /// floors measured in the same run; `--json` prints one object (see BENCHMARKS.md).
    Bench(Box<BenchArgs>),
    /// What a model takes on the GPU, without a GPU: under --gpu-memory-budget, the layers
    /// that stay resident and those that stream, the weights, adapter state and activations
    /// of one step, and whether it fits in --gpu-memory. `--json` prints one object.
    Memory(Box<MemoryArgs>),
    /// Replay a seed-log checkpoint onto its base model and write merged HF weights (and a
    /// PEFT adapter for lora, in OUT_DIR/adapter/).
    Export {
        /// The checkpoint (seed log) to replay.
        checkpoint: PathBuf,
        /// Output directory.
        out_dir: PathBuf,
        /// Base model directory (default: the one the checkpoint names).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Export the state after the last step instead of the best dev state.
        #[arg(long)]
        last: bool,
        #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
        dtype: String,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// Where to run: cpu, cuda (GPU 0), emu (the CUDA backend on its CPU emulation of a GPU:
    /// the GPU's numerics without one, for tiny models), or auto (GPU 0 when one is usable
    /// and the family runs there, else the CPU).
    #[arg(long, default_value = "auto")]
    device: String,
    /// GPU weight storage: bf16, f16 or f32 (arithmetic is fp32 in every case).
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Starting settings: mezo, mezo-lora, mezo-prefix, lozo, lozo-m. A preset takes the
    /// papers' OPT-13B settings and scales the learning rate by √(13e9/params) (1× to 10×,
    /// so 9.8× for a 135M model); ε, rank, ν, q and the schedule stay the papers'. Every
    /// flag below overrides its field.
    #[arg(long, default_value = "lozo")]
    preset: String,
    /// Replace the preset's family: lowrank, lozo, lozo-m, lora, dense, mezo, prefix.
    #[arg(long)]
    family: Option<String>,
    #[arg(long, default_value = "assets/smollm2-135m")]
    model: PathBuf,
    /// Built-in task name (sentiment) or a task spec JSON file.
    #[arg(long)]
    task: Option<String>,
    /// Directory holding train/dev/test split files.
    #[arg(long, default_value = "assets/data/sentiment")]
    data: PathBuf,
    #[arg(long)]
    steps: Option<u64>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long, allow_hyphen_values = true)]
    eps: Option<f32>,
    #[arg(long, allow_hyphen_values = true)]
    lr: Option<f32>,
    /// Learning-rate schedule after the warm-up: constant, linear or cosine (decay to 0 at
    /// the last step).
    #[arg(long)]
    schedule: Option<String>,
    /// Steps of linear learning-rate warm-up.
    #[arg(long)]
    warmup: Option<u64>,
    /// How g becomes the update: sgd, momentum, adam (CPU only), sign, or fzoo (needs
    /// --one-sided and --q ≥ 2; Rademacher directions are its usual choice).
    #[arg(long)]
    optimizer: Option<String>,
    /// β of --optimizer momentum (default 0.9) or β₁ of adam (default 0.9).
    #[arg(long)]
    beta: Option<f32>,
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Directions per step.
    #[arg(long)]
    q: Option<usize>,
    /// One-sided estimator (q + 1 variants) instead of two-sided SPSA.
    #[arg(long)]
    one_sided: bool,
    #[arg(long, value_parser = ["gaussian", "rademacher"])]
    dist: Option<String>,
    /// Rank of lowrank / lora.
    #[arg(long)]
    rank: Option<usize>,
    /// ν: steps per low-rank period.
    #[arg(long)]
    period: Option<u64>,
    /// LoZO-M momentum β.
    #[arg(long)]
    momentum: Option<f32>,
    /// Trainable prefix tokens (prefix family).
    #[arg(long)]
    prefix_tokens: Option<usize>,
    /// Dense family: perturb the weights in place (+ε, −2ε, +ε) as MeZO does.
    #[arg(long)]
    in_place: bool,
    /// Evaluate on dev every N steps (0: only at the end).
    #[arg(long)]
    eval_every: Option<u64>,
    #[arg(long, value_parser = positive)]
    train_limit: Option<usize>,
    #[arg(long, value_parser = positive)]
    dev_limit: Option<usize>,
    #[arg(long, value_parser = positive)]
    test_limit: Option<usize>,
    /// Seed of directions, periods and family initialisation.
    #[arg(long)]
    seed: Option<u64>,
    /// Seed of the training-batch order.
    #[arg(long)]
    data_seed: Option<u64>,
    /// The loss each step differences: auto (classification for label and choice tasks, lm
    /// for generation tasks), classification, lm (LM loss of the target tokens), em, f1
    /// (of greedy generations against the reference answers) or accuracy (of a generated
    /// label).
    #[arg(long)]
    objective: Option<String>,
    /// Token budget of generated text (default: the task's).
    #[arg(long, value_parser = positive)]
    max_new_tokens: Option<usize>,
    /// Checkpoint path (default: OUT/checkpoint.json).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Write the checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u64,
    /// Continue from a checkpoint: replays its seed log, then trains the remaining steps.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Output directory: metrics.jsonl, curve.svg, checkpoint.json.
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// Stop after this many steps (with a checkpoint), as an interruption would.
    #[arg(long)]
    stop_after: Option<u64>,
    /// Also measure the zero-shot test accuracy before training.
    #[arg(long)]
    test_before: bool,
    /// Data-parallel training: `mpi` when launched as `mpirun -np N zo-run train …`. Every
    /// rank holds the same weights and seeds, runs its share of each step's (variant,
    /// example) pairs and exchanges only the losses; the run's checkpoint is bit for bit the
    /// one-rank run's. Rank 0 writes the outputs. Needs a build with `--features mpi`.
    #[arg(long, default_value = "none", value_parser = ["none", "mpi"])]
    distributed: String,
    /// With --distributed: how long a rank waits for another's losses before it stops the
    /// job, naming the rank that sent nothing (dead or hung).
    #[arg(long, default_value_t = 300.0)]
    dist_timeout: f64,
    /// CUDA: GPU memory the weights may take, in bytes (8589934592, 8GiB, 512MiB). The first
    /// layers that fit stay on the GPU; the rest stream from page-locked host memory, each
    /// layer's copy overlapping the compute of the one before. The run is bit for bit the
    /// resident one's. Default: the whole model on the GPU.
    #[arg(long)]
    gpu_memory_budget: Option<String>,
}

/// The preset with every given flag applied.
fn train_config(a: &TrainArgs) -> zo::Result<zo::engine::TrainConfig> {
    use zo::engine::config::{LrSchedule, Optimizer};
    use zo::perturb::FamilyConfig;
    // The preset's lr follows the model's size; a model directory that cannot be read is
    // reported by the run itself, with the paper's lr meanwhile.
    let mut c = match zo::model::ModelConfig::from_file(a.model.join("config.json")) {
        Ok(m) => zo::engine::TrainConfig::preset_for(&a.preset, m.n_params())?,
        Err(_) => zo::engine::TrainConfig::preset(&a.preset)?,
    };
    if let Some(f) = &a.family {
        c.family = zo::perturb::family_from_name(f)?;
        c.preset = None;
    }
    macro_rules! set {
        ($($f:ident),*) => { $(if let Some(v) = a.$f.clone() { c.$f = v; })* };
    }
    set!(
        steps,
        batch,
        eps,
        lr,
        weight_decay,
        q,
        eval_every,
        seed,
        data_seed,
        task
    );
    if a.train_limit.is_some() {
        c.train_limit = a.train_limit;
    }
    if a.dev_limit.is_some() {
        c.dev_limit = a.dev_limit;
    }
    if a.test_limit.is_some() {
        c.test_limit = a.test_limit;
    }
    if let Some(s) = &a.schedule {
        c.schedule = LrSchedule::parse(s)?;
    }
    set_opt(&mut c.warmup, a.warmup);
    if let Some(o) = &a.objective {
        c.objective = zo::engine::Objective::parse(o)?;
    }
    if a.max_new_tokens.is_some() {
        c.max_new_tokens = a.max_new_tokens;
    }
    match (&a.optimizer, a.beta) {
        (Some(o), beta) => c.optimizer = Optimizer::parse(o, beta)?,
        (None, Some(_)) => {
            return Err(zo::Error::Config(
                "--beta needs --optimizer momentum or adam".into(),
            ))
        }
        (None, None) => {}
    }
    if let Some(d) = &a.dist {
        c.dist = serde_json::from_value(serde_json::Value::String(d.clone()))
            .expect("clap restricts --dist");
    }
    c.one_sided |= a.one_sided;
    let family = c.family.name();
    let not_for = |flag: &str| {
        Err(zo::Error::Config(format!(
            "{flag} does not apply to the {family} family"
        )))
    };
    match &mut c.family {
        FamilyConfig::LowRank {
            rank,
            period,
            momentum,
            ..
        } => {
            set_opt(rank, a.rank);
            set_opt(period, a.period);
            if a.momentum.is_some() {
                *momentum = a.momentum;
            }
        }
        FamilyConfig::Lora { rank, .. } => set_opt(rank, a.rank),
        FamilyConfig::Dense { in_place } => *in_place |= a.in_place,
        FamilyConfig::Prefix { tokens } => set_opt(tokens, a.prefix_tokens),
    }
    let lowrank = matches!(c.family, FamilyConfig::LowRank { .. });
    let lora = matches!(c.family, FamilyConfig::Lora { .. });
    if a.rank.is_some() && !(lowrank || lora) {
        return not_for("--rank");
    }
    if (a.period.is_some() || a.momentum.is_some()) && !lowrank {
        return not_for("--period/--momentum");
    }
    if a.prefix_tokens.is_some() && !matches!(c.family, FamilyConfig::Prefix { .. }) {
        return not_for("--prefix-tokens");
    }
    if a.in_place && !matches!(c.family, FamilyConfig::Dense { .. }) {
        return not_for("--in-place");
    }
    c.validate()?;
    Ok(c)
}

fn set_opt<T: Copy>(field: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *field = v;
    }
}

fn train(a: TrainArgs) -> zo::Result<()> {
    let cfg = train_config(&a)?;
    let ranks = open_ranks(&a)?;
    let lead = ranks.as_ref().is_none_or(|r| r.rank() == 0);
    let run = zo::train::DiskRun {
        model: a.model,
        data: a.data,
        out: a.out,
        checkpoint: a.checkpoint,
        checkpoint_every: a.checkpoint_every,
        resume: a.resume,
        progress: lead,
        stop_after: a.stop_after,
        device: zo::train::Device::parse(&a.device, &a.dtype)?,
        test_before: a.test_before,
        comm: ranks.as_ref().map(Ranks::comm),
        gpu_memory_budget: a
            .gpu_memory_budget
            .as_deref()
            .map(zo::train::parse_bytes)
            .transpose()?,
    };
    if lead {
        print_effective(&cfg, &run);
    }
    match zo::train::run_on_disk(&cfg, &run) {
        Ok(summary) => {
            if lead {
                println!(
                    "{}",
                    serde_json::to_string(&summary).expect("a summary serializes")
                );
            }
            Ok(())
        }
        Err(e) => match &ranks {
            Some(r) if r.size() > 1 => r.fail(&e),
            _ => Err(e),
        },
    }
}

/// The ranks of a `--distributed` run.
#[cfg(feature = "mpi")]
struct Ranks(std::rc::Rc<zo::dist::mpi::MpiComm>);

#[cfg(feature = "mpi")]
impl Ranks {
    fn rank(&self) -> usize {
        zo::dist::Comm::rank(&*self.0)
    }
    fn size(&self) -> usize {
        zo::dist::Comm::size(&*self.0)
    }
    fn comm(&self) -> std::rc::Rc<dyn zo::dist::Comm> {
        self.0.clone()
    }
    /// A rank that fails stops every rank: the others would wait for it, and MPI cannot
    /// finalize while they do. The pause lets the other ranks print their own errors.
    fn fail(&self, e: &zo::Error) -> ! {
        eprintln!("error: rank {}: {e}", self.rank());
        std::thread::sleep(std::time::Duration::from_millis(500));
        self.0.abort(1)
    }
}

#[cfg(feature = "mpi")]
fn open_ranks(a: &TrainArgs) -> zo::Result<Option<Ranks>> {
    if a.distributed == "none" {
        return Ok(None);
    }
    if !(a.dist_timeout > 0.0 && a.dist_timeout.is_finite()) {
        return Err(zo::Error::Config(format!(
            "--dist-timeout {}: expected a positive number of seconds",
            a.dist_timeout
        )));
    }
    share_cores();
    let timeout = std::time::Duration::from_secs_f64(a.dist_timeout);
    Ok(Some(Ranks(std::rc::Rc::new(zo::dist::mpi::MpiComm::init(
        timeout,
    )?))))
}

/// Ranks on one machine split its cores instead of each starting a thread per core (unless
/// RAYON_NUM_THREADS says otherwise).
#[cfg(feature = "mpi")]
fn share_cores() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let local: usize = [
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .unwrap_or(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / local.max(1)).max(1);
    // Fails only if the pool was already built, in which case it stays as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

/// Without MPI there are no ranks to hold.
#[cfg(not(feature = "mpi"))]
enum Ranks {}

#[cfg(not(feature = "mpi"))]
impl Ranks {
    fn rank(&self) -> usize {
        match *self {}
    }
    fn size(&self) -> usize {
        match *self {}
    }
    fn comm(&self) -> std::rc::Rc<dyn zo::dist::Comm> {
        match *self {}
    }
    fn fail(&self, _: &zo::Error) -> ! {
        match *self {}
    }
}

#[cfg(not(feature = "mpi"))]
fn open_ranks(a: &TrainArgs) -> zo::Result<Option<Ranks>> {
    if a.distributed == "none" {
        return Ok(None);
    }
    Err(zo::Error::Unsupported(
        "--distributed mpi: this build of zo has no MPI support; rebuild with --features mpi \
         (needs an MPI library such as Debian's libopenmpi-dev and openmpi-bin, and libclang)"
            .into(),
    ))
}

fn print_effective(cfg: &zo::engine::TrainConfig, run: &zo::train::DiskRun) {
    // The config is serialized on its own so its f32 fields print as written (0.001), not
    // as their f64 widening.
    let rest = serde_json::json!({
        "model": run.model.display().to_string(),
        "data": run.data.display().to_string(),
        "out": run.out.display().to_string(),
        "resume": run.resume.as_ref().map(|p| p.display().to_string()),
    });
    let rest = rest.to_string();
    println!(
        "{{\"config\":{},{}",
        serde_json::to_string(cfg).expect("config serializes"),
        &rest[1..]
    );
}

/// `zo-run` alone: the built-in demonstration on the default model and task, sized for the
/// device it finds (see [`zo::engine::TrainConfig::default_run`]).
fn default_run() -> zo::Result<()> {
    let probe = zo::engine::TrainConfig::default_run(false);
    let device = zo::train::resolve_device(zo::train::Device::Auto, &probe, true)?;
    let on_gpu = matches!(device, zo::train::Device::Cuda(_));
    let cfg = zo::engine::TrainConfig::default_run(on_gpu);
    let run = zo::train::DiskRun {
        model: "assets/smollm2-135m".into(),
        data: "assets/data/sentiment".into(),
        out: "runs/default".into(),
        checkpoint: None,
        checkpoint_every: 50,
        resume: None,
        progress: true,
        stop_after: None,
        device,
        test_before: true,
        comm: None,
        gpu_memory_budget: None,
    };
    print_effective(&cfg, &run);
    let s = zo::train::run_on_disk(&cfg, &run)?;
    let f = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{a:.3}"));
    let n = |limit: Option<usize>| limit.map_or("all".to_string(), |n| n.to_string());
    println!();
    println!(
        "{} steps of {} on {} in {:.0} s",
        s.steps,
        cfg.preset.as_deref().unwrap_or("zo"),
        s.device,
        s.wall_s
    );
    println!("                 before   after");
    println!(
        "dev accuracy      {:>6}  {:>6}   ({} examples)",
        f(s.dev_accuracy_before),
        f(s.dev_accuracy_last),
        n(cfg.dev_limit)
    );
    println!(
        "dev loss          {:>6}  {:>6}",
        f(s.dev_loss_before),
        f(s.dev_loss_last)
    );
    println!(
        "test accuracy     {:>6}  {:>6}   ({} examples; after = best dev state)",
        f(s.test_accuracy_before),
        f(s.test_accuracy),
        n(cfg.test_limit)
    );
    println!("checkpoint {}", s.checkpoint);
    println!("metrics    {}", s.metrics);
    if let Some(c) = &s.curve {
        println!("curve      {c}");
    }
    println!(
        "{}",
        serde_json::to_string(&s).expect("a summary serializes")
    );
    Ok(())
}

#[derive(Args)]
struct BenchArgs {
    /// Built-in architecture (opt-125m … opt-66b, llama2-7b, llama3-8b, smollm2-135m, …;
    /// a wrong name lists them all).
    #[arg(long, conflicts_with = "config")]
    arch: Option<String>,
    /// Any other architecture: an HF config.json.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Family or preset: lozo, lozo-m, mezo, mezo-lora, mezo-prefix (or lowrank, dense,
    /// lora, prefix); settings as the presets of `zo-run train`.
    #[arg(long, default_value = "lozo")]
    family: String,
    /// Directions per step.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    q: usize,
    /// Dense family: perturb the weights in place (+ε, −2ε, +ε) as MeZO's trainer does.
    #[arg(long)]
    in_place: bool,
    /// One-sided estimator (q + 1 variants).
    #[arg(long)]
    one_sided: bool,
    #[arg(long, default_value_t = 16, value_parser = positive)]
    batch: usize,
    /// Measured steps.
    #[arg(long, default_value_t = 10, value_parser = positive)]
    steps: usize,
    /// Unmeasured steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Every prompt this many tokens (default: lengths of the default task's train prompts).
    #[arg(long, value_parser = positive)]
    seq_len: Option<usize>,
    /// Task whose train prompts give the lengths.
    #[arg(long, default_value = "sentiment")]
    task: String,
    #[arg(long, default_value = "assets/data/sentiment")]
    data: PathBuf,
    /// Directory with the tokenizer.json that tokenizes the prompts.
    #[arg(long, default_value = "assets/smollm2-135m")]
    tokenizer: PathBuf,
    /// cpu, cuda, or auto (cuda when its bench backend runs here, else cpu).
    #[arg(long, default_value = "auto", value_parser = ["auto", "cpu", "cuda"])]
    device: String,
    /// Weight storage dtype (default: bf16 on cuda, f32 on cpu).
    #[arg(long, value_parser = ["f32", "f16", "bf16"])]
    dtype: Option<String>,
    /// Seed of the synthetic weights and token ids.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Write the prompt lengths of every step (warm-up first) as a flat JSON list, `batch`
    /// per step, for tools/torch_baseline.py --lengths-file.
    #[arg(long)]
    dump_lengths: Option<PathBuf>,
    /// Skip the compute and memory floor measurements.
    #[arg(long)]
    no_floors: bool,
    /// cuda: GPU memory the weights may take (bytes, or 8GiB, 512MiB); the layers past it
    /// stream from host memory, and the report gives the step against the PCIe floor.
    #[arg(long)]
    gpu_memory_budget: Option<String>,
}

#[derive(Args)]
struct MemoryArgs {
    /// Built-in architecture (as `bench --arch`).
    #[arg(long, conflicts_with = "config", default_value = "opt-13b")]
    arch: String,
    /// Any other architecture: an HF config.json.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Family or preset, as `bench --family`.
    #[arg(long, default_value = "lozo")]
    family: String,
    #[arg(long, default_value_t = 1, value_parser = positive)]
    q: usize,
    #[arg(long)]
    one_sided: bool,
    #[arg(long, default_value = "bf16", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
    /// Device bytes the weights may take (bytes, 8GiB, 512MiB); default: all resident.
    #[arg(long)]
    gpu_memory_budget: Option<String>,
    /// The GPU's memory, to say whether the plan fits.
    #[arg(long, default_value = "80GiB")]
    gpu_memory: String,
    #[arg(long, default_value_t = 16, value_parser = positive)]
    batch: usize,
    /// Prompt tokens per sequence.
    #[arg(long, default_value_t = 256, value_parser = positive)]
    seq_len: usize,
    /// Host-to-device bandwidth in GB/s, to give the PCIe floor of a step.
    #[arg(long)]
    h2d_gbs: Option<f64>,
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "cuda")]
fn memory(a: MemoryArgs) -> zo::Result<()> {
    use zo::backend::cuda::{gib, MemoryPlan};
    let config = match &a.config {
        Some(p) => zo::model::ModelConfig::from_file(p)?,
        None => zo::model::ModelConfig::builtin(&a.arch)?,
    };
    let mut train = zo::engine::TrainConfig::preset(bench_preset(&a.family)?)?;
    train.q = a.q;
    train.one_sided = a.one_sided;
    let dtype = zo::backend::DType::parse(&a.dtype)?;
    let budget = a
        .gpu_memory_budget
        .as_deref()
        .map(zo::train::parse_bytes)
        .transpose()?;
    let gpu = zo::train::parse_bytes(&a.gpu_memory)?;
    // One sequence per (example, variant): single-token label words, as the default task.
    let seeds: Vec<u64> = (0..train.q as u64).collect();
    let variants = zo::engine::estimator::variants(&seeds, train.eps, train.one_sided).len();
    let seqs = a.batch * variants;
    let plan = MemoryPlan::new(
        &config,
        dtype,
        Some(&train.family),
        train.q,
        budget,
        seqs * a.seq_len,
        seqs,
    )?;
    let fits = plan.total_bytes <= gpu;
    let floor_ms = a
        .h2d_gbs
        .map(|g| plan.streamed_bytes_per_forward as f64 / (g * 1e9) * 1e3);
    if a.json {
        let mut v = serde_json::to_value(&plan).expect("a plan serializes");
        v["arch"] = a
            .config
            .as_ref()
            .map_or(a.arch.clone(), |p| p.display().to_string())
            .into();
        v["params"] = config.n_params().into();
        v["dtype"] = a.dtype.clone().into();
        v["family"] = train.family.name().into();
        v["gpu_memory"] = gpu.into();
        v["fits"] = fits.into();
        v["pcie_floor_ms"] = floor_ms.into();
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} ({} parameters, {}), family {}, batch {} × {variants} variants × {} tokens",
        a.arch,
        config.n_params(),
        a.dtype,
        train.family.name(),
        a.batch,
        a.seq_len
    );
    println!(
        "weights: {} of {} layers resident, {} streamed ({} per layer); {} on the GPU",
        plan.resident_layers,
        plan.layers,
        plan.streamed_layers,
        gib(plan.layer_bytes),
        gib(plan.weight_bytes_on_gpu)
    );
    println!(
        "adapter state {}, activations {}: total {} of {} ({})",
        gib(plan.adapter_state_bytes),
        gib(plan.workspace_bytes),
        gib(plan.total_bytes),
        gib(gpu),
        if fits { "fits" } else { "does not fit" }
    );
    if plan.streamed_layers > 0 {
        let floor = floor_ms.map_or(String::new(), |f| format!(": PCIe floor {f:.0} ms"));
        println!(
            "{} cross the bus per forward{floor}",
            gib(plan.streamed_bytes_per_forward)
        );
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn memory(_: MemoryArgs) -> zo::Result<()> {
    Err(zo::Error::Unsupported(
        "this build of zo has no CUDA backend; rebuild with --features cuda".into(),
    ))
}

/// Preset names for the bench's --family, including the family aliases of `train`.
fn bench_preset(family: &str) -> zo::Result<&str> {
    Ok(match family {
        "lozo" | "lowrank" => "lozo",
        "lozo-m" => "lozo-m",
        "mezo" | "dense" => "mezo",
        "mezo-lora" | "lora" => "mezo-lora",
        "mezo-prefix" | "prefix" => "mezo-prefix",
        other => {
            return Err(zo::Error::Config(format!(
                "unknown family {other:?}; expected lozo, lozo-m, mezo, mezo-lora, mezo-prefix \
                 (or lowrank, dense, lora, prefix)"
            )))
        }
    })
}

fn bench(a: BenchArgs) -> zo::Result<()> {
    use zo::bench::{BenchDevice, BenchOptions, BenchSpec, DType, Lengths};
    let (arch, config) = match (&a.arch, &a.config) {
        (_, Some(p)) => (
            p.display().to_string(),
            zo::model::ModelConfig::from_file(p)?,
        ),
        (Some(name), None) => (name.clone(), zo::model::ModelConfig::builtin(name)?),
        (None, None) => {
            let name = "smollm2-135m";
            (name.to_string(), zo::model::ModelConfig::builtin(name)?)
        }
    };
    let mut train = zo::engine::TrainConfig::preset(bench_preset(&a.family)?)?;
    train.q = a.q;
    train.batch = a.batch;
    train.one_sided = a.one_sided;
    train.seed = a.seed;
    train.data_seed = a.seed;
    if a.in_place {
        match &mut train.family {
            zo::perturb::FamilyConfig::Dense { in_place } => *in_place = true,
            _ => {
                return Err(zo::Error::Config(
                    "--in-place applies to the mezo (dense) family only".into(),
                ))
            }
        }
    }
    train.validate()?;
    let device = match a.device.as_str() {
        "cpu" => BenchDevice::Cpu,
        "cuda" => BenchDevice::Cuda,
        _ => {
            let (d, why) = zo::bench::backend::auto_device();
            if let Some(why) = why {
                eprintln!("bench: running on the CPU ({why})");
            }
            d
        }
    };
    let dtype = match (&a.dtype, device) {
        (Some(d), _) => DType::parse(d)?,
        (None, BenchDevice::Cuda) => DType::Bf16,
        (None, BenchDevice::Cpu) => DType::F32,
    };
    let lengths = match a.seq_len {
        Some(n) => Lengths::Fixed(n),
        None => Lengths::from_task(&a.task, &a.data, &a.tokenizer)?,
    };
    let opts = BenchOptions {
        arch,
        spec: BenchSpec {
            config,
            train,
            dtype,
            weight_seed: a.seed,
            gpu_memory_budget: match (a.gpu_memory_budget.as_deref(), device) {
                (None, _) => None,
                (Some(b), BenchDevice::Cuda) => Some(zo::train::parse_bytes(b)?),
                (Some(_), BenchDevice::Cpu) => {
                    return Err(zo::Error::Config(
                        "--gpu-memory-budget streams layers to a GPU; the CPU bench keeps the \
                         model in host memory (use --device cuda)"
                            .into(),
                    ))
                }
            },
        },
        device,
        lengths,
        steps: a.steps,
        warmup: a.warmup,
        skip_floors: a.no_floors,
    };
    if let Some(path) = &a.dump_lengths {
        let flat: Vec<usize> = opts.all_lengths().into_iter().flatten().collect();
        let text = serde_json::to_string(&flat).expect("lengths serialize");
        std::fs::write(path, text).map_err(|e| zo::Error::io(path, e))?;
    }
    let report = zo::bench::run(&opts, &mut |m| eprintln!("bench: {m}"))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("a report serializes")
        );
    } else {
        println!("{}", report.text());
    }
    Ok(())
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
    /// Generation tasks: token budget (default: the task's).
    #[arg(long, value_parser = positive)]
    max_new_tokens: Option<usize>,
}

#[derive(Args)]
struct GenerateArgs {
    /// Base model directory (default: the checkpoint's, else assets/smollm2-135m).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Generate from a trained checkpoint's best dev state (--last: its last state).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long)]
    last: bool,
    /// A prompt to complete (repeatable); without one, the task split is completed.
    #[arg(long = "prompt")]
    prompts: Vec<String>,
    /// Built-in task name (sentiment) or a task spec JSON file.
    #[arg(long, default_value = "sentiment")]
    task: String,
    #[arg(long, default_value = "assets/data/sentiment")]
    data: PathBuf,
    #[arg(long, default_value = "dev", value_parser = ["test", "dev", "train"])]
    split: String,
    #[arg(long, value_parser = positive)]
    limit: Option<usize>,
    /// Sequences decoded together.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    batch: usize,
    #[arg(long, value_parser = positive)]
    max_new_tokens: Option<usize>,
    /// Stop string (repeatable; default: the task's).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Sample (Gumbel-max, seeded: the same seed replays the same text) instead of greedy.
    #[arg(long)]
    sample: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// cpu, cuda, emu or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value = "bf16")]
    dtype: String,
}

fn generate(a: GenerateArgs) -> zo::Result<()> {
    let sampling = if a.sample {
        zo::backend::decode::Sampling::Seeded {
            seed: a.seed,
            temperature: a.temperature,
        }
    } else {
        zo::backend::decode::Sampling::Greedy
    };
    let r = zo::generate_run::GenerateRun {
        model: a.model,
        checkpoint: a.checkpoint,
        last: a.last,
        prompts: a.prompts,
        task: a.task,
        data: a.data,
        split: a.split,
        limit: a.limit,
        batch: a.batch,
        max_new_tokens: a.max_new_tokens,
        stop: (!a.stop.is_empty()).then_some(a.stop),
        sampling,
        device: zo::train::Device::parse(&a.device, &a.dtype)?,
    };
    let summary = zo::generate_run::run(&r, &mut |line| {
        println!(
            "{}",
            serde_json::to_string(line).expect("a completion serializes")
        )
    })?;
    println!(
        "{}",
        serde_json::to_string(&summary).expect("a summary serializes")
    );
    Ok(())
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
        max_new_tokens: a.max_new_tokens,
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
        Cmd::Train(a) => train(*a),
        Cmd::Generate(a) => generate(*a),
        Cmd::Bench(a) => bench(*a),
        Cmd::Memory(a) => memory(*a),
        Cmd::Export {
            checkpoint,
            out_dir,
            model,
            last,
            dtype,
        } => {
            let state = if last {
                zo::engine::export::ExportState::Last
            } else {
                zo::engine::export::ExportState::Best
            };
            let r = zo::engine::export::export(
                &checkpoint,
                &out_dir,
                model.as_deref(),
                state,
                dtype.parse()?,
            )?;
            println!(
                "{}",
                serde_json::to_string(&r).expect("a report serializes")
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(cmd) => run(cmd),
        None => default_run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
