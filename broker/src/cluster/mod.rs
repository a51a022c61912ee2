//! Several brokers forming one Kafka cluster: the replicated metadata ([`state`]) that every
//! broker agrees on through a Raft quorum.

pub mod state;
