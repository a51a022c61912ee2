//! The state machine's transaction coordinator state (KIP-98): one [`TxnRecord`] per
//! transactional id, changed only by commands checked here against the current state, so two
//! brokers acting on the same id (a coordinator move) cannot both win a transition. Every
//! transition is durable in the quorum before a client hears of it.
//!
//! ```text
//!  Empty ──AddPartitions──▶ Ongoing ──EndTxn──▶ PrepareCommit ──markers written──▶ CompleteCommit
//!    ▲                        │  └──EndTxn(abort), InitProducerId, timeout──▶ PrepareAbort ──▶ CompleteAbort
//!    └────InitProducerId (epoch + 1) from Empty / Complete*──────────────────────────────────┘
//! ```
//!
//! An abort that the producer did not ask for (a new InitProducerId for the id, or the
//! transaction timeout) bumps the epoch, so the markers fence the old producer on every
//! partition it wrote to.

use super::*;

pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const INVALID_TXN_STATE: i16 = 48;
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
pub const PRODUCER_FENCED: i16 = 90;

/// Where a transactional id's current transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Markers are being written: the next transaction waits (CONCURRENT_TRANSACTIONS).
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// One transactional id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub producer_id: i64,
    pub epoch: i16,
    pub state: TxnState,
    /// The partitions the current (or last) transaction wrote to: where the markers go.
    pub partitions: BTreeSet<(String, i32)>,
    pub timeout_ms: i32,
    /// When the current transaction began (its first AddPartitionsToTxn).
    pub started_ms: i64,
    /// When the record last changed.
    pub updated_ms: i64,
}

/// The commands of this module (variants of [`Command`]'s `Txn`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnCommand {
    /// InitProducerId for `id`: a new producer id (`new_producer_id`, reserved by the
    /// proposer) the first time, the next epoch later. An ongoing transaction is aborted
    /// first (with the next epoch) and the caller told to retry.
    Init {
        id: String,
        timeout_ms: i32,
        new_producer_id: i64,
        /// KIP-360: the producer id and epoch the client had, when it sent them.
        expected: Option<(i64, i16)>,
        now_ms: i64,
    },
    /// AddPartitionsToTxn / AddOffsetsToTxn.
    AddPartitions {
        id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
        now_ms: i64,
    },
    /// EndTxn: the transaction enters PrepareCommit or PrepareAbort.
    End {
        id: String,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    },
    /// Every marker of the prepared transaction is written.
    Complete {
        id: String,
        producer_id: i64,
        epoch: i16,
        now_ms: i64,
    },
    /// The coordinator forgets a transactional id unused for
    /// [`crate::txn::ID_EXPIRATION_MS`] (no transaction open), as long as it did not change
    /// since `updated_ms`.
    Forget { id: String, updated_ms: i64 },
    /// The coordinator aborts a transaction open longer than its timeout.
    Expire {
        id: String,
        producer_id: i64,
        epoch: i16,
        now_ms: i64,
    },
}

impl TxnCommand {
    pub fn id(&self) -> &str {
        match self {
            TxnCommand::Init { id, .. }
            | TxnCommand::AddPartitions { id, .. }
            | TxnCommand::End { id, .. }
            | TxnCommand::Complete { id, .. }
            | TxnCommand::Forget { id, .. }
            | TxnCommand::Expire { id, .. } => id,
        }
    }
}

/// The next epoch of a producer, or `None` when it would overflow (a new producer id then).
fn next_epoch(epoch: i16) -> Option<i16> {
    (epoch < i16::MAX - 1).then_some(epoch + 1)
}

/// Refuses a request whose producer id or epoch is not the transaction's.
fn check_producer(r: &TxnRecord, producer_id: i64, epoch: i16) -> Result<(), Outcome> {
    if r.producer_id != producer_id {
        return Err(refused(
            INVALID_PRODUCER_ID_MAPPING,
            format!(
                "producer id {producer_id} is not the transactional id's current producer ({})",
                r.producer_id
            ),
        ));
    }
    if epoch != r.epoch {
        return Err(refused(
            PRODUCER_FENCED,
            format!(
                "producer epoch {epoch} is not the current epoch {} (another producer with the same transactional id took over, or the transaction timed out)",
                r.epoch
            ),
        ));
    }
    Ok(())
}

impl ClusterState {
    /// The transaction of `id` when `producer_id` at `epoch` is its producer, or the refusal.
    fn producer_txn(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&mut TxnRecord, Outcome> {
        let Some(r) = self.transactions.get_mut(id) else {
            return Err(refused(
                INVALID_PRODUCER_ID_MAPPING,
                format!("transactional id {id} has no producer (InitProducerId first)"),
            ));
        };
        check_producer(r, producer_id, epoch)?;
        Ok(r)
    }

    pub(super) fn apply_txn(&mut self, cmd: &TxnCommand) -> Outcome {
        match cmd {
            TxnCommand::Init {
                id,
                timeout_ms,
                new_producer_id,
                expected,
                now_ms,
            } => {
                let Some(r) = self.transactions.get_mut(id) else {
                    let r = TxnRecord {
                        producer_id: *new_producer_id,
                        epoch: 0,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        timeout_ms: *timeout_ms,
                        started_ms: -1,
                        updated_ms: *now_ms,
                    };
                    self.transactions.insert(id.clone(), r.clone());
                    return Outcome::Txn(r);
                };
                if let Some((pid, epoch)) = *expected {
                    // A retry of an InitProducerId that already bumped is answered alike.
                    let current = (r.producer_id, r.epoch) == (pid, epoch);
                    let retried = r.producer_id == pid && r.epoch == epoch.saturating_add(1);
                    if !current && !retried {
                        return refused(
                            PRODUCER_FENCED,
                            format!(
                                "producer {pid} epoch {epoch} is not the transactional id's current producer {} epoch {}",
                                r.producer_id, r.epoch
                            ),
                        );
                    }
                    if retried && r.state == TxnState::Empty {
                        return Outcome::Txn(r.clone());
                    }
                }
                match r.state {
                    TxnState::Ongoing => {
                        // Aborted with the next epoch (fencing the old producer); the client
                        // retries once the markers are written.
                        match next_epoch(r.epoch) {
                            Some(e) => r.epoch = e,
                            None => {
                                r.producer_id = *new_producer_id;
                                r.epoch = 0;
                            }
                        }
                        r.state = TxnState::PrepareAbort;
                        r.updated_ms = *now_ms;
                    }
                    TxnState::PrepareCommit | TxnState::PrepareAbort => {}
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                        match next_epoch(r.epoch) {
                            Some(e) => r.epoch = e,
                            None => {
                                r.producer_id = *new_producer_id;
                                r.epoch = 0;
                            }
                        }
                        r.state = TxnState::Empty;
                        r.partitions.clear();
                        r.timeout_ms = *timeout_ms;
                        r.started_ms = -1;
                        r.updated_ms = *now_ms;
                    }
                }
                Outcome::Txn(r.clone())
            }
            TxnCommand::AddPartitions {
                id,
                producer_id,
                epoch,
                partitions,
                now_ms,
            } => {
                let r = match self.producer_txn(id, *producer_id, *epoch) {
                    Ok(r) => r,
                    Err(o) => return o,
                };
                match r.state {
                    TxnState::PrepareCommit | TxnState::PrepareAbort => {
                        return refused(
                            CONCURRENT_TRANSACTIONS,
                            format!("transactional id {id}: the previous transaction is still being completed"),
                        )
                    }
                    TxnState::Ongoing => {}
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                        r.partitions.clear();
                        r.started_ms = *now_ms;
                        r.state = TxnState::Ongoing;
                    }
                }
                r.partitions.extend(partitions.iter().cloned());
                r.updated_ms = *now_ms;
                Outcome::Txn(r.clone())
            }
            TxnCommand::End {
                id,
                producer_id,
                epoch,
                commit,
                now_ms,
            } => {
                let r = match self.producer_txn(id, *producer_id, *epoch) {
                    Ok(r) => r,
                    Err(o) => return o,
                };
                let wrong = |what: &str| {
                    refused(
                        INVALID_TXN_STATE,
                        format!(
                            "transactional id {id}: cannot {what} in state {}",
                            r.state.name()
                        ),
                    )
                };
                match (r.state, *commit) {
                    (TxnState::Ongoing, true) => r.state = TxnState::PrepareCommit,
                    (TxnState::Ongoing, false) => r.state = TxnState::PrepareAbort,
                    // Retries of an EndTxn already accepted.
                    (TxnState::PrepareCommit | TxnState::CompleteCommit, true)
                    | (TxnState::PrepareAbort | TxnState::CompleteAbort, false) => {
                        return Outcome::Txn(r.clone())
                    }
                    // Nothing was written: nothing to abort.
                    (TxnState::Empty, false) => return Outcome::Txn(r.clone()),
                    (_, true) => return wrong("commit"),
                    (_, false) => return wrong("abort"),
                }
                r.updated_ms = *now_ms;
                Outcome::Txn(r.clone())
            }
            TxnCommand::Complete {
                id,
                producer_id,
                epoch,
                now_ms,
            } => {
                let Some(r) = self.transactions.get_mut(id) else {
                    return Outcome::Done;
                };
                if (r.producer_id, r.epoch) != (*producer_id, *epoch) {
                    return Outcome::Done;
                }
                r.state = match r.state {
                    TxnState::PrepareCommit => TxnState::CompleteCommit,
                    TxnState::PrepareAbort => TxnState::CompleteAbort,
                    other => other,
                };
                r.partitions.clear();
                r.updated_ms = *now_ms;
                Outcome::Txn(r.clone())
            }
            TxnCommand::Forget { id, updated_ms } => {
                let idle = self.transactions.get(id).is_some_and(|r| {
                    r.updated_ms == *updated_ms
                        && matches!(
                            r.state,
                            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                        )
                });
                if idle {
                    self.transactions.remove(id);
                }
                Outcome::Done
            }
            TxnCommand::Expire {
                id,
                producer_id,
                epoch,
                now_ms,
            } => {
                let Some(r) = self.transactions.get_mut(id) else {
                    return Outcome::Done;
                };
                if (r.producer_id, r.epoch) != (*producer_id, *epoch)
                    || r.state != TxnState::Ongoing
                {
                    return Outcome::Done;
                }
                // At the last epoch it cannot fence by epoch; the abort still ends it.
                if let Some(e) = next_epoch(r.epoch) {
                    r.epoch = e;
                }
                r.state = TxnState::PrepareAbort;
                r.updated_ms = *now_ms;
                Outcome::Txn(r.clone())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn txn(o: Outcome) -> TxnRecord {
        match o {
            Outcome::Txn(r) => r,
            other => panic!("expected a transaction, got {other:?}"),
        }
    }

    fn code(o: Outcome) -> i16 {
        match o {
            Outcome::Refused { code, .. } => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn init(s: &mut ClusterState, pid: i64) -> TxnRecord {
        txn(s.apply_txn(&TxnCommand::Init {
            id: "tx".into(),
            timeout_ms: 60_000,
            new_producer_id: pid,
            expected: None,
            now_ms: 1,
        }))
    }

    fn add(s: &mut ClusterState, pid: i64, epoch: i16, p: i32) -> Outcome {
        s.apply_txn(&TxnCommand::AddPartitions {
            id: "tx".into(),
            producer_id: pid,
            epoch,
            partitions: vec![("t".into(), p)],
            now_ms: 2,
        })
    }

    fn end(s: &mut ClusterState, pid: i64, epoch: i16, commit: bool) -> Outcome {
        s.apply_txn(&TxnCommand::End {
            id: "tx".into(),
            producer_id: pid,
            epoch,
            commit,
            now_ms: 3,
        })
    }

    fn complete(s: &mut ClusterState, pid: i64, epoch: i16) -> Outcome {
        s.apply_txn(&TxnCommand::Complete {
            id: "tx".into(),
            producer_id: pid,
            epoch,
            now_ms: 4,
        })
    }

    #[test]
    fn a_transaction_goes_through_its_states() {
        let mut s = ClusterState::default();
        let r = init(&mut s, 7);
        assert_eq!((r.producer_id, r.epoch, r.state), (7, 0, TxnState::Empty));
        let r = txn(add(&mut s, 7, 0, 0));
        assert_eq!(r.state, TxnState::Ongoing);
        let r = txn(add(&mut s, 7, 0, 1));
        assert_eq!(r.partitions.len(), 2);
        assert_eq!(txn(end(&mut s, 7, 0, true)).state, TxnState::PrepareCommit);
        // The next transaction waits for the markers; a retried EndTxn is answered alike.
        assert_eq!(code(add(&mut s, 7, 0, 0)), CONCURRENT_TRANSACTIONS);
        assert_eq!(txn(end(&mut s, 7, 0, true)).state, TxnState::PrepareCommit);
        assert_eq!(code(end(&mut s, 7, 0, false)), INVALID_TXN_STATE);
        let r = txn(complete(&mut s, 7, 0));
        assert_eq!(r.state, TxnState::CompleteCommit);
        assert!(r.partitions.is_empty());
        // The next transaction starts fresh.
        let r = txn(add(&mut s, 7, 0, 3));
        assert_eq!(r.partitions.len(), 1);
        assert_eq!(r.started_ms, 2);
    }

    #[test]
    fn a_new_producer_for_the_id_aborts_the_open_transaction_and_fences_the_old_one() {
        let mut s = ClusterState::default();
        init(&mut s, 7);
        txn(add(&mut s, 7, 0, 0));
        // The new producer's InitProducerId aborts with epoch 1 and must retry.
        let r = init(&mut s, 99);
        assert_eq!(
            (r.producer_id, r.epoch, r.state),
            (7, 1, TxnState::PrepareAbort)
        );
        assert_eq!(init(&mut s, 99).state, TxnState::PrepareAbort);
        // The old producer is fenced.
        assert_eq!(code(end(&mut s, 7, 0, true)), PRODUCER_FENCED);
        assert_eq!(code(add(&mut s, 7, 0, 1)), PRODUCER_FENCED);
        txn(complete(&mut s, 7, 1));
        let r = init(&mut s, 99);
        assert_eq!((r.producer_id, r.epoch, r.state), (7, 2, TxnState::Empty));
        // Another producer id is no mapping of this transactional id.
        assert_eq!(code(add(&mut s, 8, 2, 0)), INVALID_PRODUCER_ID_MAPPING);
    }

    #[test]
    fn a_timed_out_transaction_is_aborted_with_the_next_epoch() {
        let mut s = ClusterState::default();
        init(&mut s, 7);
        txn(add(&mut s, 7, 0, 0));
        let expire = |s: &mut ClusterState, epoch| {
            s.apply_txn(&TxnCommand::Expire {
                id: "tx".into(),
                producer_id: 7,
                epoch,
                now_ms: 100,
            })
        };
        let r = txn(expire(&mut s, 0));
        assert_eq!((r.epoch, r.state), (1, TxnState::PrepareAbort));
        // A second expiry decided on the old view changes nothing.
        assert_eq!(expire(&mut s, 0), Outcome::Done);
        assert_eq!(code(end(&mut s, 7, 0, true)), PRODUCER_FENCED);
        // A completion for another epoch changes nothing either.
        assert_eq!(complete(&mut s, 7, 0), Outcome::Done);
        assert_eq!(txn(complete(&mut s, 7, 1)).state, TxnState::CompleteAbort);
    }

    #[test]
    fn an_idle_id_is_forgotten_unless_it_changed_or_is_open() {
        let mut s = ClusterState::default();
        let r = init(&mut s, 7);
        let forget = |s: &mut ClusterState, updated_ms| {
            s.apply_txn(&TxnCommand::Forget {
                id: "tx".into(),
                updated_ms,
            })
        };
        // Decided on an older view: the id was used since.
        txn(add(&mut s, 7, 0, 0));
        forget(&mut s, r.updated_ms);
        assert!(s.transactions.contains_key("tx"));
        // Open: never forgotten.
        let open = s.transactions["tx"].updated_ms;
        forget(&mut s, open);
        assert!(s.transactions.contains_key("tx"));
        txn(end(&mut s, 7, 0, true));
        let done = txn(complete(&mut s, 7, 0));
        forget(&mut s, done.updated_ms);
        assert!(!s.transactions.contains_key("tx"));
        // A new InitProducerId starts over with a new producer id.
        assert_eq!(init(&mut s, 8).producer_id, 8);
    }

    #[test]
    fn an_epoch_about_to_overflow_gets_a_new_producer_id() {
        let mut s = ClusterState::default();
        init(&mut s, 7);
        s.transactions.get_mut("tx").unwrap().epoch = i16::MAX - 1;
        let r = init(&mut s, 8);
        assert_eq!((r.producer_id, r.epoch), (8, 0));
        // KIP-360: an InitProducerId naming a producer that is not the current one is fenced.
        let o = s.apply_txn(&TxnCommand::Init {
            id: "tx".into(),
            timeout_ms: 1,
            new_producer_id: 9,
            expected: Some((7, 3)),
            now_ms: 5,
        });
        assert_eq!(code(o), PRODUCER_FENCED);
    }
}
