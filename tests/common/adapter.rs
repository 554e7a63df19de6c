//! Cases for the K-augmented GEMM (shrink + pack): a group of sites sharing one input, a
//! lowrank or lora family with or without trained state, segments of q directions, and the
//! references the augmented product `x'·W'ᵀ` is checked against.
//!
//! Tolerance rule (GEMM paths): with `ref64` the fp64 evaluation of the family's formula on the
//! f32 inputs and `naive_T` a same-precision naive implementation (every GEMM input rounded to
//! T, fp32 accumulation), the augmented output must satisfy
//! `max|y − ref64| ≤ 2·max|naive_T − ref64| + 1e-5·max|ref64|` per site. The family's own CPU
//! `Perturbation::linear` must match ref64 to f32 GEMM accuracy.
#![allow(dead_code)]

use zo::backend::DType;
use zo::model::{Linear, Model, ModelConfig, Param, Site, Slot};
use zo::perturb::adapter::{self, AugFamily, AugSite};
use zo::perturb::{
    role, Dist, Family, FamilyConfig, LowRankScale, Segment, StepRecord, UpdateConfig,
};

/// Every storage type of x' and W'.
pub const DTYPES: [DType; 3] = [DType::F32, DType::Bf16, DType::F16];

/// Input width K (not a multiple of 8 or of the 128-column tile), and the model around it.
pub const K: usize = 260;

pub fn model() -> Model {
    let cfg = ModelConfig {
        hidden_size: K,
        embed_dim: K,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 65,
        intermediate_size: 72,
        num_layers: 1,
        qkv_bias: true,
        ..ModelConfig::tiny_llama()
    };
    Model::random_with_std(cfg, 5, 0.2)
}

pub struct SiteCase {
    pub site: Site,
    pub lin: Linear,
    pub aug: AugSite,
    /// Vᵀ or A, r×K.
    pub factor: Vec<f32>,
    /// bankᵀ (r×out) or B (out×r).
    pub state: Vec<f32>,
    /// First row of the site in the group's stacked weight.
    pub row0: usize,
}

pub struct Case {
    pub name: String,
    pub rows: usize,
    pub ld: usize,
    pub x: Vec<f32>,
    pub segs: Vec<Segment>,
    pub seg_dir: Vec<u32>,
    pub dir_seeds: Vec<u64>,
    pub sites: Vec<SiteCase>,
    pub family: Box<dyn Family>,
    pub out_total: usize,
}

/// Segments for `q` directions over `rows` rows: each direction's + and − segments, with
/// unperturbed rows before, between and after, boundaries inside 16-row blocks.
pub fn segments(q: usize, rows: usize, eps: f32) -> (Vec<Segment>, Vec<u64>) {
    let seeds: Vec<u64> = (0..q as u64)
        .map(|d| 0x5eed_0000_0000 + 77 * d + 3)
        .collect();
    let mut segs = Vec::new();
    let mut at = 3;
    for (d, &seed) in seeds.iter().enumerate() {
        for (v, sign) in [1.0f32, -1.0].into_iter().enumerate() {
            let len = 5 + (d * 7 + v * 3) % 11;
            let start = at + (v + d) % 2;
            assert!(
                start + len <= rows,
                "rows {rows} too few for {q} directions"
            );
            segs.push(Segment {
                rows: start..start + len,
                variant: 2 * d + v,
                seed,
                scale: sign * eps,
            });
            at = start + len;
        }
    }
    (segs, seeds)
}

pub fn record(seeds: &[u64], lr: f32) -> StepRecord {
    StepRecord {
        step: 0,
        seeds: seeds.to_vec(),
        grads: (0..seeds.len()).map(|d| 1.25 - 0.7 * d as f32).collect(),
        lr,
        period_seed: None,
    }
}

fn fill(dist: Dist, seed: u64, tensor: u32, r: u32, n: usize) -> Vec<f32> {
    let mut v = vec![0.0; n];
    dist.fill(seed, tensor, r, 0, &mut v);
    v
}

fn state<'a>(st: &'a [(String, Vec<usize>, Vec<f32>)], name: &str) -> &'a [f32] {
    &st.iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no state {name}"))
        .2
}

/// A lowrank (`lora == false`) or lora case on the group `slots` of layer 0.
#[allow(clippy::too_many_arguments)]
pub fn case(
    lora: bool,
    slots: &[Slot],
    q: usize,
    rank: usize,
    dist: Dist,
    trained: bool,
    rows: usize,
) -> Case {
    let mut model = model();
    let (eps, lr) = (5e-2, 5e-2);
    let cfg = if lora {
        FamilyConfig::Lora {
            rank,
            alpha: 16.0,
            targets: slots.to_vec(),
        }
    } else {
        FamilyConfig::LowRank {
            rank,
            period: 10,
            scale: if rank.is_multiple_of(2) {
                LowRankScale::InvSqrtRank
            } else {
                LowRankScale::Plain
            },
            momentum: None,
        }
    };
    let mut family = zo::perturb::build(&cfg, dist, &model, 99).unwrap();
    let (segs, dir_seeds) = segments(q, rows, eps);
    if trained {
        // Trained with other directions than the ones scored.
        let rec = record(&[901, 902], lr);
        let ucfg = UpdateConfig {
            dist,
            weight_decay: 0.0,
            rule: Default::default(),
        };
        family.update(&mut model, &rec, &ucfg).unwrap();
    }
    let st = family.state_tensors();
    let seg_dir = adapter::segment_directions(&segs, &dir_seeds).unwrap();
    let g_count = slots.len();
    let ld = adapter::k_aug(K, rank, q, g_count);
    let mut sites = Vec::new();
    let mut row0 = 0;
    for (g, &slot) in slots.iter().enumerate() {
        let site = Site::layer(0, slot);
        let lin = model.linear_at(site).unwrap().clone();
        assert_eq!(lin.in_dim, K);
        let tid = Param::Weight(site).tensor_id();
        let name = format!("layers.0.{}", slot.name());
        let (factor, stt, scale) = if lora {
            (
                state(&st, &format!("{name}.lora_a")).to_vec(),
                state(&st, &format!("{name}.lora_b")).to_vec(),
                16.0 / rank as f32,
            )
        } else {
            let s = if rank.is_multiple_of(2) {
                1.0 / (rank as f32).sqrt()
            } else {
                1.0
            };
            (
                fill(dist, 0, tid, role::LOWRANK_V, rank * K),
                state(&st, &format!("{name}.bank")).to_vec(),
                s,
            )
        };
        let aug = AugSite {
            family: if lora {
                AugFamily::Lora
            } else {
                AugFamily::LowRank
            },
            k: K,
            ld,
            col0: K + g * (q + 1) * rank,
            rank,
            dirs: q,
            live: trained,
            scale,
            scale_exp: 0,
            tensor_id: tid,
            dist,
        };
        let out = lin.out_dim;
        sites.push(SiteCase {
            site,
            lin,
            aug,
            factor,
            state: stt,
            row0,
        });
        row0 += out;
    }
    let x = fill(Dist::Gaussian, 4242, 7, 0, rows * K);
    Case {
        name: format!(
            "{} slots {:?} q {q} r {rank} {dist:?} trained {trained} rows {rows}",
            if lora { "lora" } else { "lowrank" },
            slots.iter().map(|s| s.name()).collect::<Vec<_>>()
        ),
        rows,
        ld,
        x,
        segs,
        seg_dir,
        dir_seeds,
        sites,
        family,
        out_total: row0,
    }
}

/// The standard matrix of cases: lowrank (trained and not, q = 1 and 3, both distributions,
/// G = 1 and 3, a rank over one 16-wide rank block) and lora (G = 1 and 3).
pub fn cases(rows: usize) -> Vec<Case> {
    let qkv = [Slot::Q, Slot::K, Slot::V];
    let o = [Slot::O];
    vec![
        case(false, &o, 1, 3, Dist::Gaussian, true, rows),
        case(false, &o, 1, 4, Dist::Rademacher, false, rows),
        case(false, &qkv, 3, 5, Dist::Gaussian, true, rows),
        case(false, &qkv, 3, 2, Dist::Rademacher, false, rows),
        case(false, &o, 2, 20, Dist::Rademacher, true, rows),
        case(true, &qkv, 1, 4, Dist::Gaussian, true, rows),
        case(true, &o, 3, 3, Dist::Rademacher, true, rows),
        case(true, &o, 2, 18, Dist::Gaussian, false, rows),
    ]
}

/// What W' holds in sub-blocks a plan leaves to the previous one (exact in every type).
pub const STALE: f32 = 0.375;

impl Case {
    /// The same case with segments for only the first `used` of the site's directions: the
    /// weights stay laid out for all of them (a plan scoring fewer directions than the layout's
    /// q), and the rows of the dropped directions are unperturbed.
    pub fn naming_fewer_directions(mut self, used: usize) -> Case {
        let q = self.dir_seeds.len();
        assert!(0 < used && used < q, "{used} of {q} directions");
        let keep: Vec<bool> = self.seg_dir.iter().map(|&d| (d as usize) < used).collect();
        self.segs = self
            .segs
            .into_iter()
            .zip(&keep)
            .filter_map(|(s, &k)| k.then_some(s))
            .collect();
        self.dir_seeds.truncate(used);
        self.seg_dir = adapter::segment_directions(&self.segs, &self.dir_seeds).unwrap();
        self.name = format!("{}, segments naming {used} of {q} directions", self.name);
        self
    }

    /// The group's padding columns.
    pub fn padding(&self) -> std::ops::Range<usize> {
        let s = &self.sites[0].aug;
        adapter::padding(K, s.rank, s.dirs, self.sites.len())
    }

    /// x' before the shrinks: the activation rounded to T, NaN in every extra column (so a
    /// column the shrink fails to write poisons the product).
    pub fn x_input(&self, prec: DType) -> Vec<f32> {
        let mut xp = vec![f32::NAN; self.rows * self.ld];
        for t in 0..self.rows {
            for j in 0..K {
                xp[t * self.ld + j] = prec.round(self.x[t * K + j]);
            }
        }
        xp
    }

    /// W' before the packs: the stacked weights rounded to T, zeros in the extra columns (as
    /// the backend uploads it), except the sub-blocks of directions the segments do not name,
    /// which hold [`STALE`] as left by an earlier plan of more directions: a pack must leave
    /// them, and a shrink's zeros there keep them out of the product.
    pub fn w_input(&self, prec: DType) -> Vec<f32> {
        let mut wp = vec![0.0f32; self.out_total * self.ld];
        let used = self.dir_seeds.len();
        for s in &self.sites {
            let (c0, r) = (s.aug.col0, s.aug.rank);
            for i in 0..s.lin.out_dim {
                let row = &mut wp[(s.row0 + i) * self.ld..][..self.ld];
                for (x, &w) in row[..K].iter_mut().zip(&s.lin.w[i * K..(i + 1) * K]) {
                    *x = prec.round(w);
                }
                row[c0 + (used + 1) * r..c0 + s.aug.width()].fill(prec.round(STALE));
            }
        }
        wp
    }

    /// The sites with `scale_exp` chosen by the rule of csrc/params/adapter.h for f16 (0 for
    /// the others).
    pub fn aug_sites(&self, prec: DType) -> Vec<AugSite> {
        self.sites
            .iter()
            .map(|s| {
                let mut a = s.aug;
                if prec == DType::F16 {
                    let smax = s.state.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let hmax = a.scale * (K as f32).sqrt();
                    if smax > 0.0 {
                        let e = ((hmax.log2() - smax.log2()) / 2.0).round();
                        a.scale_exp = e.clamp(0.0, 24.0) as i32;
                    }
                }
                a
            })
            .collect()
    }

    /// x' and W' from the CPU twin.
    pub fn twin(&self, prec: DType) -> (Vec<f32>, Vec<f32>) {
        let mut xp = self.x_input(prec);
        let mut wp = self.w_input(prec);
        let sites = self.aug_sites(prec);
        let n = sites.len();
        for (g, (s, a)) in self.sites.iter().zip(&sites).enumerate() {
            let pad = if g + 1 == n { self.padding() } else { 0..0 };
            adapter::shrink(
                a,
                self.rows,
                &mut xp,
                &s.factor,
                &self.segs,
                &self.seg_dir,
                pad,
                |v| prec.round(v),
            );
            // The pack writes only the sub-blocks of the directions the segments name.
            let named = AugSite {
                dirs: self.dir_seeds.len(),
                ..*a
            };
            adapter::pack(
                &named,
                s.lin.out_dim,
                s.row0,
                &mut wp,
                &s.state,
                &self.dir_seeds,
                |v| prec.round(v),
            );
        }
        (xp, wp)
    }

    /// Per site: (ref64, naive_T, family linear) outputs `[rows][out]`.
    fn references(&self, s: &SiteCase, prec: DType) -> (Vec<f64>, Vec<f32>, Vec<f32>) {
        let (rows, out) = (self.rows, s.lin.out_dim);
        let a = &s.aug;
        let r = a.rank;
        let lora = a.family == AugFamily::Lora;
        let segment_of = |t: usize| {
            self.segs
                .iter()
                .zip(&self.seg_dir)
                .find(|(sg, _)| sg.rows.contains(&t))
                .map(|(sg, &d)| (d as usize, sg.scale, sg.seed))
        };
        let zrole = if lora { role::LORA_B } else { role::LOWRANK_U };
        let zs: Vec<Vec<f32>> = self
            .dir_seeds
            .iter()
            .map(|&seed| fill(a.dist, seed, a.tensor_id, zrole, r * out))
            .collect();
        let za: Vec<Vec<f32>> = self
            .dir_seeds
            .iter()
            .map(|&seed| fill(a.dist, seed, a.tensor_id, role::LORA_A, r * K))
            .collect();
        let sidx = |i: usize, k: usize| if lora { i * r + k } else { k * out + i };
        let mut ref64 = vec![0.0f64; rows * out];
        let mut naive = vec![0.0f32; rows * out];
        let rd = |v: f32| prec.round(v);
        for t in 0..rows {
            let xr = &self.x[t * K..(t + 1) * K];
            let seg = segment_of(t);
            // h (f64 and naive) per rank component.
            let mut h64 = vec![0.0f64; r];
            let mut hn = vec![0.0f32; r];
            for k in 0..r {
                let f = &s.factor[k * K..(k + 1) * K];
                let mut acc = 0.0f64;
                let mut accn = 0.0f32;
                #[allow(clippy::needless_range_loop)]
                for j in 0..K {
                    let mut fj = f[j] as f64;
                    let mut fjn = f[j];
                    if let (true, Some((d, sc, _))) = (lora, seg) {
                        fj += sc as f64 * za[d][k * K + j] as f64;
                        fjn += sc * za[d][k * K + j];
                    }
                    acc += xr[j] as f64 * fj;
                    accn += rd(xr[j]) * fjn;
                }
                h64[k] = acc;
                hn[k] = accn;
            }
            for i in 0..out {
                let b = s.lin.b.as_ref().map_or(0.0, |b| b[i]);
                let mut y64 = b as f64;
                let mut yn = b;
                for (&xj, &wj) in xr.iter().zip(&s.lin.w[i * K..(i + 1) * K]) {
                    y64 += xj as f64 * wj as f64;
                    yn += rd(xj) * rd(wj);
                }
                let sc_d = seg.map(|(d, sc, _)| (d, sc));
                for k in 0..r {
                    let st = s.state[sidx(i, k)];
                    let scale = a.scale as f64;
                    match (lora, sc_d) {
                        (false, sd) => {
                            if a.live {
                                y64 += scale * h64[k] * st as f64;
                                yn += rd(a.scale * hn[k]) * rd(st);
                            }
                            if let Some((d, sc)) = sd {
                                let u = zs[d][sidx(i, k)];
                                y64 += scale * sc as f64 * h64[k] * u as f64;
                                yn += rd(a.scale * sc * hn[k]) * rd(u);
                            }
                        }
                        (true, None) => {
                            if a.live {
                                y64 += scale * h64[k] * st as f64;
                                yn += rd(a.scale * hn[k]) * rd(st);
                            }
                        }
                        (true, Some((d, sc))) => {
                            let z = zs[d][sidx(i, k)];
                            y64 += scale * h64[k] * (st as f64 + sc as f64 * z as f64);
                            yn += rd(a.scale * hn[k]) * rd(st) + rd(a.scale * sc * hn[k]) * rd(z);
                        }
                    }
                }
                ref64[t * out + i] = y64;
                naive[t * out + i] = yn;
            }
        }
        // The family's own forward hook on the f32 base product.
        let mut y = vec![0.0f32; rows * out];
        for t in 0..rows {
            for i in 0..out {
                let mut acc = s.lin.b.as_ref().map_or(0.0, |b| b[i]);
                for j in 0..K {
                    acc += self.x[t * K + j] * s.lin.w[i * K + j];
                }
                y[t * out + i] = acc;
            }
        }
        self.family
            .linear(s.site, &s.lin, &self.x, &mut y, &self.segs);
        (ref64, naive, y)
    }

    /// Checks `x'·W'ᵀ` (evaluated in fp64) against the family by the tolerance rule.
    pub fn check_product(&self, xp: &[f32], wp: &[f32], prec: DType, what: &str) {
        for s in &self.sites {
            let out = s.lin.out_dim;
            let (ref64, naive, cpu) = self.references(s, prec);
            let rmax = ref64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let cpu_err = max_err(&cpu, &ref64);
            assert!(
                cpu_err <= 1e-5 * rmax,
                "{what} {}: family linear vs fp64 reference {cpu_err:e} (max {rmax:e})",
                s.site.slot.name()
            );
            let mut y = vec![0.0f64; self.rows * out];
            for t in 0..self.rows {
                for i in 0..out {
                    let xr = &xp[t * self.ld..(t + 1) * self.ld];
                    let wr = &wp[(s.row0 + i) * self.ld..(s.row0 + i + 1) * self.ld];
                    let mut acc = s.lin.b.as_ref().map_or(0.0, |b| b[i] as f64);
                    for (a, b) in xr.iter().zip(wr) {
                        acc += *a as f64 * *b as f64;
                    }
                    y[t * out + i] = acc;
                }
            }
            let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
            let err = max_err(&y32, &ref64);
            let naive_err = max_err(&naive, &ref64);
            let bound = 2.0 * naive_err + 1e-5 * rmax;
            assert!(
                err <= bound,
                "{what} {} {prec:?}: max|y − ref64| = {err:e} > {bound:e} (naive {naive_err:e}, \
                 max|ref| {rmax:e})",
                s.site.slot.name()
            );
        }
    }
}

fn max_err(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y).abs()))
}
