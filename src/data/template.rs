//! Prompt templates: literal text with `{field}` slots filled from an example's fields.
//! `{{` and `}}` write literal braces.

use super::example::Example;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Field(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template> {
        let bad = |msg: String| Error::Data(format!("template {source:?}: {msg}"));
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, c)) if c.is_alphanumeric() || c == '_' || c == '-' => {
                                name.push(c)
                            }
                            Some((_, c)) => {
                                return Err(bad(format!(
                                    "character {c:?} in the field name opened at byte {at} \
                                     (names are letters, digits, '_' and '-'; write {{{{ for a \
                                     literal brace)"
                                )))
                            }
                            None => return Err(bad(format!("'{{' at byte {at} is never closed"))),
                        }
                    }
                    if name.is_empty() {
                        return Err(bad(format!("empty field name at byte {at}")));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field(name));
                }
                '}' => {
                    return Err(bad(format!(
                        "unmatched '}}' at byte {at} (write }}}} for a literal brace)"
                    )))
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Field names in order of first use.
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let Part::Field(f) = p {
                if !out.contains(&f.as_str()) {
                    out.push(f);
                }
            }
        }
        out
    }

    pub fn render(&self, ex: &Example) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Field(f) => match ex.field(f) {
                    Some(v) => out.push_str(v),
                    None => {
                        let have: Vec<&str> = ex.fields.keys().map(String::as_str).collect();
                        return Err(Error::Data(format!(
                            "{}: missing field `{f}` used by template {:?} (the example has: {})",
                            ex.location(),
                            self.source,
                            if have.is_empty() {
                                "no fields".to_string()
                            } else {
                                have.join(", ")
                            }
                        )));
                    }
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_fields_and_unescapes_braces() {
        let t = Template::parse("{{q}} {premise} / {hypothesis}? {premise}").unwrap();
        assert_eq!(t.fields(), vec!["premise", "hypothesis"]);
        let ex = Example::new("0")
            .with_field("premise", "A")
            .with_field("hypothesis", "B");
        assert_eq!(t.render(&ex).unwrap(), "{q} A / B? A");
    }

    #[test]
    fn malformed_templates_are_rejected() {
        for (src, want) in [
            ("{text", "never closed"),
            ("{} It was", "empty field name"),
            ("{te xt}", "character ' '"),
            ("a } b", "unmatched '}'"),
        ] {
            let e = Template::parse(src).unwrap_err().to_string();
            assert!(e.contains(want), "{src}: {e}");
        }
    }
}
