//! GGUF tokenizer metadata → HF `tokenizer.json` (+ `tokenizer_config.json`).
//!
//! Only byte-level BPE (`tokenizer.ggml.model == "gpt2"`) is rebuilt. The pre-tokenizer is not
//! stored in GGUF, only its llama.cpp name (`tokenizer.ggml.pre`), so each supported name maps to
//! the HF pre-tokenizer that splits text the same way; unknown names are refused rather than
//! guessed, because a wrong split silently changes token ids.

use std::collections::HashSet;

use serde_json::{json, Map, Value as Json};

use super::reader::GgufFile;
use crate::{Error, Result};

/// llama.cpp token types (llama_token_type).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// The GPT-2 byte-level pre-split regex of Llama 3 style vocabularies (digits in runs of 3).
const SPLIT_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's pre-split: as Llama 3 but every digit alone.
const SPLIT_QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What the tokenizer files say about special tokens, for config.json.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerSummary {
    pub vocab_size: usize,
    pub n_merges: usize,
    pub n_added: usize,
    pub pre: String,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
    pub add_bos_token: bool,
}

/// The built files, as JSON values, and a summary.
pub struct BuiltTokenizer {
    pub tokenizer_json: Json,
    pub tokenizer_config: Json,
    pub summary: TokenizerSummary,
}

/// GPT-2's reversible byte → printable-char table: printable Latin-1 bytes stand for
/// themselves, the rest are shifted into U+0100.. in byte order.
pub fn byte_to_char() -> [char; 256] {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).unwrap()
        } else {
            let c = char::from_u32(next).unwrap();
            next += 1;
            c
        };
    }
    table
}

fn pre_tokenizer(pre: &str, path: &std::path::Path) -> Result<Json> {
    let byte_level = |use_regex: bool| {
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
               "use_regex": use_regex})
    };
    let split = |re: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    };
    Ok(match pre {
        "default" | "gpt2" => byte_level(true),
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(true),
        ]}),
        "llama3" | "llama-v3" | "llama-bpe" => split(SPLIT_LLAMA3),
        "qwen2" | "deepseek-r1-qwen" => split(SPLIT_QWEN2),
        other => {
            return Err(Error::Unsupported(format!(
                "{}: tokenizer.ggml.pre = {other:?} is not a known pre-tokenizer (supported: \
                 default, gpt2, smollm, llama3, llama-bpe, qwen2)",
                path.display()
            )))
        }
    })
}

/// Builds tokenizer.json for the file's tokenizer, or None when the file has none.
pub fn build(g: &GgufFile) -> Result<Option<BuiltTokenizer>> {
    let path = g.path();
    let Some(model) = g.get_str("tokenizer.ggml.model")? else {
        return Ok(None);
    };
    if model != "gpt2" {
        return Err(Error::Unsupported(format!(
            "{}: tokenizer.ggml.model = {model:?}; only byte-level BPE (\"gpt2\") can be converted \
             to tokenizer.json",
            path.display()
        )));
    }
    let pre_name = g.get_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let pre = pre_tokenizer(pre_name, path)?;
    let tokens = g
        .get_str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| Error::format(path, "missing metadata key tokenizer.ggml.tokens"))?;
    let merges = g
        .get_str_array("tokenizer.ggml.merges")?
        .ok_or_else(|| Error::format(path, "missing metadata key tokenizer.ggml.merges"))?;
    let types = g.get_int_array("tokenizer.ggml.token_type")?;
    if let Some(t) = &types {
        if t.len() != tokens.len() {
            return Err(Error::format(
                path,
                format!(
                    "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
                    t.len(),
                    tokens.len()
                ),
            ));
        }
    }

    let table = byte_to_char();
    let alphabet: HashSet<char> = table.iter().copied().collect();
    // A byte-level vocabulary spells every token in the byte alphabet; a token that is not
    // (some converters store raw text) is respelled from its UTF-8 bytes so merges can reach it.
    let spell = |t: &str| -> String {
        if t.chars().all(|c| alphabet.contains(&c)) {
            t.to_string()
        } else {
            t.bytes().map(|b| table[b as usize]).collect()
        }
    };
    let mut vocab = Map::new();
    let mut keys = Vec::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        let key = spell(t);
        // Keep the first id of a duplicated spelling, as a lookup by text would.
        if !vocab.contains_key(&key) {
            vocab.insert(key.clone(), json!(id));
        }
        keys.push(key);
    }
    let merges_json: Vec<Json> = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut parts = m.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => Ok(json!([a, b])),
                _ => Err(Error::format(
                    path,
                    format!("tokenizer.ggml.merges[{i}] = {m:?} is not two tokens separated by one space"),
                )),
            }
        })
        .collect::<Result<_>>()?;

    // Control and user-defined tokens are matched whole in raw text, as llama.cpp does.
    let mut added = Vec::new();
    for (id, t) in tokens.iter().enumerate() {
        let ty = types.as_ref().map_or(1, |v| v[id]);
        if (ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED) && keys[id] == *t {
            added.push(
                json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == TOKEN_CONTROL}),
            );
        }
    }

    let token_id = |key: &str| -> Result<Option<u32>> {
        match g.get_u64(key)? {
            None => Ok(None),
            Some(id) if (id as usize) < tokens.len() => Ok(Some(id as u32)),
            Some(id) => Err(Error::format(
                path,
                format!(
                    "{key} = {id} is outside the {}-token vocabulary",
                    tokens.len()
                ),
            )),
        }
    };
    let bos = token_id("tokenizer.ggml.bos_token_id")?;
    let eos = token_id("tokenizer.ggml.eos_token_id")?;
    let unk = token_id("tokenizer.ggml.unknown_token_id")?;
    let pad = token_id("tokenizer.ggml.padding_token_id")?;
    let add_bos = g.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false);
    let add_eos = g.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let need = |flag: bool, id: Option<u32>, what: &str| -> Result<Option<u32>> {
        match (flag, id) {
            (true, None) => Err(Error::format(
                path,
                format!("tokenizer.ggml.add_{what}_token is true but no {what} token id is given"),
            )),
            (true, id) => Ok(id),
            (false, _) => Ok(None),
        }
    };
    let pre_bos = need(add_bos, bos, "bos")?;
    let post_eos = need(add_eos, eos, "eos")?;

    let special =
        |id: u32| -> Json { json!({"SpecialToken": {"id": keys[id as usize], "type_id": 0}}) };
    let seq = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut special_tokens = Map::new();
    for id in pre_bos.iter().chain(post_eos.iter()) {
        let k = &keys[*id as usize];
        special_tokens.insert(k.clone(), json!({"id": k, "ids": [id], "tokens": [k]}));
    }
    single.extend(pre_bos.map(special));
    single.push(seq("A", 0));
    single.extend(post_eos.map(special));
    pair.extend(pre_bos.map(special));
    pair.push(seq("A", 0));
    pair.extend(post_eos.map(special));
    pair.extend(pre_bos.map(special));
    pair.push(seq("B", 1));
    pair.extend(post_eos.map(special));

    let n_added = added.len();
    let tokenizer_json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": {"type": "TemplateProcessing", "single": single, "pair": pair,
                           "special_tokens": special_tokens},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges_json},
    });

    let name = |id: Option<u32>| id.map(|i| keys[i as usize].clone());
    let mut tokenizer_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "bos_token": name(bos),
        "eos_token": name(eos),
        "unk_token": name(unk),
        "pad_token": name(pad),
        "clean_up_tokenization_spaces": false,
    });
    if let Some(ctx) = g
        .get_str("general.architecture")?
        .and_then(|a| g.get(&format!("{a}.context_length")))
        .and_then(|v| v.as_i128())
    {
        tokenizer_config["model_max_length"] = json!(ctx);
    }
    if let Some(t) = g.get_str("tokenizer.chat_template")? {
        tokenizer_config["chat_template"] = json!(t);
    }

    Ok(Some(BuiltTokenizer {
        tokenizer_json,
        tokenizer_config,
        summary: TokenizerSummary {
            vocab_size: tokens.len(),
            n_merges: merges.len(),
            n_added,
            pre: pre_name.to_string(),
            bos_token_id: bos,
            eos_token_id: eos,
            pad_token_id: pad,
            add_bos_token: add_bos,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_onto_printable_chars() {
        let t = byte_to_char();
        let set: HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b' ' as usize], '\u{120}'); // the familiar 'Ġ'
        assert_eq!(t[b'\n' as usize], '\u{10a}'); // 'Ċ'
        assert_eq!(t[b'A' as usize], 'A');
        assert!(t.iter().all(|c| !c.is_whitespace() && !c.is_control()));
    }
}
