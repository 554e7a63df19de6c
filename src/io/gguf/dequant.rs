//! Decoding ggml block formats to f32.
//!
//! Each block decoder follows ggml's reference (scalar) dequantization, with the same order of
//! f32 operations and no fused multiply-add, so the results equal ggml's and gguf-py's bit for bit.

use half::{bf16, f16};
use rayon::prelude::*;

use super::types::{GgmlType, QK_K};

/// Blocks per rayon task: large enough to amortise scheduling, small enough to balance.
const BLOCKS_PER_TASK: usize = 1024;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Decodes `n` elements of type `t` from `bytes` (exactly `n / block * block_bytes` long).
/// The error says what is unsupported or inconsistent; the caller adds the tensor name.
pub fn dequantize(t: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let (block, block_bytes) = t.block_geometry();
    if !n.is_multiple_of(block) || bytes.len() != n / block * block_bytes {
        return Err(format!(
            "{n} elements of {t} need {} bytes, got {}",
            n / block * block_bytes,
            bytes.len()
        ));
    }
    let decode: fn(&[u8], &mut [f32]) = match t {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = f16_at(b, 0),
        GgmlType::BF16 => |b, y| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::F64 => |b, y| y[0] = f64::from_le_bytes(b.try_into().unwrap()) as f32,
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q2_K => q2_k,
        GgmlType::Q3_K => q3_k,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        other => {
            return Err(format!(
                "tensor type {other} cannot be decoded (unsupported)"
            ))
        }
    };
    let mut out = vec![0f32; n];
    out.par_chunks_mut(block * BLOCKS_PER_TASK)
        .zip(bytes.par_chunks(block_bytes * BLOCKS_PER_TASK))
        .for_each(|(ys, bs)| {
            for (y, b) in ys.chunks_exact_mut(block).zip(bs.chunks_exact(block_bytes)) {
                decode(b, y);
            }
        });
    Ok(out)
}

// 32-element blocks: element j < 16 is the low nibble of qs[j], element j + 16 its high nibble.

fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for (j, &q) in qs.iter().enumerate() {
        y[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for (j, &q) in qs.iter().enumerate() {
        y[j] = d * (q & 0x0f) as f32 + m;
        y[j + 16] = d * (q >> 4) as f32 + m;
    }
}

/// The fifth bits of a Q5 block: bit j of the little-endian u32 belongs to element j.
fn q5_high(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = q5_high(&b[2..6]);
    let qs = &b[6..22];
    for (j, &q) in qs.iter().enumerate() {
        let lo = (q & 0x0f) as u32 | ((qh >> j) & 1) << 4;
        let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (lo as i32 - 16) as f32;
        y[j + 16] = d * (hi as i32 - 16) as f32;
    }
}

fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = q5_high(&b[4..8]);
    let qs = &b[8..24];
    for (j, &q) in qs.iter().enumerate() {
        let lo = (q & 0x0f) as u32 | ((qh >> j) & 1) << 4;
        let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        y[j] = d * lo as f32 + m;
        y[j + 16] = d * hi as f32 + m;
    }
}

fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (yj, &q) in y.iter_mut().zip(&b[2..34]) {
        *yj = (q as i8) as f32 * d;
    }
}

// K-quants: 256-element super-blocks. Quant bits are laid out in 32-byte lanes: for a lane
// of `bits` per value, byte l of a lane feeds element l of several consecutive 32-element
// groups, one group per bit field.

/// Q2_K: 16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit quants, d, dmin.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for (e, ye) in y.iter_mut().enumerate().take(QK_K) {
        let (half, field, l) = (e / 128, (e % 128) / 32, e % 32);
        let q = (qs[half * 32 + l] >> (2 * field)) & 3;
        let sc = scales[e / 16];
        let dl = d * (sc & 0x0f) as f32;
        let ml = dmin * (sc >> 4) as f32;
        *ye = dl * q as f32 - ml;
    }
}

/// Q3_K: 32-byte high-bit mask, 64 bytes of low 2-bit quants, 12 bytes of 6-bit signed scales, d.
fn q3_k(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let sb = &b[96..108];
    let d = f16_at(b, 108);
    let mut scales = [0f32; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        // Low 4 bits: nibble i / 8 of byte i % 8. High 2 bits: field i / 4 of byte 8 + i % 4.
        let lo = (sb[i % 8] >> (4 * (i / 8))) & 0x0f;
        let hi = (sb[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = ((lo | hi << 4) as i32 - 32) as f32;
    }
    for (e, ye) in y.iter_mut().enumerate().take(QK_K) {
        let (half, field, l) = (e / 128, (e % 128) / 32, e % 32);
        let low = ((qs[half * 32 + l] >> (2 * field)) & 3) as i32;
        // The mask bit set means "no offset"; clear means subtract 4.
        let high = (hmask[l] >> (e / 32)) & 1;
        let q = low - if high == 0 { 4 } else { 0 };
        *ye = (d * scales[e / 16]) * q as f32;
    }
}

/// The eight 6-bit (scale, min) pairs packed into 12 bytes, shared by Q4_K and Q5_K.
fn k_scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 0x3f;
        mn[j] = s[j + 4] & 0x3f;
        // Sub-blocks 4..8 keep their low 4 bits in bytes 8..12 and borrow the top two bits of
        // the bytes used by sub-blocks 0..4.
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, mn)
}

/// Q4_K: d, dmin, 12 scale bytes, 128 bytes of nibbles; sub-block 2c uses the low nibbles of
/// bytes 32c..32c+32 and sub-block 2c+1 their high nibbles.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = k_scale_min(&b[4..16]);
    let qs = &b[16..144];
    for (e, ye) in y.iter_mut().enumerate().take(QK_K) {
        let sub = e / 32;
        let q = (qs[(sub / 2) * 32 + e % 32] >> (4 * (sub % 2))) & 0x0f;
        let ds = d * sc[sub] as f32;
        let dm = dmin * mn[sub] as f32;
        *ye = ds * q as f32 - dm;
    }
}

/// Q5_K: Q4_K plus a 32-byte plane of fifth bits (bit `sub` of byte l for element l of `sub`).
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = k_scale_min(&b[4..16]);
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (e, ye) in y.iter_mut().enumerate().take(QK_K) {
        let (sub, l) = (e / 32, e % 32);
        let low = (qs[(sub / 2) * 32 + l] >> (4 * (sub % 2))) & 0x0f;
        let q = low | ((qh[l] >> sub) & 1) << 4;
        let ds = d * sc[sub] as f32;
        let dm = dmin * mn[sub] as f32;
        *ye = ds * q as f32 - dm;
    }
}

/// Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 signed 8-bit scales, d.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = f16_at(b, 208);
    for (e, ye) in y.iter_mut().enumerate().take(QK_K) {
        let (half, field, l) = (e / 128, (e % 128) / 32, e % 32);
        let low = (ql[half * 64 + (field % 2) * 32 + l] >> (4 * (field / 2))) & 0x0f;
        let high = (qh[half * 32 + l] >> (2 * field)) & 3;
        let q = (low | high << 4) as i32 - 32;
        let ds = d * (scales[e / 16] as i8) as f32;
        *ye = ds * q as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_byte_count_and_unsupported_types() {
        let err = dequantize(GgmlType::Q8_0, &[0u8; 33], 32).unwrap_err();
        assert!(err.contains("need 34 bytes"), "{err}");
        let err = dequantize(GgmlType::IQ2_XXS, &[0u8; 66], 256).unwrap_err();
        assert!(err.contains("IQ2_XXS"), "{err}");
    }

    #[test]
    fn q8_0_hand_block() {
        // d = 0.5 (f16 0x3800), quants -3 and 4.
        let mut b = vec![0x00, 0x38];
        b.extend((0..32).map(|i| if i == 0 { (-3i8) as u8 } else { 4 }));
        let y = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_eq!(y[0], -1.5);
        assert!(y[1..].iter().all(|&v| v == 2.0));
    }

    #[test]
    fn q4_0_nibble_order() {
        // d = 1, qs[0] = 0x9_1 → element 0 = 1 - 8, element 16 = 9 - 8.
        let mut b = vec![0x00, 0x3c, 0x91];
        b.extend([0x88u8; 15]);
        let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_eq!((y[0], y[16], y[1], y[17]), (-7.0, 1.0, 0.0, 0.0));
    }
}
