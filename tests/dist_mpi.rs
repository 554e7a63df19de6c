//! Data-parallel training over MPI, end to end: `mpirun -np N zo-run train … --distributed
//! mpi` on the default model (CPU backend) must write, byte for byte, the checkpoint of the
//! same run on one rank; resume with another rank count; and stop, naming the rank, when a
//! rank dies, hangs, or was given another job.
//!
//! Needs the `mpi` feature, Open MPI's `mpirun` and the assets of tools/fetch-assets. Without
//! them each test says why and skips, unless ZO_REQUIRE_MPI=1 (CI), which makes that a
//! failure.

#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zo::engine::Checkpoint;

/// Ranks share the machine's cores, so the tests launch one job at a time.
static ONE_JOB: Mutex<()> = Mutex::new(());

const ZO_RUN: &str = env!("CARGO_BIN_EXE_zo-run");

/// The repository's assets, and whether mpirun runs; None (after saying why) to skip.
fn setup() -> Option<PathBuf> {
    let require = std::env::var("ZO_REQUIRE_MPI").is_ok_and(|v| v == "1");
    let skip = |why: &str| {
        assert!(!require, "ZO_REQUIRE_MPI=1 but {why}");
        eprintln!("skipping: {why}");
        None
    };
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    if !assets.join("smollm2-135m/config.json").is_file() {
        return skip("assets/smollm2-135m is missing (run tools/fetch-assets)");
    }
    match Command::new("mpirun").arg("--version").output() {
        Ok(o) if o.status.success() => Some(assets),
        _ => skip("mpirun was not found (install openmpi-bin)"),
    }
}

/// A short LoZO run on the default task (4 examples per step, small dev and test splits),
/// with `extra`'s flags added or, where the run already sets them, replacing its values.
fn base_args(assets: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let model = assets.join("smollm2-135m").display().to_string();
    let data = assets.join("data/sentiment").display().to_string();
    let out = out.display().to_string();
    let mut flags: Vec<(String, Option<String>)> = [
        ("--device", "cpu"),
        ("--preset", "lozo"),
        ("--steps", "4"),
        ("--batch", "4"),
        ("--eval-every", "2"),
        ("--train-limit", "32"),
        ("--dev-limit", "6"),
        ("--test-limit", "5"),
        ("--model", &model),
        ("--data", &data),
        ("--out", &out),
    ]
    .iter()
    .map(|(f, v)| (f.to_string(), Some(v.to_string())))
    .collect();
    let mut i = 0;
    while i < extra.len() {
        let value = extra.get(i + 1).filter(|v| !v.starts_with("--"));
        let (flag, value) = (extra[i].to_string(), value.map(|v| v.to_string()));
        i += 1 + usize::from(value.is_some());
        match flags.iter_mut().find(|(f, _)| *f == flag) {
            Some(slot) => slot.1 = value,
            None => flags.push((flag, value)),
        }
    }
    let mut a = vec!["train".to_string()];
    for (f, v) in flags {
        a.push(f);
        a.extend(v);
    }
    a
}

fn mpirun() -> Command {
    let mut c = Command::new("mpirun");
    // CI runs as root; the ranks are this test's own processes.
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .arg("--oversubscribe");
    c
}

/// `zo-run` on one rank, without MPI.
fn one_rank(args: &[String]) -> Output {
    Command::new(ZO_RUN).args(args).output().unwrap()
}

/// `mpirun -np n zo-run ARGS --distributed mpi`.
fn ranks(n: usize, args: &[String]) -> Command {
    let mut c = mpirun();
    c.arg("-np")
        .arg(n.to_string())
        .arg(ZO_RUN)
        .args(args)
        .args(["--distributed", "mpi", "--dist-timeout", "60"]);
    c
}

fn ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn stderr(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn checkpoint_bytes(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("checkpoint.json")).unwrap()
}

#[test]
fn n_ranks_write_the_one_rank_checkpoint_bit_for_bit() {
    let Some(assets) = setup() else { return };
    let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // LoZO with q = 1; MeZO-LoRA with two directions, one-sided (q + 1 variants); MeZO in
    // place, whose ranks each perturb the weights for every direction.
    let cases: [(&str, &[&str], &[usize]); 3] = [
        ("lozo", &[], &[2, 3]),
        (
            "lora",
            &["--preset", "mezo-lora", "--q", "2", "--one-sided"],
            &[3],
        ),
        (
            "inplace",
            &["--preset", "mezo", "--in-place", "--q", "2"],
            &[2],
        ),
    ];
    for (name, extra, counts) in cases {
        let single = dir.path().join(format!("{name}-1"));
        ok(one_rank(&base_args(&assets, &single, extra)), name);
        let want = checkpoint_bytes(&single);
        let log = Checkpoint::load(&single.join("checkpoint.json")).unwrap();
        assert_eq!(log.completed, 4, "{name}");
        assert!(!log.records.is_empty(), "{name}: the run applied updates");
        for &n in counts {
            let out = dir.path().join(format!("{name}-{n}"));
            let o = ok(
                ranks(n, &base_args(&assets, &out, extra)).output().unwrap(),
                &format!("{name} on {n} ranks"),
            );
            assert!(
                checkpoint_bytes(&out) == want,
                "{name}: the {n}-rank checkpoint differs from the one-rank one"
            );
            // Rank 0 alone reports: one summary line.
            let stdout = String::from_utf8_lossy(&o.stdout);
            let summaries = stdout
                .lines()
                .filter(|l| l.starts_with("{\"metric\""))
                .count();
            assert_eq!(summaries, 1, "{name} on {n} ranks:\n{stdout}");
        }
    }
}

#[test]
fn a_run_resumes_on_another_rank_count() {
    let Some(assets) = setup() else { return };
    let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    ok(one_rank(&base_args(&assets, &whole, &[])), "one rank");
    let part = dir.path().join("part");
    ok(
        ranks(2, &base_args(&assets, &part, &["--stop-after", "2"]))
            .output()
            .unwrap(),
        "2 ranks, stopped after 2 steps",
    );
    assert_eq!(
        Checkpoint::load(&part.join("checkpoint.json"))
            .unwrap()
            .completed,
        2
    );
    let resume = part.join("checkpoint.json").display().to_string();
    let rest = dir.path().join("rest");
    ok(
        ranks(3, &base_args(&assets, &rest, &["--resume", &resume]))
            .output()
            .unwrap(),
        "3 ranks, resumed",
    );
    // The resumed log names where its own outputs went, so compare what was trained.
    let a = Checkpoint::load(&whole.join("checkpoint.json")).unwrap();
    let b = Checkpoint::load(&rest.join("checkpoint.json")).unwrap();
    assert_eq!(a.records, b.records);
    assert_eq!(a.evals, b.evals);
    assert_eq!(a.best, b.best);
    assert_eq!(a.completed, b.completed);
}

/// The pid of rank `rank` among the processes of a job writing to `out`.
fn rank_pid(out: &Path, rank: usize) -> Option<u32> {
    let needle = out.display().to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.starts_with(ZO_RUN) || !cmdline.contains(&needle) {
            continue;
        }
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let want = format!("OMPI_COMM_WORLD_RANK={rank}");
        if environ.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// Starts a long checkpointing run on 2 ranks and returns once it has checkpointed 2 steps,
/// with rank 1's pid.
fn start_long_run(assets: &Path, out: &Path, timeout: &str) -> (Child, u32) {
    let args = base_args(
        assets,
        out,
        &[
            "--steps",
            "400",
            "--eval-every",
            "0",
            "--checkpoint-every",
            "1",
        ],
    );
    let mut c = mpirun();
    let child = c
        .args(["-np", "2", ZO_RUN])
        .args(&args)
        .args(["--distributed", "mpi", "--dist-timeout", timeout])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ck = out.join("checkpoint.json");
    let start = Instant::now();
    loop {
        if let Ok(log) = Checkpoint::load(&ck) {
            if log.completed >= 2 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the run wrote no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = rank_pid(out, 1).expect("rank 1 is running");
    (child, pid)
}

/// Waits for the job to end, at most `limit`; its exit status and output.
fn finish_within(child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the job still runs after {limit:?}: it hangs"))
        .unwrap();
    (out, start.elapsed())
}

/// The checkpoint a failed job left: whole, and a run resumes from it.
fn check_left_checkpoint(assets: &Path, out: &Path) {
    let ck = out.join("checkpoint.json");
    let log = Checkpoint::load(&ck).expect("the last checkpoint is intact");
    log.check().unwrap();
    assert!(log.completed >= 2);
    let resumed = out.with_extension("resumed");
    let stop = (log.completed + 1).to_string();
    let resume = ck.display().to_string();
    let args = base_args(
        assets,
        &resumed,
        &[
            "--steps",
            "400",
            "--eval-every",
            "0",
            "--resume",
            &resume,
            "--stop-after",
            &stop,
        ],
    );
    ok(one_rank(&args), "resuming the failed job's checkpoint");
}

#[test]
fn a_killed_rank_stops_every_rank_and_names_it() {
    let Some(assets) = setup() else { return };
    let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("killed");
    let (child, pid) = start_long_run(&assets, &out, "60");
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let (o, took) = finish_within(child, Duration::from_secs(60));
    assert!(!o.status.success(), "the job reported success");
    let text = stderr(&o);
    assert!(text.contains("rank 1"), "the message names rank 1:\n{text}");
    eprintln!("a killed rank stopped the job in {took:?}");
    check_left_checkpoint(&assets, &out);
}

#[test]
fn a_hung_rank_is_named_after_the_bounded_wait() {
    let Some(assets) = setup() else { return };
    let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hung");
    let (child, pid) = start_long_run(&assets, &out, "4");
    // Stopped, not dead: only the bounded wait can tell.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let (o, took) = finish_within(child, Duration::from_secs(90));
    // Whatever the launcher did with the stopped process, it must not outlive the test.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(!o.status.success(), "the job reported success");
    let text = stderr(&o);
    assert!(
        text.contains("rank 0: no losses of step") && text.contains("from rank 1 within 4 s"),
        "rank 0 names rank 1:\n{text}"
    );
    eprintln!("a hung rank stopped the job in {took:?}");
    check_left_checkpoint(&assets, &out);
}

#[test]
fn ranks_given_different_jobs_or_too_small_a_batch_refuse_to_start() {
    let Some(assets) = setup() else { return };
    let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mismatch");
    let args = base_args(&assets, &out, &["--distributed", "mpi"]);
    // MPMD: rank 0 and rank 1 run the same binary with different learning rates.
    let o = mpirun()
        .args(["-np", "1", ZO_RUN])
        .args(&args)
        .args([":", "-np", "1", ZO_RUN])
        .args(&args)
        .args(["--lr", "0.5"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let text = stderr(&o);
    assert!(
        text.contains("rank 1's config differs from rank 0's") && text.contains("lr:"),
        "the message names the rank and the field:\n{text}"
    );
    assert!(
        !out.join("checkpoint.json").exists(),
        "no rank wrote a checkpoint"
    );

    let out = dir.path().join("small");
    let o = ranks(3, &base_args(&assets, &out, &["--batch", "2"]))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let text = stderr(&o);
    assert!(
        text.contains("3 ranks but --batch 2"),
        "the message names the rank count and the batch:\n{text}"
    );
    assert!(!out.join("checkpoint.json").exists());
}
