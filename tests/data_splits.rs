//! Seeded shuffles and MeZO's train/dev/test sampling.

use std::collections::{BTreeMap, HashSet};

use zo::data::{mezo_splits, sample, sample_per_label, shuffle, Example, SplitSpec, TrainSize};

fn pool(n: usize, labels: &[&str]) -> Vec<Example> {
    (0..n)
        .map(|i| Example::new(labels[i % labels.len()]).with_field("text", format!("ex{i}")))
        .collect()
}

fn texts(v: &[Example]) -> Vec<String> {
    v.iter()
        .map(|e| e.field("text").unwrap().to_string())
        .collect()
}

#[test]
fn shuffle_is_a_seeded_permutation() {
    let base: Vec<u32> = (0..100).collect();
    let mut a = base.clone();
    let mut b = base.clone();
    let mut c = base.clone();
    shuffle(&mut a, 7);
    shuffle(&mut b, 7);
    shuffle(&mut c, 8);
    assert_eq!(a, b, "same seed, same order");
    assert_ne!(a, c, "another seed, another order");
    assert_ne!(a, base);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, base);
}

#[test]
fn shuffle_reaches_every_permutation_evenly() {
    // 6000 fixed seeds over 3 items: each of the 6 orders should get about 1000.
    let mut counts: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for seed in 0..6000u64 {
        let mut v = vec![0u8, 1, 2];
        shuffle(&mut v, seed);
        *counts.entry(v).or_default() += 1;
    }
    assert_eq!(counts.len(), 6);
    for (perm, n) in counts {
        assert!((850..1150).contains(&n), "{perm:?} drawn {n} times");
    }
}

#[test]
fn sample_draws_distinct_examples() {
    let p = pool(50, &["0", "1"]);
    let s = sample(&p, 20, 3).unwrap();
    assert_eq!(s.len(), 20);
    assert_eq!(texts(&s).into_iter().collect::<HashSet<_>>().len(), 20);
    assert_eq!(texts(&s), texts(&sample(&p, 20, 3).unwrap()));
    let e = sample(&p, 51, 3).unwrap_err().to_string();
    assert!(e.contains("51") && e.contains("50"), "{e}");
}

#[test]
fn per_label_sampling_is_balanced() {
    let p = pool(90, &["a", "b", "c"]);
    let s = sample_per_label(&p, 16, 1).unwrap();
    assert_eq!(s.len(), 48);
    for l in ["a", "b", "c"] {
        assert_eq!(s.iter().filter(|e| e.label == l).count(), 16);
    }
    assert_eq!(texts(&s).into_iter().collect::<HashSet<_>>().len(), 48);
    // Labels are interleaved, not grouped.
    assert!(s[..16].iter().any(|e| e.label != s[0].label));
    let e = sample_per_label(&p, 31, 1).unwrap_err().to_string();
    assert!(
        e.contains("31") && e.contains("\"a\"") && e.contains("30"),
        "{e}"
    );
}

#[test]
fn mezo_splits_are_disjoint_sized_and_reproducible() {
    let train_pool = pool(200, &["0", "1"]);
    let test_pool: Vec<Example> = pool(60, &["0", "1"])
        .into_iter()
        .map(|e| {
            let t = format!("held-out {}", e.field("text").unwrap());
            e.with_field("text", t)
        })
        .collect();
    let spec = SplitSpec {
        train: TrainSize::Total(100),
        dev: 50,
        test: 40,
        seed: 11,
    };
    let s = mezo_splits(&train_pool, &test_pool, &spec).unwrap();
    assert_eq!((s.train.len(), s.dev.len(), s.test.len()), (100, 50, 40));
    let train: HashSet<_> = texts(&s.train).into_iter().collect();
    let dev: HashSet<_> = texts(&s.dev).into_iter().collect();
    assert_eq!(train.len(), 100);
    assert_eq!(dev.len(), 50);
    assert!(train.is_disjoint(&dev));
    assert!(texts(&s.test).iter().all(|t| t.starts_with("held-out")));
    assert_eq!(s, mezo_splits(&train_pool, &test_pool, &spec).unwrap());
    let other = mezo_splits(&train_pool, &test_pool, &SplitSpec { seed: 12, ..spec }).unwrap();
    assert_ne!(texts(&s.train), texts(&other.train));

    let k = mezo_splits(
        &train_pool,
        &test_pool,
        &SplitSpec {
            train: TrainSize::PerLabel(16),
            ..spec
        },
    )
    .unwrap();
    assert_eq!(k.train.iter().filter(|e| e.label == "1").count(), 16);
    assert_eq!(k.train.len(), 32);
}

#[test]
fn mezo_splits_name_the_pool_that_is_too_small() {
    let train_pool = pool(120, &["0", "1"]);
    let test_pool = pool(10, &["0", "1"]);
    let spec = SplitSpec {
        train: TrainSize::Total(100),
        dev: 50,
        test: 5,
        seed: 0,
    };
    let e = mezo_splits(&train_pool, &test_pool, &spec)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("after the train draw") && e.contains("20"),
        "{e}"
    );
    let e = mezo_splits(
        &train_pool,
        &test_pool,
        &SplitSpec {
            dev: 10,
            test: 11,
            ..spec
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("test pool"), "{e}");
    let e = mezo_splits(&train_pool, &test_pool, &SplitSpec { dev: 0, ..spec })
        .unwrap_err()
        .to_string();
    assert!(e.contains("dev split would be empty"), "{e}");
}
