//! A group's committed offsets following its coordinator role to another broker (a draining
//! broker hands its groups over, `server::mover`): exported by the old coordinator, imported
//! whole by the new one, then forgotten by the old.

use super::offsets::{OffsetRecord, StoredOffset};
use super::{GroupCoordinator, GroupError};

impl GroupCoordinator {
    /// A group's committed offsets (its coordinator role moving to another broker).
    pub fn export_offsets(&self, group: &str) -> Vec<(String, i32, StoredOffset)> {
        self.offsets.group_offsets(group)
    }

    /// Takes over a group's committed offsets from its previous coordinator: whatever this
    /// broker had stored for the group before is replaced. Durable when it returns.
    pub fn import_offsets(
        &self,
        group: &str,
        committed: Vec<(String, i32, StoredOffset)>,
    ) -> Result<(), GroupError> {
        let mut records = vec![OffsetRecord::DeleteGroup {
            group: group.to_string(),
        }];
        records.extend(committed.into_iter().map(|(topic, partition, value)| {
            OffsetRecord::Commit {
                group: group.to_string(),
                topic,
                partition,
                value,
            }
        }));
        self.offsets.append(records)
    }

    /// Forgets a group's committed offsets here (its coordinator role moved away).
    pub fn forget_offsets(&self, group: &str) -> Result<(), GroupError> {
        if !self.offsets.has_group(group) {
            return Ok(());
        }
        self.offsets.append(vec![OffsetRecord::DeleteGroup {
            group: group.to_string(),
        }])
    }
}
