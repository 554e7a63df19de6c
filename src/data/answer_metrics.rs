//! Answer metrics for generation tasks: SQuAD v1.1's exact match and token F1.
//!
//! Both follow the official SQuAD v1.1 evaluation script (`evaluate-v1.1.py`) so that scores
//! compare with published numbers, MeZO's included:
//!
//! - [`normalize_answer`] lowercases, drops every character of Python's `string.punctuation`
//!   (the 32 ASCII punctuation characters; Unicode punctuation such as `“` or `—` stays), drops
//!   the articles `a`, `an` and `the` as whole words, and collapses whitespace.
//! - [`exact_match`] is 1 when the normalized prediction equals a normalized reference.
//! - [`token_f1`] is the harmonic mean of token precision and recall, with tokens taken from the
//!   normalized strings and overlap counted as multisets. No overlap scores 0, and that includes
//!   an empty prediction against an empty reference: v1.1 scores that pair 0 (SQuAD v2.0's
//!   script would score it 1, for unanswerable questions, which v1.1 does not have).
//!
//! Both take the best score over the references. An empty reference list scores 0 (the script
//! never meets one; every SQuAD question has an answer).

use std::collections::HashMap;

/// Whitespace as Python's `str.split()` sees it: Unicode `White_Space` plus the ASCII
/// information separators U+001C..U+001F, which Python counts and Rust does not.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A word character for the script's `\b(a|an|the)\b`. Python's `re` takes `str.isalnum()` and
/// `_`; `char::is_alphanumeric` agrees except on a few marks Unicode counts as alphabetic
/// (Indic vowel signs and the like), which never sit next to an English article in practice.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replace every maximal run of word characters that is exactly an article by one space, as
/// the script's regex does (its `\b`s make a match a whole run).
fn remove_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let word = is_word(first);
        let end = rest
            .find(|c: char| is_word(c) != word)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        if word && matches!(run, "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
        rest = tail;
    }
    out
}

fn tokens(normalized: &str) -> Vec<&str> {
    normalized
        .split(is_py_space)
        .filter(|t| !t.is_empty())
        .collect()
}

/// SQuAD v1.1's answer normalization: lowercase, remove ASCII punctuation, remove articles,
/// collapse whitespace to single spaces (none at either end).
pub fn normalize_answer(s: &str) -> String {
    // `is_ascii_punctuation` is exactly Python's `string.punctuation`.
    let unpunct: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    tokens(&remove_articles(&unpunct)).join(" ")
}

/// 1.0 when the normalized prediction equals some normalized reference, else 0.0.
pub fn exact_match<S: AsRef<str>>(pred: &str, refs: &[S]) -> f64 {
    let pred = normalize_answer(pred);
    let hit = refs.iter().any(|r| normalize_answer(r.as_ref()) == pred);
    if hit {
        1.0
    } else {
        0.0
    }
}

/// The best token F1 of the prediction against any reference.
pub fn token_f1<S: AsRef<str>>(pred: &str, refs: &[S]) -> f64 {
    let pred = normalize_answer(pred);
    let pred_tokens = tokens(&pred);
    refs.iter()
        .map(|r| f1_against(&pred_tokens, &tokens(&normalize_answer(r.as_ref()))))
        .fold(0.0, f64::max)
}

fn f1_against(pred: &[&str], reference: &[&str]) -> f64 {
    let mut left: HashMap<&str, usize> = HashMap::new();
    for t in reference {
        *left.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in pred {
        if let Some(n) = left.get_mut(t) {
            if *n > 0 {
                *n -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    // The script's order of operations (its `1.0 *` is exact and left out), so that scores
    // match it to the last bit.
    let precision = same as f64 / pred.len() as f64;
    let recall = same as f64 / reference.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values were computed once by the official SQuAD v1.1 evaluation script's
    // functions (normalize_answer, exact_match_score, f1_score and
    // metric_max_over_ground_truths, run unchanged under Python 3.11).
    const NORMALIZE: &[(&str, &str)] = &[
        ("The Denver Broncos!", "denver broncos"),
        ("  an  Apple\ta day\n", "apple day"),
        ("theater and anthem", "theater and anthem"),
        ("the_a", "thea"),
        ("a-n the.", ""),
        ("Saint-Bernadette (Soubirous)", "saintbernadette soubirous"),
        ("$1,000.50", "100050"),
        (
            "\u{201c}Denver\u{201d} \u{2014} Broncos",
            "\u{201c}denver\u{201d} \u{2014} broncos",
        ),
        ("Beyonc\u{e9} GISELLE", "beyonc\u{e9} giselle"),
        // A decomposed "á": the combining accent is no word character, so "a" is an article.
        ("a\u{301}rbol", "\u{301}rbol"),
        ("\u{c1}rbol", "\u{e1}rbol"),
        (
            "\u{39f}\u{394}\u{39f}\u{3a3}",
            "\u{3bf}\u{3b4}\u{3bf}\u{3c2}",
        ),
        ("\u{130}stanbul", "i\u{307}stanbul"),
        ("Stra\u{df}e", "stra\u{df}e"),
        ("Denver\u{1c}Broncos\u{3000}\u{a0}x", "denver broncos x"),
        ("the", ""),
        ("", ""),
    ];

    // (prediction, references, exact match, F1), from the same script.
    const SCORES: &[(&str, &[&str], f64, f64)] = &[
        (
            "Saint Bernadette Soubirous",
            &["Saint Bernadette Soubirous"],
            1.0,
            1.0,
        ),
        ("Denver Broncos!", &["denver broncos"], 1.0, 1.0),
        ("the Denver Broncos", &["Denver Broncos"], 1.0, 1.0),
        ("DENVER", &["denver"], 1.0, 1.0),
        ("  Denver\t\nBroncos  ", &["Denver Broncos"], 1.0, 1.0),
        ("Denver\u{1c}Broncos", &["Denver Broncos"], 1.0, 1.0),
        ("theater", &["the ater"], 0.0, 0.0),
        ("23", &["23 years", "23", "23"], 1.0, 1.0),
        ("23 years old", &["twenty-three", "23 years"], 0.0, 0.8),
        ("in the late 1990s", &["late 1990s", "the 1990s"], 0.0, 0.8),
        (
            "the cat sat on the mat",
            &["a cat on a mat"],
            0.0,
            0.8571428571428571,
        ),
        ("cat cat cat", &["cat dog"], 0.0, 0.4),
        ("Carolina Panthers", &["Denver Broncos"], 0.0, 0.0),
        ("twenty-three", &["twentythree"], 1.0, 1.0),
        ("", &[""], 1.0, 0.0),
        ("", &["Denver"], 0.0, 0.0),
        ("Denver", &[""], 0.0, 0.0),
        ("the", &["a"], 1.0, 0.0),
        ("!!!", &[""], 1.0, 0.0),
        ("Beyonc\u{e9}", &["beyonc\u{e9}"], 1.0, 1.0),
        ("BEYONC\u{c9}", &["beyonc\u{e9}"], 1.0, 1.0),
        ("Stra\u{df}e", &["STRASSE"], 0.0, 0.0),
        ("\u{201c}Denver\u{201d}", &["Denver"], 0.0, 0.0),
        ("1990\u{2014}2000", &["1990 2000"], 0.0, 0.0),
        (
            "\u{39f}\u{394}\u{39f}\u{3a3} \u{3b1}",
            &["\u{3bf}\u{3b4}\u{3bf}\u{3c2}"],
            0.0,
            0.6666666666666666,
        ),
    ];

    #[test]
    fn normalization_matches_the_official_script() {
        for &(input, want) in NORMALIZE {
            assert_eq!(normalize_answer(input), want, "input {input:?}");
        }
    }

    #[test]
    fn scores_match_the_official_script_bit_for_bit() {
        for &(pred, refs, em, f1) in SCORES {
            assert_eq!(exact_match(pred, refs), em, "EM of {pred:?} vs {refs:?}");
            assert_eq!(
                token_f1(pred, refs).to_bits(),
                f1.to_bits(),
                "F1 of {pred:?} vs {refs:?}: {}",
                token_f1(pred, refs)
            );
        }
    }

    #[test]
    fn best_reference_wins_whatever_its_position() {
        let refs = ["Carolina Panthers", "the Broncos", "Denver Broncos"];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let r: Vec<&str> = order.iter().map(|&i| refs[i]).collect();
            assert_eq!(exact_match("Denver Broncos.", &r), 1.0);
            assert_eq!(token_f1("Denver Broncos.", &r), 1.0);
            // "the Broncos" normalizes to "broncos", a perfect match; "Denver Broncos" gives 2/3.
            assert_eq!(token_f1("Broncos", &r), 1.0);
        }
    }

    #[test]
    fn no_references_score_zero() {
        let none: [&str; 0] = [];
        assert_eq!(exact_match("Denver", &none), 0.0);
        assert_eq!(token_f1("Denver", &none), 0.0);
        assert_eq!(exact_match("", &none), 0.0);
    }

    #[test]
    fn owned_references_are_accepted() {
        let refs = vec![String::from("1990s"), String::from("late 1990s")];
        assert_eq!(exact_match("the late 1990s", &refs), 1.0);
        assert_eq!(token_f1("1990s", &refs), 1.0);
    }
}
