//! The walk itself: a cursor over the body's bytes and a walker that follows the parsed
//! schema, checking every length prefix against the bytes that are left. Failures carry the
//! field path, built on the way out so the success path allocates nothing.

use super::schema::{Schema, Ty};
use super::GuardError;

/// A failed walk, with the path built on the way out (only on the error path).
#[derive(Debug)]
pub(super) struct Fail {
    kind: FailKind,
    path: Vec<String>,
}

#[derive(Debug)]
enum FailKind {
    TooLong {
        claimed: u64,
        unit: &'static str,
        remaining: usize,
    },
    Truncated,
    BadVarint,
    TagSize {
        declared: usize,
        used: usize,
    },
}

impl Fail {
    fn new(kind: FailKind) -> Fail {
        Fail {
            kind,
            path: Vec::new(),
        }
    }

    fn under(mut self, segment: impl Into<String>) -> Fail {
        self.path.push(segment.into());
        self
    }

    pub(super) fn into_error(self, api: &'static str, version: i16) -> GuardError {
        let field = join_path(self.path.iter().rev().map(String::as_str));
        match self.kind {
            FailKind::TooLong {
                claimed,
                unit,
                remaining,
            } => GuardError::TooLong {
                api,
                version,
                field,
                claimed,
                unit,
                remaining,
            },
            FailKind::Truncated => GuardError::Truncated {
                api,
                version,
                field,
            },
            FailKind::BadVarint => GuardError::BadVarint {
                api,
                version,
                field,
            },
            FailKind::TagSize { declared, used } => GuardError::TagSize {
                api,
                version,
                field,
                declared,
                used,
            },
        }
    }
}

pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn skip(&mut self, n: usize) -> Result<(), Fail> {
        if n > self.remaining() {
            return Err(Fail::new(FailKind::Truncated));
        }
        self.pos += n;
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Fail> {
        let mut out = [0u8; N];
        let src = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or_else(|| Fail::new(FailKind::Truncated))?;
        out.copy_from_slice(src);
        self.pos += N;
        Ok(out)
    }

    fn uvarint(&mut self) -> Result<u32, Fail> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.take::<1>()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Fail::new(FailKind::BadVarint))
    }

    /// A length or count: classic `i16`/`i32`, or compact (varint + 1). `None` is null.
    fn length(&mut self, flexible: bool, wide: bool) -> Result<Option<u64>, Fail> {
        if flexible {
            return Ok(self.uvarint()?.checked_sub(1).map(u64::from));
        }
        let n = if wide {
            i64::from(i32::from_be_bytes(self.take::<4>()?))
        } else {
            i64::from(i16::from_be_bytes(self.take::<2>()?))
        };
        // Negative (-1 is null; others are refused by the decoder, and allocate nothing).
        Ok(u64::try_from(n).ok())
    }
}

pub(super) struct Walker<'s> {
    pub(super) schema: &'s Schema,
    pub(super) version: i16,
    pub(super) flexible: bool,
}

impl Walker<'_> {
    pub(super) fn walk_struct(&self, idx: usize, cur: &mut Cursor<'_>) -> Result<(), Fail> {
        let def = &self.schema.structs[idx];
        for f in def
            .fields
            .iter()
            .filter(|f| f.tag.is_none() && f.present(self.version))
        {
            self.walk_ty(&f.ty, cur).map_err(|e| e.under(f.name))?;
        }
        if !self.flexible {
            return Ok(());
        }
        let count = cur.uvarint().map_err(|e| e.under("tagged fields"))?;
        for _ in 0..count {
            let tag = cur.uvarint().map_err(|e| e.under("tagged fields"))?;
            let size = cur.uvarint().map_err(|e| e.under(format!("tag {tag}")))? as usize;
            if size > cur.remaining() {
                return Err(Fail::new(FailKind::TooLong {
                    claimed: size as u64,
                    unit: "bytes",
                    remaining: cur.remaining(),
                })
                .under(format!("tag {tag}")));
            }
            let known = def
                .fields
                .iter()
                .find(|f| f.tag == Some(tag) && f.present(self.version));
            match known {
                Some(f) => {
                    // The crate decodes a known tagged field from the stream without bounding
                    // it by `size`: walk it within exactly `size` bytes.
                    let mut sub = Cursor {
                        buf: &cur.buf[cur.pos..cur.pos + size],
                        pos: 0,
                    };
                    self.walk_ty(&f.ty, &mut sub).map_err(|e| e.under(f.name))?;
                    if sub.pos != size {
                        return Err(Fail::new(FailKind::TagSize {
                            declared: size,
                            used: sub.pos,
                        })
                        .under(f.name));
                    }
                    cur.pos += size;
                }
                None => cur.skip(size)?,
            }
        }
        Ok(())
    }

    fn walk_ty(&self, ty: &Ty, cur: &mut Cursor<'_>) -> Result<(), Fail> {
        match ty {
            Ty::Fixed(n) => cur.skip(*n),
            Ty::Str | Ty::Bytes => {
                let Some(len) = cur.length(self.flexible, *ty == Ty::Bytes)? else {
                    return Ok(());
                };
                self.claim(cur, len, "bytes")?;
                cur.skip(len as usize)
            }
            Ty::Array(elem) => {
                let Some(count) = cur.length(self.flexible, true)? else {
                    return Ok(());
                };
                // Every element takes at least one byte: a larger count cannot be honest.
                self.claim(cur, count, "elements")?;
                for i in 0..count {
                    self.walk_ty(elem, cur)
                        .map_err(|e| e.under(format!("[{i}]")))?;
                }
                Ok(())
            }
            Ty::Struct(idx) => self.walk_struct(*idx, cur),
            Ty::OptStruct(idx) => {
                let [present] = cur.take::<1>()?;
                if present == 1 {
                    self.walk_struct(*idx, cur)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn claim(&self, cur: &Cursor<'_>, claimed: u64, unit: &'static str) -> Result<(), Fail> {
        if claimed > cur.remaining() as u64 {
            return Err(Fail::new(FailKind::TooLong {
                claimed,
                unit,
                remaining: cur.remaining(),
            }));
        }
        Ok(())
    }
}

/// Joins path segments outermost first: `topics`, `[1]`, `name` → `topics[1].name`.
pub(super) fn join_path<'a>(segments: impl Iterator<Item = &'a str>) -> String {
    let mut field = String::new();
    for seg in segments {
        if !field.is_empty() && !seg.starts_with('[') {
            field.push('.');
        }
        field.push_str(seg);
    }
    if field.is_empty() {
        field.push_str("the body");
    }
    field
}
