//! Every element is a pure function of (seed, tensor, role, index): single lookups, whole blocks
//! and fills of any range, tiling or rayon chunking agree bit for bit.

use zo::rng::{self, Stream, PAR_MIN_LEN};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

const S: Stream = Stream::new(0xa409_3822_299f_31d0, 11, 1);

#[test]
fn single_element_block_and_fill_agree() {
    let n = 4099;
    let mut fill = vec![0f32; n];
    S.fill_gaussian(0, &mut fill);
    let mut rad = vec![0f32; n];
    S.fill_rademacher(0, &mut rad);
    let mut raw = vec![0u32; n];
    S.fill_raw(0, &mut raw);
    for i in 0..n {
        let g = S.gaussian(i as u64);
        assert_eq!(g.to_bits(), fill[i].to_bits(), "element {i}");
        assert_eq!(g.to_bits(), S.gaussian_block(i as u64 / 4)[i % 4].to_bits());
        assert_eq!(S.rademacher(i as u64), rad[i]);
        assert_eq!(S.raw(i as u64), raw[i]);
        assert_eq!(S.raw_block(i as u64 / 4)[i % 4], raw[i]);
        assert_eq!(
            rng::gaussian(S.seed, S.tensor, S.role, i as u64).to_bits(),
            g.to_bits()
        );
    }
}

#[test]
fn any_tiling_of_a_range_gives_the_same_values() {
    let n = 3 * PAR_MIN_LEN + 13;
    let mut whole = vec![0f32; n];
    S.fill_gaussian(0, &mut whole);
    // Tilings with unaligned starts and lengths that are not multiples of 4.
    for tile in [1usize, 3, 4, 5, 7, 64, 1001, 4096, PAR_MIN_LEN + 3] {
        let mut tiled = vec![0f32; n];
        let mut start = 0;
        for part in tiled.chunks_mut(tile) {
            S.fill_gaussian(start as u64, part);
            start += part.len();
        }
        assert_eq!(bits(&tiled), bits(&whole), "tile {tile}");
    }
    // Sub-ranges of the whole, through the free function.
    for (start, len) in [
        (1, 1),
        (2, 5),
        (3, 9),
        (6, 0),
        (4097, 31),
        (17, PAR_MIN_LEN + 5),
    ] {
        let mut part = vec![0f32; len];
        rng::fill_gaussian(S.seed, S.tensor, S.role, start as u64, &mut part);
        assert_eq!(
            bits(&part),
            bits(&whole[start..start + len]),
            "{start}+{len}"
        );
    }
}

#[test]
fn rayon_chunk_size_does_not_change_values() {
    let n = 2 * PAR_MIN_LEN + 6;
    for start in [0u64, 1, 2, 3, 1 << 40] {
        let mut reference = vec![0f32; n];
        S.fill_gaussian_chunked(start, &mut reference, usize::MAX);
        for chunk in [0usize, 1, 3, 4, 6, 1000, 4096, 16_385] {
            let mut v = vec![0f32; n];
            S.fill_gaussian_chunked(start, &mut v, chunk);
            assert_eq!(bits(&v), bits(&reference), "start {start}, chunk {chunk}");
        }
        // Spot-check against single lookups.
        for i in [0, 1, 2, 3, 4, n / 2 + 1, n - 1] {
            assert_eq!(
                reference[i].to_bits(),
                S.gaussian(start + i as u64).to_bits()
            );
        }
    }
}

#[test]
fn block_counter_carries_into_the_high_word() {
    // Elements straddling block 2^32 - 1 | 2^32 use counter words (0xffffffff, 0) and (0, 1).
    let start = 4 * (1u64 << 32) - 2;
    let mut v = vec![0u32; 12];
    S.fill_raw(start, &mut v);
    let key = S.key();
    let lo = rng::philox4x32_10([u32::MAX, 0, S.tensor, S.role], key);
    let hi = rng::philox4x32_10([0, 1, S.tensor, S.role], key);
    assert_eq!(v[0..2], lo[2..4]);
    assert_eq!(v[2..6], hi[0..4]);
    let mut g = vec![0f32; 12];
    S.fill_gaussian(start, &mut g);
    assert_eq!(g[2..6], S.gaussian_block(1 << 32));
}

#[test]
fn seed_tensor_and_role_select_distinct_streams() {
    let draw = |s: Stream| {
        let mut v = vec![0u32; 256];
        s.fill_raw(0, &mut v);
        v
    };
    let streams = [
        S,
        Stream::new(S.seed ^ 1, S.tensor, S.role),
        Stream::new(S.seed ^ (1 << 32), S.tensor, S.role),
        Stream::new(S.seed, S.tensor + 1, S.role),
        Stream::new(S.seed, S.tensor, S.role + 1),
        // Tensor and role swapped must not alias.
        Stream::new(S.seed, S.role, S.tensor),
    ];
    let draws = streams.map(draw);
    for i in 0..draws.len() {
        for j in 0..i {
            let same = draws[i]
                .iter()
                .zip(&draws[j])
                .filter(|(a, b)| a == b)
                .count();
            // Independent 32-bit words coincide with probability 2^-32 each.
            assert!(same <= 1, "streams {i} and {j} share {same} of 256 words");
        }
    }
}

#[test]
fn empty_fill_is_a_no_op() {
    let mut v: Vec<f32> = vec![];
    S.fill_gaussian(3, &mut v);
    S.fill_rademacher(u64::MAX - 2, &mut v);
}
