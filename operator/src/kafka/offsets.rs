//! The calls behind the queue counts on status (`queue_counts`): ListOffsets for the log start
//! and end of the partitions a broker leads, ListGroups and DescribeShareGroupOffsets for the
//! share groups a broker coordinates, ListGroups and OffsetFetch for the consumer groups it
//! coordinates, and the broker's `/metrics` text for the records in flight.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    BrokerId, DescribeShareGroupOffsetsRequest, GroupId, ListGroupsRequest, ListOffsetsRequest,
    OffsetFetchRequest, TopicName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{code_text, str_bytes, AdminClient, OP_TIMEOUT_MS};
use crate::error::Result;
use crate::queue_counts::Partition;

/// ListOffsets' special timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
/// Largest `/metrics` answer read (a broker with thousands of partitions stays far below).
const MAX_METRICS_BYTES: usize = 32 * 1024 * 1024;

/// Share group → its start offset per share partition (−1: not started there).
pub type ShareStarts = BTreeMap<String, BTreeMap<Partition, i64>>;

/// Consumer group → its committed offset per partition (only partitions with one).
pub type GroupOffsets = BTreeMap<String, BTreeMap<Partition, i64>>;

impl AdminClient {
    /// (log start, log end) of each of `partitions` this broker leads. Partitions it does not
    /// lead (or that fail) are left out: their leader answers for them.
    pub async fn log_offsets(
        &mut self,
        partitions: &[Partition],
    ) -> Result<BTreeMap<Partition, (i64, i64)>> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let starts = self.list_offsets(partitions, EARLIEST).await?;
        let ends = self.list_offsets(partitions, LATEST).await?;
        Ok(starts
            .into_iter()
            .filter_map(|(p, start)| ends.get(&p).map(|end| (p, (start, *end))))
            .collect())
    }

    /// One ListOffsets for `partitions` at `timestamp`: the offsets the broker answered
    /// without an error.
    async fn list_offsets(
        &mut self,
        partitions: &[Partition],
        timestamp: i64,
    ) -> Result<BTreeMap<Partition, i64>> {
        let name = "ListOffsets";
        let version = self.version_for::<ListOffsetsRequest>(name)?;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_timeout_ms(OP_TIMEOUT_MS)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, parts)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_current_leader_epoch(-1)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = self.send(&request, version, name).await?;
        let mut out = BTreeMap::new();
        for t in response.topics {
            for p in t.partitions {
                if p.error_code == 0 && p.offset >= 0 {
                    out.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
        Ok(out)
    }

    /// The groups of `types` this broker coordinates (ListGroups v5's types filter) that `keep`
    /// keeps.
    async fn list_groups(
        &mut self,
        types: &[&str],
        keep: impl Fn(&ListedGroup) -> bool,
    ) -> Result<Vec<GroupId>> {
        let name = "ListGroups";
        let version = self.version_for::<ListGroupsRequest>(name)?;
        let request = ListGroupsRequest::default()
            .with_types_filter(types.iter().map(|t| str_bytes(t)).collect());
        let response = self.send(&request, version, name).await?;
        if let Some(err) = code_text(response.error_code, None) {
            return Err(self.err(name, err));
        }
        Ok(response
            .groups
            .into_iter()
            .filter(|g| keep(g))
            .map(|g| g.group_id)
            .collect())
    }

    /// The share groups this broker coordinates (ListGroups, type `share`) with their start
    /// offsets (DescribeShareGroupOffsets). An error when either call fails or a group's answer
    /// carries an error: the caller then knows the share groups only in part.
    pub async fn share_group_starts(&mut self) -> Result<ShareStarts> {
        let groups = self
            .list_groups(&["share"], |g| {
                g.group_type.as_str() == "share" || g.protocol_type.as_str() == "share"
            })
            .await?;
        if groups.is_empty() {
            return Ok(BTreeMap::new());
        }
        let name = "DescribeShareGroupOffsets";
        let version = self.version_for::<DescribeShareGroupOffsetsRequest>(name)?;
        let request = DescribeShareGroupOffsetsRequest::default().with_groups(
            groups
                .into_iter()
                .map(|g| {
                    DescribeShareGroupOffsetsRequestGroup::default()
                        .with_group_id(g)
                        .with_topics(None)
                })
                .collect(),
        );
        let response = self.send(&request, version, name).await?;
        let mut out = BTreeMap::new();
        for g in response.groups {
            let group = g.group_id.to_string();
            if let Some(err) = code_text(g.error_code, g.error_message.as_ref()) {
                return Err(self.err(name, format!("group {group}: {err}")));
            }
            let starts: &mut BTreeMap<Partition, i64> = out.entry(group).or_default();
            for t in g.topics {
                for p in t.partitions {
                    if p.error_code == 0 {
                        starts.insert(
                            (t.topic_name.0.to_string(), p.partition_index),
                            p.start_offset,
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// The consumer groups this broker coordinates (ListGroups, types `classic` and `consumer`;
    /// groups of another protocol, such as Kafka Connect's workers, left out) with their
    /// committed offsets (one OffsetFetch for all of them). An error when either call fails or
    /// a group's answer carries an error: the caller then knows the groups only in part.
    pub async fn consumer_group_offsets(&mut self) -> Result<GroupOffsets> {
        // A group that only stores offsets (no member ever joined) lists no protocol type.
        let groups = self
            .list_groups(&["classic", "consumer"], |g| {
                matches!(g.protocol_type.as_str(), "consumer" | "")
            })
            .await?;
        if groups.is_empty() {
            return Ok(BTreeMap::new());
        }
        let name = "OffsetFetch";
        let version = self.version_for::<OffsetFetchRequest>(name)?;
        let request = OffsetFetchRequest::default().with_groups(
            groups
                .into_iter()
                .map(|g| {
                    OffsetFetchRequestGroup::default()
                        .with_group_id(g)
                        .with_topics(None)
                })
                .collect(),
        );
        let response = self.send(&request, version, name).await?;
        let mut out = BTreeMap::new();
        for g in response.groups {
            let group = g.group_id.to_string();
            if let Some(err) = code_text(g.error_code, None) {
                return Err(self.err(name, format!("group {group}: {err}")));
            }
            let offsets: &mut BTreeMap<Partition, i64> = out.entry(group).or_default();
            for t in g.topics {
                for p in t.partitions {
                    if p.error_code == 0 && p.committed_offset >= 0 {
                        offsets.insert(
                            (t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        );
                    }
                }
            }
        }
        Ok(out)
    }
}

/// GET `http://<addr>/metrics`: the body of a 200 answer, else an error saying what came back.
/// A plain HTTP/1.1 request read to the end of the connection, like [`super::probe_readyz`].
pub async fn fetch_metrics(addr: &str, timeout: Duration) -> std::result::Result<String, String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        let read = (&mut stream)
            .take(u64::try_from(MAX_METRICS_BYTES).unwrap_or(u64::MAX) + 1)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if read > MAX_METRICS_BYTES {
            return Err(format!("answer larger than {MAX_METRICS_BYTES} bytes"));
        }
        http_body(&raw)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result.map_err(|e| format!("GET http://{addr}/metrics: {e}")),
        Err(_) => Err(format!(
            "GET http://{addr}/metrics: no answer within {timeout:?}"
        )),
    }
}

/// The body of a complete HTTP/1.1 answer when its status is 200 (chunked or not).
fn http_body(raw: &[u8]) -> std::result::Result<String, String> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err("answer without a header end".to_string());
    };
    let status = head.lines().next().unwrap_or_default();
    if !(status.starts_with("HTTP/1.") && status.get(9..12) == Some("200")) {
        return Err(format!("answer {status:?}"));
    }
    let chunked = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return Ok(body.to_string());
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return Err("chunked answer cut short".to_string());
        };
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = after
            .get(..size)
            .ok_or_else(|| "chunked answer cut short".to_string())?;
        out.push_str(chunk);
        rest = after.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::http_body;

    #[test]
    fn a_metrics_answer_is_read_plain_or_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\na 1\nb\n";
        assert_eq!(http_body(plain).as_deref(), Ok("a 1\nb\n"));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na 1\n\r\n2\r\nb\n\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).as_deref(), Ok("a 1\nb\n"));
        let refused = b"HTTP/1.1 503 Service Unavailable\r\n\r\nrecovering\n";
        assert!(http_body(refused).expect_err("refused").contains("503"));
        assert!(http_body(b"HTTP/1.1 200 OK\r\n").is_err());
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nab";
        assert!(http_body(cut).is_err());
    }
}
