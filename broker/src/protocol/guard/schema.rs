//! The parsed form of [`super::table::SCHEMA`]: APIs, their structs and fields, with the
//! versions each field exists in. Parsed once, on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::table::SCHEMA;

/// A wire type of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ty {
    /// Fixed size in bytes.
    Fixed(usize),
    Str,
    Bytes,
    Array(Box<Ty>),
    /// Index into [`Schema::structs`].
    Struct(usize),
    /// An i8 presence marker (1 = present), then the struct.
    OptStruct(usize),
}

#[derive(Debug)]
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) ty: Ty,
    pub(super) min: i16,
    pub(super) max: i16,
    pub(super) tag: Option<u32>,
}

impl Field {
    pub(super) fn present(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

#[derive(Debug)]
pub(super) struct StructDef {
    pub(super) fields: Vec<Field>,
}

#[derive(Debug)]
pub(super) struct Api {
    pub(super) name: &'static str,
    pub(super) min: i16,
    pub(super) max: i16,
    pub(super) flex: Option<i16>,
    pub(super) root: usize,
}

#[derive(Debug)]
pub(super) struct Schema {
    pub(super) apis: HashMap<i16, Api>,
    pub(super) structs: Vec<StructDef>,
}

impl Schema {
    pub(super) fn api(&self, key: i16, version: i16) -> Option<&Api> {
        self.apis
            .get(&key)
            .filter(|a| a.min <= version && version <= a.max)
    }
}

pub(super) fn schema() -> &'static Schema {
    static PARSED: OnceLock<Schema> = OnceLock::new();
    // SCHEMA is a constant; `schema_table_parses` checks that it parses.
    PARSED.get_or_init(|| parse(SCHEMA).unwrap_or_else(|e| panic!("guard schema table: {e}")))
}

/// Parses `versions` of the table (`N`, `N+`, `N-M`) within the API's `min..=max`.
fn parse_versions(s: &str, max: i16) -> Option<(i16, i16)> {
    if let Some(lo) = s.strip_suffix('+') {
        return Some((lo.parse().ok()?, max));
    }
    if let Some((lo, hi)) = s.split_once('-') {
        return Some((lo.parse().ok()?, hi.parse().ok()?));
    }
    let v = s.parse().ok()?;
    Some((v, v))
}

pub(super) fn parse(text: &'static str) -> Result<Schema, String> {
    struct PendingField {
        line: usize,
        key: i16,
        owner: usize,
        name: &'static str,
        ty: &'static str,
        min: i16,
        max: i16,
        tag: Option<u32>,
    }
    let mut apis = HashMap::new();
    let mut structs: Vec<StructDef> = Vec::new();
    let mut pending: Vec<PendingField> = Vec::new();
    // Struct names are local to their API block.
    let mut names: HashMap<(i16, &'static str), usize> = HashMap::new();
    let mut current: Option<(i16, i16, usize)> = None; // key, max version, current struct
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let err = |what: &str| format!("line {line_no} {line:?}: {what}");
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let words: Vec<&'static str> = trimmed.split_whitespace().collect();
        if indent == 0 {
            let (key, name, versions) = match words.as_slice() {
                [k, n, v, ..] => (*k, *n, *v),
                _ => return Err(err("API line needs `key Name versions`")),
            };
            let key: i16 = key.parse().map_err(|_| err("bad API key"))?;
            let (min, max) = parse_versions(versions, i16::MAX)
                .filter(|(a, b)| a <= b)
                .ok_or_else(|| err("bad versions"))?;
            let flex = match words.get(3) {
                Some(f) => Some(
                    f.strip_prefix("flex")
                        .and_then(|v| v.parse::<i16>().ok())
                        .ok_or_else(|| err("expected flexN"))?,
                ),
                None => None,
            };
            let root = structs.len();
            structs.push(StructDef { fields: Vec::new() });
            names.insert((key, name), root);
            let api = Api {
                name,
                min,
                max,
                flex,
                root,
            };
            if apis.insert(key, api).is_some() {
                return Err(err("API listed twice"));
            }
            current = Some((key, max, root));
            continue;
        }
        let Some((key, max, owner)) = current.as_mut() else {
            return Err(err("field before any API"));
        };
        if let Some(name) = trimmed.strip_prefix('.') {
            *owner = structs.len();
            structs.push(StructDef { fields: Vec::new() });
            if names.insert((*key, name), *owner).is_some() {
                return Err(err("struct listed twice"));
            }
            continue;
        }
        let (name, ty) = match words.as_slice() {
            [n, t, ..] => (*n, *t),
            _ => return Err(err("field needs `name type`")),
        };
        let (mut fmin, mut fmax, mut tag) = (apis.get(key).map_or(0, |a: &Api| a.min), *max, None);
        for w in &words[2..] {
            if let Some(t) = w.strip_prefix("tag") {
                tag = Some(t.parse().map_err(|_| err("bad tag"))?);
            } else {
                (fmin, fmax) = parse_versions(w, *max).ok_or_else(|| err("bad versions"))?;
            }
        }
        pending.push(PendingField {
            line: line_no,
            key: *key,
            owner: *owner,
            name,
            ty,
            min: fmin,
            max: fmax,
            tag,
        });
    }
    // Resolve types once every struct of every block is known.
    for f in pending {
        let ty = parse_ty(f.ty, f.key, &names)
            .ok_or_else(|| format!("line {}: unknown type {:?}", f.line, f.ty))?;
        structs[f.owner].fields.push(Field {
            name: f.name,
            ty,
            min: f.min,
            max: f.max,
            tag: f.tag,
        });
    }
    Ok(Schema { apis, structs })
}

fn parse_ty(s: &str, key: i16, names: &HashMap<(i16, &'static str), usize>) -> Option<Ty> {
    Some(match s {
        "i8" | "bool" => Ty::Fixed(1),
        "i16" | "u16" => Ty::Fixed(2),
        "i32" | "u32" => Ty::Fixed(4),
        "i64" | "f64" => Ty::Fixed(8),
        "uuid" => Ty::Fixed(16),
        "str" => Ty::Str,
        "bytes" => Ty::Bytes,
        _ => {
            if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                Ty::Array(Box::new(parse_ty(inner, key, names)?))
            } else if let Some(name) = s.strip_prefix('?') {
                Ty::OptStruct(*names.get(&(key, name))?)
            } else {
                Ty::Struct(*names.get(&(key, s))?)
            }
        }
    })
}
