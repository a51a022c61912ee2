use super::*;

const LIMITS: Limits = Limits {
    lock_ms: 1000,
    delivery_limit: 3,
    max_in_flight: 100,
};

fn run(first: i64, last: i64, delivery_count: i16) -> Acquired {
    Acquired {
        first,
        last,
        delivery_count,
    }
}

#[test]
fn new_records_are_acquired_once_with_delivery_count_one() {
    let mut sp = SharePartition::new(10);
    assert_eq!(sp.next_fetch_offset(&LIMITS), Some(10));
    assert_eq!(
        sp.acquire("a", 10, 15, 500, 0, &LIMITS),
        vec![run(10, 14, 1)]
    );
    assert_eq!(sp.end_offset(), 15);
    // Another member gets nothing of what `a` holds.
    assert_eq!(sp.acquire("b", 10, 15, 500, 0, &LIMITS), vec![]);
    assert_eq!(sp.next_fetch_offset(&LIMITS), Some(15));
    assert_eq!(sp.acquired_count(), 5);
}

#[test]
fn acquisition_stops_at_max_records() {
    let mut sp = SharePartition::new(0);
    assert_eq!(sp.acquire("a", 0, 10, 3, 0, &LIMITS), vec![run(0, 2, 1)]);
    assert_eq!(sp.acquire("b", 0, 10, 3, 0, &LIMITS), vec![run(3, 5, 1)]);
}

#[test]
fn accepted_records_move_the_start_offset() {
    let mut sp = SharePartition::new(0);
    sp.acquire("a", 0, 4, 500, 0, &LIMITS);
    let out = sp
        .acknowledge("a", (0, 1), &[ACK_ACCEPT], false, 0, &LIMITS)
        .expect("ack");
    assert_eq!(out.accepted, 2);
    assert_eq!(sp.start_offset(), 2);
    // Accepting the tail first leaves the start at the first unfinished record.
    sp.acknowledge("a", (3, 3), &[ACK_ACCEPT], false, 0, &LIMITS)
        .expect("ack");
    assert_eq!(sp.start_offset(), 2);
    sp.acknowledge("a", (2, 2), &[ACK_ACCEPT], false, 0, &LIMITS)
        .expect("ack");
    assert_eq!((sp.start_offset(), sp.end_offset()), (4, 4));
}

#[test]
fn released_records_are_redelivered_with_a_higher_count() {
    let mut sp = SharePartition::new(0);
    sp.acquire("a", 0, 3, 500, 0, &LIMITS);
    let out = sp
        .acknowledge(
            "a",
            (0, 2),
            &[ACK_ACCEPT, ACK_RELEASE, ACK_ACCEPT],
            false,
            0,
            &LIMITS,
        )
        .expect("ack");
    assert_eq!((out.accepted, out.released), (2, 1));
    assert_eq!(sp.next_fetch_offset(&LIMITS), Some(1));
    assert_eq!(sp.acquire("b", 1, 3, 500, 0, &LIMITS), vec![run(1, 1, 2)]);
}

#[test]
fn a_record_released_at_the_delivery_limit_is_archived() {
    let mut sp = SharePartition::new(0);
    for count in 1..=3 {
        assert_eq!(
            sp.acquire("a", 0, 1, 500, 0, &LIMITS),
            vec![run(0, 0, count)]
        );
        let out = sp
            .acknowledge("a", (0, 0), &[ACK_RELEASE], false, 0, &LIMITS)
            .expect("release");
        if count < 3 {
            assert_eq!(out.released, 1);
        } else {
            assert_eq!(
                out.archived,
                vec![Archived {
                    offset: 0,
                    delivery_count: 3,
                    reason: ArchiveReason::DeliveryLimit
                }]
            );
        }
    }
    assert_eq!(sp.start_offset(), 1);
    assert_eq!(sp.acquire("a", 0, 1, 500, 0, &LIMITS), vec![]);
}

#[test]
fn rejected_records_are_archived_and_never_redelivered() {
    let mut sp = SharePartition::new(0);
    sp.acquire("a", 0, 2, 500, 0, &LIMITS);
    let out = sp
        .acknowledge("a", (0, 1), &[ACK_REJECT, ACK_ACCEPT], false, 0, &LIMITS)
        .expect("ack");
    assert_eq!(out.archived.len(), 1);
    assert_eq!(out.archived[0].reason, ArchiveReason::Rejected);
    assert_eq!(sp.start_offset(), 2);
}

#[test]
fn timed_out_locks_make_records_available_again() {
    let mut sp = SharePartition::new(0);
    sp.acquire("a", 0, 2, 500, 0, &LIMITS);
    assert_eq!(sp.next_deadline(), Some(1000));
    assert_eq!(sp.expire_locks(999, &LIMITS).released, 0);
    assert_eq!(sp.expire_locks(1000, &LIMITS).released, 2);
    assert_eq!(
        sp.acquire("b", 0, 2, 500, 1000, &LIMITS),
        vec![run(0, 1, 2)]
    );
    // `a` lost the lock: its late acknowledgement is refused.
    assert!(matches!(
        sp.acknowledge("a", (0, 1), &[ACK_ACCEPT], false, 1000, &LIMITS),
        Err(AckError::InvalidRecordState { .. })
    ));
}

#[test]
fn a_leaving_member_releases_only_its_own_records() {
    let mut sp = SharePartition::new(0);
    sp.acquire("a", 0, 2, 500, 0, &LIMITS);
    sp.acquire("b", 0, 4, 500, 0, &LIMITS);
    assert_eq!(sp.release_member("a", &LIMITS).released, 2);
    assert_eq!(sp.acquired_count(), 2);
    assert_eq!(sp.acquire("c", 0, 4, 500, 0, &LIMITS), vec![run(0, 1, 2)]);
}

#[test]
fn acknowledgements_of_records_not_held_change_nothing() {
    let mut sp = SharePartition::new(0);
    sp.acquire("a", 0, 2, 500, 0, &LIMITS);
    let before = sp.clone();
    assert!(sp
        .acknowledge("b", (0, 1), &[ACK_ACCEPT], false, 0, &LIMITS)
        .is_err());
    assert!(sp
        .acknowledge("a", (0, 5), &[ACK_ACCEPT], false, 0, &LIMITS)
        .is_err());
    assert!(matches!(
        sp.acknowledge(
            "a",
            (0, 1),
            &[ACK_ACCEPT, ACK_ACCEPT, ACK_ACCEPT],
            false,
            0,
            &LIMITS
        ),
        Err(AckError::InvalidRequest { .. })
    ));
    assert!(matches!(
        sp.acknowledge("a", (0, 1), &[ACK_RENEW], false, 0, &LIMITS),
        Err(AckError::InvalidRequest { .. })
    ));
    assert!(matches!(
        sp.acknowledge("a", (1, 0), &[ACK_ACCEPT], false, 0, &LIMITS),
        Err(AckError::InvalidRequest { .. })
    ));
    assert_eq!(sp, before);
}

#[test]
fn renew_extends_the_lock_where_allowed() {
    let mut sp = SharePartition::new(0);
    sp.acquire("a", 0, 1, 500, 0, &LIMITS);
    sp.acknowledge("a", (0, 0), &[ACK_RENEW], true, 900, &LIMITS)
        .expect("renew");
    assert_eq!(sp.expire_locks(1000, &LIMITS).released, 0);
    assert_eq!(sp.next_deadline(), Some(1900));
}

#[test]
fn the_in_flight_window_caps_new_acquisitions() {
    let limits = Limits {
        max_in_flight: 3,
        ..LIMITS
    };
    let mut sp = SharePartition::new(0);
    assert_eq!(sp.acquire("a", 0, 10, 500, 0, &limits), vec![run(0, 2, 1)]);
    assert_eq!(sp.next_fetch_offset(&limits), None);
    sp.acknowledge("a", (0, 0), &[ACK_ACCEPT], false, 0, &limits)
        .expect("ack");
    assert_eq!(sp.next_fetch_offset(&limits), Some(3));
}

#[test]
fn records_deleted_from_the_log_leave_the_share_partition() {
    let mut sp = SharePartition::new(0);
    sp.acquire("a", 0, 4, 500, 0, &LIMITS);
    sp.follow_log_start(2);
    assert_eq!(sp.start_offset(), 2);
    assert!(sp.record(1).is_none());
    sp.follow_log_start(9);
    assert_eq!((sp.start_offset(), sp.end_offset()), (9, 9));
}
