//! zo as a library: one object holding a base model, a training config, the examples and the
//! trained state, driven step by step by its caller. It is what `zo-run train` runs, cut at
//! the points an embedding engine needs:
//!
//! - [`Session::step`]: one whole ZO step (score every variant, estimate, update), the same
//!   calls in the same order as the training loop, so a session's seed log equals the
//!   log of `zo-run train` with the same config, bit for bit;
//! - [`Session::begin`] / [`Session::end`]: the same step with the forward left to the
//!   caller, who scores the packed plan of the step's variants and hands back per-query
//!   log-probs or per-example losses;
//! - evaluation, seed-log save and resume, and export (merged weights, PEFT adapter).
//!
//! The C ABI's session and scheduler levels (`crate::ffi`) are thin wrappers over this type.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::backend::{StateTensors, ZoBackend};
use crate::engine::checkpoint::Checkpoint;
use crate::engine::config::TrainConfig;
use crate::engine::estimator::{finish, plan_step, plan_step_with, StepEstimate, StepPlan};
use crate::engine::export::{export_log, ExportReport, ExportState};
use crate::engine::hash::{examples_hash, model_hash};
use crate::engine::replay::replay;
use crate::engine::schedule::lr_at;
use crate::engine::seeds::period_seed;
use crate::eval::{evaluate, EvalResult};
use crate::io::gguf::ImportDtype;
use crate::io::tokenizer::Tokenizer;
use crate::model::{Model, Param, Site};
use crate::perturb::{role, FamilyConfig, LowRankScale};
use crate::plan::{classification_scores, Sharing, TokenizedExample, Variant};
use crate::train::{commit_step, open_backend, resolve_device, step_batch, Device, TrainData};
use crate::{Error, Result};

/// Which split examples belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

/// What the caller's forward scored for a begun step.
#[derive(Debug, Clone, Copy)]
pub enum StepLosses<'a> {
    /// log p(query.token | row) for every query of the plan, in plan order.
    QueryLogprobs(&'a [f32]),
    /// MeZO's classification loss of every example group of the plan, in plan order.
    ExampleLosses(&'a [f32]),
}

/// A Linear that carries the family's adapter (lora) or low-rank perturbation (lowrank).
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSite {
    pub site: Site,
    /// The module's name in the HF checkpoint ("model.layers.0.self_attn.q_proj").
    pub hf_module: String,
    pub out_dim: usize,
    pub in_dim: usize,
    pub rank: usize,
    /// The RNG tensor id of the site's weight (`Param::Weight(site)`).
    pub tensor_id: u32,
}

/// A GGUF imported for a session: an HF directory that lives as long as the session.
struct ImportedDir(PathBuf);

impl Drop for ImportedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A training run held in memory; see the module docs.
pub struct Session {
    cfg: TrainConfig,
    model_dir: PathBuf,
    _imported: Option<ImportedDir>,
    base: Model,
    base_hash: String,
    tokenizer: Tokenizer,
    data: TrainData,
    data_dir: Option<PathBuf>,
    device: Device,
    backend: Box<dyn ZoBackend + Send>,
    log: Checkpoint,
    pending: Option<StepPlan>,
    /// The family's state as last read back from the backend, until the state changes: an
    /// engine asks for every site's factors of every variant between two updates.
    state: OnceLock<StateTensors>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("model_dir", &self.model_dir)
            .field("device", &self.device)
            .field("completed", &self.log.completed)
            .finish()
    }
}

impl Session {
    /// Opens the model at `model` (an HF directory, or a `.gguf` file, which is imported into
    /// a temporary HF directory first) with `cfg` on `device` (`Auto` is resolved as `zo-run`
    /// resolves it). No examples yet: see [`Session::load_task`] and [`Session::add_examples`].
    pub fn open(model: &Path, cfg: TrainConfig, device: Device) -> Result<Session> {
        cfg.validate()?;
        let (model_dir, imported) = if model.is_file()
            && model
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            let dir = import_dir(model)?;
            crate::io::gguf::import(model, &dir.0, ImportDtype::F32)?;
            (dir.0.clone(), Some(dir))
        } else {
            (model.to_path_buf(), None)
        };
        let (base, tokenizer) = crate::train::load_base(&model_dir)?;
        let base_hash = model_hash(&base);
        let device = resolve_device(device, &cfg, false)?;
        let backend = open_backend(&base, &cfg, device)?;
        let mut log = Checkpoint::new(base_hash.clone(), cfg.clone());
        // A GGUF's import is gone with the session, so only a directory is worth naming.
        log.model_dir = imported.is_none().then(|| model.display().to_string());
        Ok(Session {
            cfg,
            model_dir,
            _imported: imported,
            base,
            base_hash,
            tokenizer,
            data: TrainData {
                train: Vec::new(),
                dev: Vec::new(),
                test: Vec::new(),
                judge: Default::default(),
            },
            data_dir: None,
            device,
            backend,
            log,
            pending: None,
            state: OnceLock::new(),
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The seed log so far (what [`Session::save`] writes, without the data hash).
    pub fn log(&self) -> &Checkpoint {
        &self.log
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn model(&self) -> &Model {
        &self.base
    }

    pub fn examples(&self, split: Split) -> &[TokenizedExample] {
        match split {
            Split::Train => &self.data.train,
            Split::Dev => &self.data.dev,
            Split::Test => &self.data.test,
        }
    }

    fn examples_mut(&mut self, split: Split) -> &mut Vec<TokenizedExample> {
        match split {
            Split::Train => &mut self.data.train,
            Split::Dev => &mut self.data.dev,
            Split::Test => &mut self.data.test,
        }
    }

    /// Whether a step has been begun or completed (the train split is then fixed).
    pub fn training_started(&self) -> bool {
        self.log.completed > 0 || self.pending.is_some()
    }

    /// Training examples decide every step's batch, so they are fixed once training starts.
    fn check_train_open(&self, what: &str) -> Result<()> {
        if self.training_started() {
            return Err(Error::Config(format!(
                "{what}: the train split is fixed once training has started (step {} reached); \
                 open a new session to train on other data",
                self.log.completed
            )));
        }
        Ok(())
    }

    /// Replaces all three splits with the task's (the config's `task`, with its limits) from
    /// the split files in `data_dir`, as `zo-run train --data` does.
    pub fn load_task(&mut self, data_dir: &Path) -> Result<()> {
        self.check_train_open("load_task")?;
        if !data_dir.is_dir() {
            return Err(Error::io(
                data_dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "data directory not found"),
            ));
        }
        self.data =
            crate::train::load_data(&self.cfg, data_dir, &self.tokenizer, &self.base.config)?;
        self.data_dir = Some(data_dir.to_path_buf());
        self.log.data_dir = Some(data_dir.display().to_string());
        Ok(())
    }

    /// Appends examples the caller tokenized. Every token id must be inside the model's
    /// vocabulary; the prompt and each candidate need a token and `gold` must index a
    /// candidate.
    pub fn add_examples(&mut self, split: Split, examples: Vec<TokenizedExample>) -> Result<()> {
        if split == Split::Train {
            self.check_train_open("add_examples")?;
        }
        let vocab = self.base.config.vocab_size;
        let have = self.examples(split).len();
        for (i, ex) in examples.iter().enumerate() {
            let at = || format!("{} example {}", split.name(), have + i);
            if ex.prompt.is_empty() {
                return Err(Error::Data(format!("{}: empty prompt", at())));
            }
            if ex.candidates.len() < 2 {
                return Err(Error::Data(format!(
                    "{}: {} candidate(s); classification needs at least two",
                    at(),
                    ex.candidates.len()
                )));
            }
            if let Some(c) = ex.candidates.iter().position(|c| c.is_empty()) {
                return Err(Error::Data(format!(
                    "{}: candidate {c} has no tokens",
                    at()
                )));
            }
            if ex.gold >= ex.candidates.len() {
                return Err(Error::Data(format!(
                    "{}: gold index {} but only {} candidates",
                    at(),
                    ex.gold,
                    ex.candidates.len()
                )));
            }
            let all = ex.prompt.iter().chain(ex.candidates.iter().flatten());
            if let Some(&t) = all.clone().find(|&&t| t as usize >= vocab) {
                return Err(Error::Data(format!(
                    "{}: token id {t} is outside the model's vocabulary of {vocab}",
                    at()
                )));
            }
        }
        self.examples_mut(split).extend(examples);
        Ok(())
    }

    /// Tokenizes a rendered prompt and its candidates as the data pipeline does (the prompt
    /// with the tokenizer's special tokens, each candidate alone without them).
    pub fn encode_example(
        &self,
        prompt: &str,
        candidates: &[&str],
        gold: usize,
    ) -> Result<TokenizedExample> {
        let candidates = candidates
            .iter()
            .map(|c| self.tokenizer.encode(c, false))
            .collect::<Result<Vec<_>>>()?;
        Ok(TokenizedExample {
            prompt: self.tokenizer.encode(prompt, true)?,
            candidates,
            gold,
            answers: Vec::new(),
        })
    }

    fn check_can_step(&self) -> Result<()> {
        if self.pending.is_some() {
            return Err(Error::Config(format!(
                "step {} was begun and not ended; end it before starting another",
                self.log.completed
            )));
        }
        if self.log.completed >= self.cfg.steps {
            return Err(Error::Config(format!(
                "all {} steps of the run are done; open a session with more steps to go on",
                self.cfg.steps
            )));
        }
        if self.data.train.is_empty() {
            return Err(Error::Data(
                "no training examples: load a task or add train examples first".into(),
            ));
        }
        Ok(())
    }

    /// Starts the next step on the backend (low-rank: the period switch) and returns its
    /// period seed.
    fn start_step(&mut self) -> Result<(u64, Option<u64>)> {
        self.check_can_step()?;
        let step = self.log.completed;
        let ps = self
            .cfg
            .period()
            .map(|nu| period_seed(self.cfg.seed, step, nu));
        self.state = OnceLock::new();
        self.backend.begin_step(step, ps)?;
        Ok((step, ps))
    }

    /// Applies (or logs as skipped) a scored step and ends it.
    fn commit(&mut self, est: &StepEstimate) -> Result<()> {
        let ucfg = self.cfg.update_config();
        self.state = OnceLock::new();
        commit_step(&mut self.backend, &mut self.log, est, &ucfg)?;
        self.pending = None;
        Ok(())
    }

    /// The family's trained state, read back from the backend once per state.
    fn family_state(&self) -> Result<&StateTensors> {
        if let Some(s) = self.state.get() {
            return Ok(s);
        }
        let s = self.backend.family_state()?;
        Ok(self.state.get_or_init(|| s))
    }

    /// One whole step, as the training loop runs it. A non-finite estimate is logged as a
    /// skipped step (see [`StepEstimate::skipped`]), as `zo-run train` does.
    pub fn step(&mut self) -> Result<StepEstimate> {
        let (step, ps) = self.start_step()?;
        let batch = step_batch(&self.cfg, &self.data.train, step);
        let lr = lr_at(&self.cfg, step);
        let est = crate::train::estimate_step(
            &mut self.backend,
            &self.cfg,
            &self.data.judge,
            step,
            ps,
            lr,
            &batch,
            &crate::dist::Local,
        )?;
        self.commit(&est)?;
        Ok(est)
    }

    /// Starts the next step without scoring it: its variants and packed plan, for the
    /// caller's forward. End it with [`Session::end`].
    pub fn begin(&mut self) -> Result<&StepPlan> {
        if self.data.judge.objective.generates() {
            return Err(Error::Unsupported(format!(
                "objective {} judges text zo generates under each variant; a caller's forward \
                 cannot supply it (use step, or a scored objective)",
                self.data.judge.objective.name()
            )));
        }
        if self.cfg.in_place() {
            // Checked before begin_step so that a refusal changes nothing.
            plan_step(&self.cfg, 0, None, 0.0, &[])?;
        }
        let (step, ps) = self.start_step()?;
        let batch = step_batch(&self.cfg, &self.data.train, step);
        let lr = lr_at(&self.cfg, step);
        // The caller's engine runs this plan, so every sequence is whole: no shared contexts.
        let sp = plan_step_with(&self.cfg, step, ps, lr, &batch, Sharing::PerCandidate)?;
        Ok(self.pending.insert(sp))
    }

    /// The begun step, if any.
    pub fn pending(&self) -> Option<&StepPlan> {
        self.pending.as_ref()
    }

    fn pending_or_err(&self, what: &str) -> Result<&StepPlan> {
        self.pending.as_ref().ok_or_else(|| {
            Error::Config(format!(
                "{what}: no step is begun (step {} is next); begin one first",
                self.log.completed
            ))
        })
    }

    /// zo's own forward over the begun step's plan: per-query log-probs.
    pub fn score_pending(&self) -> Result<Vec<f32>> {
        let sp = self.pending_or_err("score")?;
        Ok(self.backend.score(&sp.plan)?.query_logprobs)
    }

    /// Ends the begun step with the caller's scores: estimates g, applies the update to the
    /// session's state and logs the step. Non-finite scores are refused with the index of the
    /// first one, and the step stays begun, so the caller can score again (or
    /// [`Session::skip_pending`]).
    pub fn end(&mut self, losses: StepLosses<'_>) -> Result<StepEstimate> {
        let sp = self.pending_or_err("end")?;
        let example_losses = match losses {
            StepLosses::QueryLogprobs(lp) => {
                if lp.len() != sp.plan.queries.len() {
                    return Err(Error::Data(format!(
                        "step {}: {} query log-probs, but the plan has {} queries",
                        sp.step,
                        lp.len(),
                        sp.plan.queries.len()
                    )));
                }
                check_finite(lp, "query log-prob", sp.step)?;
                classification_scores(&sp.plan, lp)
                    .iter()
                    .map(|s| s.loss)
                    .collect()
            }
            StepLosses::ExampleLosses(l) => {
                if l.len() != sp.plan.examples.len() {
                    return Err(Error::Data(format!(
                        "step {}: {} example losses, but the plan has {} example groups \
                         ({} examples × {} variants)",
                        sp.step,
                        l.len(),
                        sp.plan.examples.len(),
                        sp.batch,
                        sp.plan.variants.len()
                    )));
                }
                l.to_vec()
            }
        };
        check_finite(&example_losses, "example loss", sp.step)?;
        let est = finish(&self.cfg, sp, &example_losses)?;
        self.commit(&est)?;
        Ok(est)
    }

    /// Logs the begun step as skipped (nothing applied), as training does with a non-finite
    /// estimate.
    pub fn skip_pending(&mut self, reason: &str) -> Result<()> {
        let sp = self.pending_or_err("skip")?;
        let est = StepEstimate {
            record: crate::perturb::StepRecord {
                step: sp.step,
                seeds: sp.seeds.clone(),
                grads: vec![f32::NAN; sp.seeds.len()],
                lr: sp.lr,
                period_seed: sp.period_seed,
            },
            g: Vec::new(),
            loss_plus: Vec::new(),
            loss_minus: Vec::new(),
            loss0: None,
            skipped: Some(reason.to_string()),
            tokens: sp.plan.n_tokens(),
        };
        self.commit(&est)
    }

    /// The task's metric (accuracy; F1 of greedy generations for a generation task, in
    /// `accuracy`) and mean loss of the current state on `split`. A dev evaluation is
    /// recorded in the log, as the training loop records its evaluations (model selection,
    /// export of the best state).
    pub fn evaluate(&mut self, split: Split) -> Result<EvalResult> {
        let at = |e: Error| Error::Data(format!("{} split: {e}", split.name()));
        let examples = self.examples(split);
        let mut r =
            evaluate(&self.backend, examples, self.cfg.eval_batch, &mut |_| {}).map_err(at)?;
        if self.data.judge.kind == crate::data::TaskKind::Generation {
            let g = crate::eval::evaluate_generation(
                &self.backend,
                examples,
                self.cfg.eval_batch,
                self.data.judge.generator()?,
            )
            .map_err(at)?;
            r.accuracy = g.f1;
        }
        if split == Split::Dev {
            self.log
                .record_dev(self.log.completed, r.accuracy, r.mean_loss);
        }
        Ok(r)
    }

    /// The seed log as a checkpoint file, with the train split's hash when there is one.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut ck = self.log.clone();
        if !self.data.train.is_empty() {
            ck.data_hash = Some(examples_hash(&self.data.train));
        }
        ck
    }

    /// Writes the checkpoint atomically (a crash or a full disk keeps the previous file).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.checkpoint().save(path)
    }

    /// Continues from a checkpoint of the same base weights and config: replays its seed log
    /// onto fresh state. Refused once this session has stepped, while a step is begun, and
    /// when the checkpoint was trained on another train split.
    pub fn resume(&mut self, path: &Path) -> Result<()> {
        if self.pending.is_some() || self.log.completed > 0 {
            return Err(Error::Config(format!(
                "resume {}: this session has already trained {} step(s); resume into a fresh \
                 session",
                path.display(),
                self.log.completed
            )));
        }
        let ck = Checkpoint::load(path)?;
        ck.check_compatible(&self.base_hash, &self.cfg)
            .map_err(|e| Error::format(path, e.to_string()))?;
        if let (Some(h), false) = (&ck.data_hash, self.data.train.is_empty()) {
            let have = examples_hash(&self.data.train);
            if *h != have {
                return Err(Error::format(
                    path,
                    format!(
                        "trained on a train split hashing to {h}, but this session's hashes to \
                         {have}"
                    ),
                ));
            }
        }
        let mut backend = open_backend(&self.base, &self.cfg, self.device)?;
        replay(
            &mut backend,
            &self.cfg,
            &ck.records,
            &ck.skipped,
            ck.completed,
        )?;
        self.backend = backend;
        self.state = OnceLock::new();
        self.log = Checkpoint {
            config: self.cfg.clone(),
            model_dir: self.log.model_dir.clone(),
            data_dir: self.log.data_dir.clone().or(ck.data_dir.clone()),
            ..ck
        };
        Ok(())
    }

    /// Replays the log onto the base weights and writes merged HF weights (and, for lora, a
    /// PEFT adapter) to `out_dir`, as `zo-run export` does.
    pub fn export(
        &self,
        out_dir: &Path,
        state: ExportState,
        dtype: ImportDtype,
    ) -> Result<ExportReport> {
        export_log(
            &self.log,
            self.base.clone(),
            &self.model_dir,
            out_dir,
            state,
            dtype,
        )
    }

    /// The Linears the family perturbs through factors (lora: its targets; lowrank: every
    /// block Linear), in the family's order. Other families have none.
    pub fn adapter_sites(&self) -> Vec<AdapterSite> {
        let m = &self.base;
        let (sites, rank): (Vec<Site>, usize) = match &self.cfg.family {
            FamilyConfig::Lora { rank, targets, .. } => {
                let slots: Vec<_> = m
                    .layer_slots()
                    .iter()
                    .copied()
                    .filter(|s| targets.contains(s))
                    .collect();
                let sites = (0..m.layers.len())
                    .flat_map(|l| slots.iter().map(move |&s| Site::layer(l, s)))
                    .collect();
                (sites, *rank)
            }
            FamilyConfig::LowRank { rank, .. } => (crate::perturb::lowrank::block_sites(m), *rank),
            _ => (Vec::new(), 0),
        };
        sites
            .into_iter()
            .filter_map(|site| {
                let l = m.linear_at(site)?;
                Some(AdapterSite {
                    site,
                    hf_module: crate::perturb::lora::hf_module_path(m.config.arch, site),
                    out_dim: l.out_dim,
                    in_dim: l.in_dim,
                    rank,
                    tensor_id: Param::Weight(site).tensor_id(),
                })
            })
            .collect()
    }

    fn adapter_site(&self, index: usize) -> Result<AdapterSite> {
        let sites = self.adapter_sites();
        let n = sites.len();
        sites.into_iter().nth(index).ok_or_else(|| {
            Error::Config(format!(
                "adapter site {index}: the {} family has {n} site(s)",
                self.cfg.family.name()
            ))
        })
    }

    /// The LoRA factors a variant runs with at adapter site `index`: `A + sεZ_A` (r×in) and
    /// `B + sεZ_B` (out×r), each element one fma, for engines that apply adapters
    /// themselves. The variant's forward is then `y += (α/r)·(x·A'ᵀ)·B'ᵀ`.
    pub fn lora_factors(&self, variant: Variant, index: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        if !matches!(self.cfg.family, FamilyConfig::Lora { .. }) {
            return Err(Error::Config(format!(
                "lora factors: the session trains the {} family",
                self.cfg.family.name()
            )));
        }
        let site = self.adapter_site(index)?;
        let name = crate::perturb::lowrank::site_name(site.site);
        let state = self.family_state()?;
        let find = |suffix: &str| {
            state
                .iter()
                .find(|(n, _, _)| *n == format!("{name}.{suffix}"))
                .map(|(_, _, v)| v.clone())
                .ok_or_else(|| Error::tensor(format!("{name}.{suffix}"), "missing from the state"))
        };
        let (mut a, mut b) = (find("lora_a")?, find("lora_b")?);
        let sc = variant.sign as f32 * variant.eps;
        if sc != 0.0 {
            for (t, r) in [(&mut a, role::LORA_A), (&mut b, role::LORA_B)] {
                let mut z = vec![0.0f32; t.len()];
                self.cfg
                    .dist
                    .fill(variant.seed, site.tensor_id, r, 0, &mut z);
                t.iter_mut()
                    .zip(&z)
                    .for_each(|(x, &z)| *x = sc.mul_add(z, *x));
            }
        }
        Ok((a, b))
    }

    /// The low-rank perturbation a variant adds at adapter site `index`, as factors:
    /// `sε·s·U` (out×r, row-major) and `V` (in×r), so the variant's weight is
    /// `W + (sε·s·U)·Vᵀ` with the trained W of the session (after [`Session::begin`], whose
    /// period switch may have merged the bank). Needs a begun step (for the period seed).
    pub fn lowrank_factors(&self, variant: Variant, index: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let FamilyConfig::LowRank { scale, .. } = self.cfg.family else {
            return Err(Error::Config(format!(
                "low-rank factors: the session trains the {} family",
                self.cfg.family.name()
            )));
        };
        let sp = self.pending_or_err("low-rank factors")?;
        let ps = sp.period_seed.expect("low-rank runs have periods");
        let site = self.adapter_site(index)?;
        let (r, out, inp) = (site.rank, site.out_dim, site.in_dim);
        let mut ut = vec![0.0f32; r * out];
        let mut vt = vec![0.0f32; r * inp];
        let dist = self.cfg.dist;
        dist.fill(variant.seed, site.tensor_id, role::LOWRANK_U, 0, &mut ut);
        dist.fill(ps, site.tensor_id, role::LOWRANK_V, 0, &mut vt);
        let s = match scale {
            LowRankScale::Plain => 1.0,
            LowRankScale::InvSqrtRank => 1.0 / (r as f32).sqrt(),
        };
        let sc = variant.sign as f32 * variant.eps * s;
        let mut u = vec![0.0f32; out * r];
        let mut v = vec![0.0f32; inp * r];
        for k in 0..r {
            for i in 0..out {
                u[i * r + k] = sc * ut[k * out + i];
            }
            for j in 0..inp {
                v[j * r + k] = vt[k * inp + j];
            }
        }
        Ok((u, v))
    }
}

/// The index of the first NaN or infinity in `values`.
pub fn first_non_finite(values: &[f32]) -> Option<usize> {
    values.iter().position(|v| !v.is_finite())
}

fn check_finite(values: &[f32], what: &str, step: u64) -> Result<()> {
    match first_non_finite(values) {
        None => Ok(()),
        Some(i) => Err(Error::Data(format!(
            "step {step}: {what} {i} is {}; expected finite values (score the step again, or \
             skip it)",
            values[i]
        ))),
    }
}

/// A fresh directory for a GGUF import, under the system's temporary directory.
fn import_dir(gguf: &Path) -> Result<ImportedDir> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stem = gguf
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy());
    let dir = std::env::temp_dir().join(format!(
        "zo-session-{}-{}-{stem}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(ImportedDir(dir))
}
