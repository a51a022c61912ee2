//! The Kafka wire format, with no broker state: framing and header handling ([`codec`]), the
//! pre-decode walk that keeps peer-supplied lengths from reaching the decoder ([`guard`]),
//! response frames whose large record sets are kept by reference ([`frame`]) and the table of
//! API versions this broker advertises ([`versions`]). Everything here is pure
//! and unit-tested.
//!
//! May import: [`crate::error`] and the `kafka-protocol` crate, nothing else of the broker, so
//! both the connection tasks (`server`) and the API handlers (`handlers`) can use it.

pub mod codec;
pub mod frame;
pub mod guard;
pub mod versions;
