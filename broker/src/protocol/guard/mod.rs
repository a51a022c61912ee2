//! Pre-decode guard: walks a request body's wire structure and refuses it when a length
//! prefix claims more than the bytes that are left, before `kafka-protocol` decodes it.
//!
//! Why: `kafka-protocol` 0.18 decodes an array with `Vec::with_capacity(count)` where `count`
//! is whatever the peer wrote, so a 13-byte Metadata request claiming 2^31-1 topics makes the
//! allocation fail and aborts the whole process. We use the crate unmodified; instead every
//! body is walked here first, element by element, so by the time the crate decodes it, every
//! array count is backed by that many encoded elements (each at least one byte), and the
//! crate's allocations are bounded by the frame size, as for an honest request.
//!
//! The walk reads only lengths and skips values; it allocates nothing on success, so it is
//! cheap enough for the produce path (record batches are one `bytes` field, skipped whole).
//!
//! The structure of each request is the [`table::SCHEMA`] table: the field order, wire types,
//! versions, flexible versions and tagged fields of Kafka's public message definitions, for
//! every request version `kafka-protocol` 0.18 decodes of every API the broker decodes
//! (served, and answered with an error). Its unit tests check it against the crate at every
//! version: the crate's encoding of a default and of a populated request is walked exactly to
//! its end, and a too-large length in each array, string and bytes field is refused.
//!
//! Files: [`table`] is the table itself (data only), `schema` parses it into structs and
//! fields, `walk` walks a body along them. May import nothing of the broker.

mod schema;
pub mod table;
mod walk;

#[cfg(test)]
mod tests;

use schema::schema;
use walk::{Cursor, Walker};

/// Why a request body was refused. `api`, `version` and `field` (a path such as
/// `topics[1].partitions`) name where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// A length prefix claims more than is left in the frame.
    #[error("{api} v{version}: {field} claims {claimed} {unit} but only {remaining} bytes remain")]
    TooLong {
        api: &'static str,
        version: i16,
        field: String,
        claimed: u64,
        unit: &'static str,
        remaining: usize,
    },
    /// The body ends in the middle of a field.
    #[error("{api} v{version}: body ends inside {field}")]
    Truncated {
        api: &'static str,
        version: i16,
        field: String,
    },
    /// A varint is longer than five bytes.
    #[error("{api} v{version}: {field} has an unterminated varint")]
    BadVarint {
        api: &'static str,
        version: i16,
        field: String,
    },
    /// A known tagged field's declared size does not match its value.
    #[error("{api} v{version}: {field} declares {declared} bytes but its value takes {used}")]
    TagSize {
        api: &'static str,
        version: i16,
        field: String,
        declared: usize,
        used: usize,
    },
    /// The guard has no table for this API version, so it cannot vouch for the body.
    #[error("API key {api_key} v{version}: no request structure known")]
    NoSchema { api_key: i16, version: i16 },
}

/// Walks `body` (the request after its header) of `api_key` at `version`.
///
/// Returns the number of bytes the structure takes (trailing bytes are left to the decoder,
/// which ignores them as Kafka does).
pub fn check(api_key: i16, version: i16, body: &[u8]) -> Result<usize, GuardError> {
    let schema = schema();
    let Some(api) = schema.api(api_key, version) else {
        return Err(GuardError::NoSchema { api_key, version });
    };
    let flexible = api.flex.is_some_and(|f| version >= f);
    let mut cur = Cursor { buf: body, pos: 0 };
    let walker = Walker {
        schema,
        version,
        flexible,
    };
    walker
        .walk_struct(api.root, &mut cur)
        .map_err(|f| f.into_error(api.name, version))?;
    Ok(cur.pos)
}
