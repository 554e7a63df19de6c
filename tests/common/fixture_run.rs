//! A tiny real run for the C ABI's clients: the llama-tiny fixture with a word-level
//! tokenizer, a sentiment task written from its vocabulary, and `zo-run train` of it as the
//! reference every client is compared with.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Fixture {
    tmp: tempfile::TempDir,
}

/// Sentences of the tokenizer's words, labelled by the adjective they carry.
fn examples(n: usize, offset: usize) -> String {
    let good = ["great", "moving"];
    let bad = ["terrible", "dull"];
    let nouns = ["film", "script", "cast", "pacing"];
    let mut out = String::new();
    for i in offset..offset + n {
        let label = (i * 7 + i / 3) % 2;
        let adj = if label == 1 { good[i % 2] } else { bad[i % 2] };
        let noun = nouns[(i / 2) % 4];
        let text = match i % 3 {
            0 => format!("the {noun} is {adj} ."),
            1 => format!("a {adj} {noun} ."),
            _ => format!("the cast and the {noun} , {adj} ."),
        };
        out += &serde_json::json!({"text": text, "label": label}).to_string();
        out.push('\n');
    }
    out
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let model = tmp.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(root.join("hf/llama-tiny").join(f), model.join(f)).unwrap();
        }
        std::fs::copy(
            root.join("data/wordlevel_tokenizer.json"),
            model.join("tokenizer.json"),
        )
        .unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        for (split, n, off) in [("train", 40, 0), ("dev", 12, 40), ("test", 12, 52)] {
            std::fs::write(data.join(format!("{split}.jsonl")), examples(n, off)).unwrap();
        }
        Fixture { tmp }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn model(&self) -> PathBuf {
        self.dir().join("model")
    }

    pub fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The arguments of tests/c/session.c and tools/python clients: MODE MODEL DATA CONFIG
    /// [OUT].
    pub fn client_args(&self, mode: &str, config: &Path, out: Option<&Path>) -> Vec<String> {
        let mut v = vec![
            mode.to_string(),
            self.model().display().to_string(),
            self.data().display().to_string(),
            config.display().to_string(),
        ];
        v.extend(out.map(|o| o.display().to_string()));
        v
    }
}

/// What the reference run wrote.
pub struct Reference {
    /// The run's whole config, as JSON (the checkpoint's `config`).
    pub config: PathBuf,
    pub checkpoint: PathBuf,
    pub metrics: PathBuf,
    /// `zo-run export --last` of the checkpoint.
    pub export: PathBuf,
    /// What `zo-run train` wrote to stderr.
    pub stderr: String,
}

/// Runs zo-run to success and gives its stderr.
fn zo_run(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_zo-run"))
        .args(args)
        .output()
        .expect("zo-run runs");
    assert!(
        out.status.success(),
        "zo-run {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `zo-run train` of `preset` on the fixture (CPU unless `extra` names a device, 6 steps of batch 4, q 2, dev before and
/// after), then its export.
pub fn zo_run_train(fx: &Fixture, preset: &str, extra: &[&str]) -> Reference {
    let out = fx.dir().join(format!("zo-run-{preset}"));
    let mut args: Vec<String> = [
        "train",
        "--preset",
        preset,
        "--steps",
        "6",
        "--batch",
        "4",
        "--q",
        "2",
        "--lr",
        "1e-3",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "0",
        "--seed",
        "11",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if preset.starts_with("lozo") {
        // A period switch (bank merge, new V) inside the run.
        args.extend(["--period".to_string(), "4".to_string()]);
    }
    if !extra.contains(&"--device") {
        args.extend(["--device".to_string(), "cpu".to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    for (flag, v) in [
        ("--model", fx.model()),
        ("--data", fx.data()),
        ("--out", out.clone()),
    ] {
        args.push(flag.into());
        args.push(v.display().to_string());
    }
    let stderr = zo_run(&args);
    let checkpoint = out.join("checkpoint.json");
    let ck: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    let config = out.join("config.json");
    std::fs::write(&config, ck["config"].to_string()).unwrap();
    let export = out.join("export");
    zo_run(&[
        "export".into(),
        checkpoint.display().to_string(),
        export.display().to_string(),
        "--last".into(),
    ]);
    Reference {
        config,
        checkpoint,
        metrics: out.join("metrics.jsonl"),
        export,
        stderr,
    }
}

/// Every step's g, in order, from a metrics file.
pub fn g_of_metrics(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "step")
        .flat_map(|v| {
            v["g"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| (x.as_f64().unwrap() as f32).to_bits())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The g's a client wrote, one C hex float (`%a`) per line.
pub fn read_g(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| parse_hex_float(l.trim()).to_bits())
        .collect()
}

/// A C99 hex float such as `-0x1.8p-3` (what `%a` prints for a double holding an f32).
fn parse_hex_float(s: &str) -> f32 {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let s = s
        .strip_prefix("0x")
        .unwrap_or_else(|| panic!("not a hex float: {s}"));
    let (mant, exp) = s.split_once('p').unwrap_or((s, "0"));
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let mut v = u64::from_str_radix(int, 16).unwrap() as f64;
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += c.to_digit(16).unwrap() as f64 * scale;
        scale /= 16.0;
    }
    let v = v * 2f64.powi(exp.parse::<i32>().unwrap());
    (if neg { -v } else { v }) as f32
}
