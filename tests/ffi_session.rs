//! The C ABI's session and scheduler levels, through a C client (tests/c/session.c) built
//! against libzo.so and the committed header: a run driven from C equals `zo-run train` of
//! the same config bit for bit (its g's, its checkpoint, its exported weights), and bad
//! input gets its named status code.

#[path = "common/c_client.rs"]
mod c_client;
#[cfg(feature = "cuda")]
#[path = "common/devices.rs"]
mod devices;
#[path = "common/fixture_run.rs"]
mod fixture_run;

use std::path::Path;

use fixture_run::{g_of_metrics, read_g, zo_run_train, Fixture};

fn same_checkpoint(a: &Path, b: &Path) {
    let load = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (x, y) = (load(a), load(b));
    assert_eq!(x, y, "{} and {} differ", a.display(), b.display());
}

fn same_export(a: &Path, b: &Path) {
    let w = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(
        w(a) == w(b),
        "exported weights differ: {} vs {}",
        a.display(),
        b.display()
    );
}

#[test]
fn c_session_and_scheduler_runs_equal_zo_run_train_bit_for_bit() {
    let fx = Fixture::new();
    let reference = zo_run_train(&fx, "lozo", &[]);
    let exe = c_client::build("session", fx.dir());
    let want = g_of_metrics(&reference.metrics);
    assert_eq!(want.len(), 6 * 2, "6 steps of 2 directions");
    assert!(
        want.iter().any(|&g| f32::from_bits(g) != 0.0),
        "the steps moved"
    );
    for mode in ["session", "scheduler", "resume"] {
        let out = fx.dir().join(format!("run-{mode}"));
        std::fs::create_dir_all(&out).unwrap();
        c_client::run(&exe, &fx.client_args(mode, &reference.config, Some(&out)));
        assert_eq!(read_g(&out.join("g.txt")), want, "{mode}: g per step");
        same_checkpoint(&out.join("checkpoint.json"), &reference.checkpoint);
        same_export(&out.join("export"), &reference.export);
    }
}

#[test]
fn two_sessions_train_at_once_on_two_threads() {
    let fx = Fixture::new();
    let reference = zo_run_train(&fx, "lozo", &[]);
    let exe = c_client::build("session", fx.dir());
    let out = fx.dir().join("run-threads");
    std::fs::create_dir_all(&out).unwrap();
    c_client::run(
        &exe,
        &fx.client_args("threads", &reference.config, Some(&out)),
    );
    let g = read_g(&out.join("g.txt"));
    assert_eq!(
        g,
        g_of_metrics(&reference.metrics),
        "g of the threaded sessions"
    );
}

#[test]
fn bad_input_gets_named_status_codes_and_messages() {
    let fx = Fixture::new();
    let reference = zo_run_train(&fx, "lozo", &[]);
    let exe = c_client::build("session", fx.dir());
    let text = c_client::run(&exe, &fx.client_args("errors", &reference.config, None));
    println!("{text}");
    assert!(text.contains("errors: all refused as expected"), "{text}");
    // The panic came back as a status code, with the panic's message.
    assert!(text.contains("zo_debug_panic was called"), "{text}");
}

#[test]
fn a_callers_lora_factors_follow_zos_with_zo_apply_update() {
    let fx = Fixture::new();
    let reference = zo_run_train(&fx, "mezo-lora", &[]);
    let exe = c_client::build("session", fx.dir());
    let text = c_client::run(&exe, &fx.client_args("lora", &reference.config, None));
    assert!(text.contains("lora: 4 sites, 6 steps"), "{text}");
}

/// README's C example compiles against the committed header and links both ways.
#[test]
fn the_readme_example_compiles_and_links() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Embedding zo")
        .expect("README has the section")..];
    let start = section.find("```c\n").expect("the section has a C example") + 5;
    let code = &section[start..start + section[start..].find("```").unwrap()];
    assert!(code.lines().count() <= 30, "the example stays short");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("readme.c");
    std::fs::write(&src, code).unwrap();
    for link in [c_client::Link::Shared, c_client::Link::Static] {
        c_client::compile(&src, &tmp.path().join(format!("readme-{link:?}")), link);
    }
}

#[test]
fn the_static_library_links_and_runs() {
    let fx = Fixture::new();
    let reference = zo_run_train(&fx, "lozo", &[]);
    let exe = c_client::build_linked("session", fx.dir(), c_client::Link::Static);
    let out = fx.dir().join("run-static");
    std::fs::create_dir_all(&out).unwrap();
    c_client::run(
        &exe,
        &fx.client_args("session", &reference.config, Some(&out)),
    );
    assert_eq!(
        read_g(&out.join("g.txt")),
        g_of_metrics(&reference.metrics),
        "g per step"
    );
}

#[test]
fn lora_sessions_hand_out_the_factors_the_forward_uses() {
    use zo::plan::Variant;
    use zo::session::{Session, Split};
    let fx = Fixture::new();
    let reference = zo_run_train(&fx, "mezo-lora", &[]);
    let cfg: zo::engine::TrainConfig =
        serde_json::from_str(&std::fs::read_to_string(&reference.config).unwrap()).unwrap();
    let mut s = Session::open(&fx.model(), cfg.clone(), zo::train::Device::Cpu).unwrap();
    s.load_task(&fx.data()).unwrap();
    for _ in 0..2 {
        s.step().unwrap();
    }
    let sites = s.adapter_sites();
    assert_eq!(sites.len(), 2 * 2, "q and v of two layers");
    assert_eq!(sites[1].hf_module, "model.layers.0.self_attn.v_proj");
    let (a0, b0) = s.lora_factors(Variant::BASE, 1).unwrap();
    let state = s.log().records.len();
    assert_eq!(state, 2);
    assert!(
        b0.iter().any(|&x| x != 0.0),
        "B moved off zero after two updates"
    );
    // A variant's factors are the state plus sign·ε·Z, elementwise.
    let v = Variant {
        seed: 99,
        sign: -1,
        eps: cfg.eps,
    };
    let (a1, b1) = s.lora_factors(v, 1).unwrap();
    let mut z = vec![0.0f32; a0.len()];
    cfg.dist
        .fill(99, sites[1].tensor_id, zo::perturb::role::LORA_A, 0, &mut z);
    for i in 0..a0.len() {
        assert_eq!(a1[i], (-cfg.eps).mul_add(z[i], a0[i]));
    }
    let mut z = vec![0.0f32; b0.len()];
    cfg.dist
        .fill(99, sites[1].tensor_id, zo::perturb::role::LORA_B, 0, &mut z);
    for i in 0..b0.len() {
        assert_eq!(b1[i], (-cfg.eps).mul_add(z[i], b0[i]));
    }
    assert_eq!(s.examples(Split::Train).len(), 40);
    assert!(s.lora_factors(v, sites.len()).is_err());
    assert!(s.lowrank_factors(v, 0).is_err(), "not a low-rank run");
}

#[test]
fn sessions_open_gguf_files_and_train_on_caller_examples() {
    use zo::plan::TokenizedExample;
    use zo::session::{Session, Split};
    let gguf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/tiny_llama.gguf");
    let cfg = zo::engine::TrainConfig {
        steps: 3,
        batch: 2,
        lr: 1e-3,
        eval_batch: 4,
        ..zo::engine::TrainConfig::preset("lozo").unwrap()
    };
    let mut s = Session::open(&gguf, cfg, zo::train::Device::Cpu).unwrap();
    assert!(
        s.log().model_dir.is_none(),
        "a GGUF's import is not named in the log"
    );
    let ex = |p: &[u32], gold| TokenizedExample {
        prompt: p.to_vec(),
        candidates: vec![vec![3], vec![4]],
        gold,
        answers: Vec::new(),
    };
    let examples = vec![ex(&[1, 5, 6], 0), ex(&[1, 7], 1), ex(&[1, 8, 9, 10], 0)];
    s.add_examples(Split::Train, examples.clone()).unwrap();
    s.add_examples(Split::Dev, examples).unwrap();
    let before = s.evaluate(Split::Dev).unwrap();
    for _ in 0..3 {
        let est = s.step().unwrap();
        assert!(est.skipped.is_none());
    }
    assert!(s.step().is_err(), "the run's 3 steps are done");
    assert_eq!(s.log().records.len(), 3);
    assert_eq!(s.evaluate(Split::Dev).unwrap().n, before.n);
    let err = s.add_examples(Split::Train, vec![ex(&[1], 0)]).unwrap_err();
    assert!(err.to_string().contains("fixed once training"), "{err}");
}

/// The session on the CUDA backend, on its emulated device (the GPU's numerics on the CPU)
/// and on GPU 0 where there is one: the run `zo-run train --device emu|cuda` makes, bit for
/// bit.
#[cfg(feature = "cuda")]
#[test]
fn sessions_run_on_the_cuda_backend_as_zo_run_does() {
    use zo::backend::cuda::Target;
    use zo::backend::DType;
    use zo::session::{Session, Split};
    let fx = Fixture::new();
    for (name, target) in devices::targets("session on the CUDA backend") {
        let (flag, device) = match target {
            Target::Emulated => ("emu", zo::train::Device::Emulated(DType::F32)),
            Target::Gpu(_) => ("cuda", zo::train::Device::Cuda(DType::F32)),
        };
        let reference = zo_run_train(&fx, "lozo", &["--device", flag, "--dtype", "f32"]);
        let cfg: zo::engine::TrainConfig =
            serde_json::from_str(&std::fs::read_to_string(&reference.config).unwrap()).unwrap();
        let mut s = Session::open(&fx.model(), cfg, device).unwrap();
        s.load_task(&fx.data()).unwrap();
        s.evaluate(Split::Dev).unwrap();
        let mut g = Vec::new();
        for _ in 0..6 {
            g.extend(s.step().unwrap().g.iter().map(|x| x.to_bits()));
        }
        s.evaluate(Split::Dev).unwrap();
        assert_eq!(g, g_of_metrics(&reference.metrics), "{name}");
        let out = fx.dir().join(format!("{name}-checkpoint.json"));
        s.save(&out).unwrap();
        same_checkpoint(&out, &reference.checkpoint);
    }
}
