//! [`LogManager`]: the catalog of every topic of the broker, its persistence (`topics.json`)
//! and the partitions stored here.
//!
//! Topic metadata lives in `<data-dir>/topics.json`, replaced atomically on every change:
//! write `topics.json.tmp`, fsync it, rename it over `topics.json`, fsync the directory. A crash
//! at any point leaves either the old or the new file, never a mix.
//!
//! Partition data lives in `<data-dir>/topics/<topic>-<partition>/` (one [`PartitionLog`] each).
//! A partition directory whose topic is not in `topics.json` is the leftover of a delete that
//! crashed half-way; it is removed at open.
//!
//! Config values are checked and resolved by `config.rs`; the periodic work over every
//! partition (retention, interval flush) is in `upkeep.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::config::{
    altered_configs, check_partition_count, validate_topic_configs, validate_topic_name, AlterOp,
    ConfigEntry, LogDefaults,
};
use super::files::{io_err, sync_dir, write_atomic};
use super::{LogConfig, LogError, PartitionLog, TopicWake};

/// Name of the topic metadata file in the data directory.
const TOPICS_FILE: &str = "topics.json";
/// Sub-directory of the data directory holding one directory per partition.
const TOPICS_DIR: &str = "topics";
/// Threads that open partitions at start-up (and record new leaderships after it, see
/// `replica`). Opening a partition is bound by the latency of
/// its few fsyncs, not by CPU: more in flight at once let the file system commit them together
/// (1,000 partitions opened one after the other took seconds). Bounded so a broker with
/// thousands of partitions does not start thousands of threads.
pub(crate) const OPEN_THREADS: usize = 16;

/// One topic as stored in `topics.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Per-topic overrides only; the effective config is these over [`LogDefaults`].
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TopicsFile {
    version: u32,
    topics: Vec<StoredTopic>,
}

/// A topic as stored in `topics.json`: its metadata and which of its partitions live here.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTopic {
    #[serde(flatten)]
    meta: TopicMeta,
    /// The partitions stored on this broker; absent (files written before clustering) = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<Vec<i32>>,
}

#[derive(Debug, Clone)]
struct TopicEntry {
    meta: TopicMeta,
    /// The partitions stored on this broker (in a cluster, the ones it owns or receives).
    partitions: BTreeMap<i32, Arc<PartitionLog>>,
    /// Shared by those partitions (see [`TopicWake`]).
    wake: Arc<TopicWake>,
}

impl TopicEntry {
    fn new(meta: TopicMeta) -> TopicEntry {
        TopicEntry {
            meta,
            partitions: BTreeMap::new(),
            wake: Arc::default(),
        }
    }
}

/// What one broker should store of one topic (see [`LogManager::reconcile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTopic {
    pub meta: TopicMeta,
    /// Partition numbers this broker stores.
    pub local: std::collections::BTreeSet<i32>,
}

/// What one [`LogManager::reconcile_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Whether any partition, topic or config changed here.
    pub changed: bool,
    /// Topics this broker knew that the applied view no longer has at all (deleted topics).
    pub forgotten: Vec<String>,
}

/// Owns every topic and partition of the broker.
#[derive(Debug)]
pub struct LogManager {
    data_dir: PathBuf,
    defaults: LogDefaults,
    /// Readers (every produce/fetch looks up its partition) take this briefly.
    topics: RwLock<BTreeMap<String, TopicEntry>>,
    /// fsync count and nanoseconds of partitions that were deleted (metrics stay monotonic).
    retired_fsyncs: std::sync::atomic::AtomicU64,
    /// Records removed by compaction since start (`upkeep.rs`, for `/metrics`).
    pub(super) compacted_records: std::sync::atomic::AtomicU64,
    retired_fsync_nanos: std::sync::atomic::AtomicU64,
    /// Serializes metadata changes so `topics.json` is written in the order changes happen;
    /// held across the file writes, which readers never wait for.
    admin: Mutex<()>,
}

impl LogManager {
    /// Opens `data_dir/topics.json` (creating the data directory if needed), recovers every
    /// partition, removes partition directories of topics that no longer exist. Blocking: call
    /// from `spawn_blocking`. Starts no task (see [`LogManager::spawn_background`]).
    pub fn open(data_dir: &Path, defaults: LogDefaults) -> Result<LogManager, LogError> {
        let topics_dir = data_dir.join(TOPICS_DIR);
        std::fs::create_dir_all(&topics_dir).map_err(io_err(&topics_dir))?;
        let meta_path = data_dir.join(TOPICS_FILE);
        let file: TopicsFile = match std::fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LogError::Metadata {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Every partition directory would be an orphan and be deleted below. The
                // broker only creates directories without `topics.json` for a change it never
                // wrote, and those hold no records; data means the file was lost.
                if let Some(dir) = first_dir_with_records(&topics_dir)? {
                    return Err(LogError::Metadata {
                        path: meta_path,
                        reason: format!(
                            "the file is missing but {} holds records; refusing to start \
                             rather than delete them as orphans (restore topics.json from a \
                             backup, or move the partition directories away)",
                            dir.display()
                        ),
                    });
                }
                TopicsFile::default()
            }
            Err(source) => {
                return Err(LogError::Io {
                    path: meta_path,
                    source,
                })
            }
        };

        // Every partition of every topic, opened on a few threads (see `OPEN_THREADS`).
        let wakes: Vec<Arc<TopicWake>> = file.topics.iter().map(|_| Arc::default()).collect();
        let mut jobs = Vec::new();
        for ((t, stored), wake) in file.topics.iter().enumerate().zip(&wakes) {
            let config = defaults.effective(&stored.meta.configs);
            let local = stored
                .local
                .clone()
                .unwrap_or_else(|| (0..stored.meta.partitions).collect());
            for p in local {
                jobs.push((
                    t,
                    p,
                    partition_dir(data_dir, &stored.meta.name, p),
                    config.clone(),
                    Arc::clone(wake),
                ));
            }
        }
        let opened = map_bounded(jobs, OPEN_THREADS, |(t, p, dir, config, wake)| {
            (t, p, PartitionLog::open_in(dir, config, wake))
        });
        let mut by_topic: Vec<BTreeMap<i32, Arc<PartitionLog>>> =
            file.topics.iter().map(|_| BTreeMap::new()).collect();
        for (t, p, log) in opened {
            // Every partition was tried; the first failure in catalog order is the one
            // reported, as when they were opened one after the other.
            if let Some(partitions) = by_topic.get_mut(t) {
                partitions.insert(p, Arc::new(log?));
            }
        }
        let mut topics = BTreeMap::new();
        for ((StoredTopic { meta, .. }, partitions), wake) in
            file.topics.into_iter().zip(by_topic).zip(wakes)
        {
            tracing::info!(topic = %meta.name, partitions = meta.partitions, local = partitions.len(), "topic recovered");
            topics.insert(
                meta.name.clone(),
                TopicEntry {
                    meta,
                    partitions,
                    wake,
                },
            );
        }

        remove_orphan_dirs(&topics_dir, &topics)?;

        Ok(LogManager {
            data_dir: data_dir.to_path_buf(),
            defaults,
            topics: RwLock::new(topics),
            retired_fsyncs: Default::default(),
            compacted_records: Default::default(),
            retired_fsync_nanos: Default::default(),
            admin: Mutex::new(()),
        })
    }

    /// The broker-wide defaults this manager was opened with.
    pub fn defaults(&self) -> &LogDefaults {
        &self.defaults
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, TopicEntry>> {
        // A poisoned lock only means a thread panicked while holding it; the map itself is
        // always left consistent (entries are replaced whole), so keep serving.
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_topics(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, TopicEntry>> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_admin(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<TopicMeta> {
        self.read_topics()
            .values()
            .map(|e| e.meta.clone())
            .collect()
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.read_topics().get(name).map(|e| e.meta.clone())
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        self.read_topics()
            .values()
            .find(|e| e.meta.id == id)
            .map(|e| e.meta.clone())
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.read_topics()
            .get(topic)
            .and_then(|e| e.partitions.get(&partition).cloned())
    }

    /// Every partition of every topic (metrics, background tasks).
    pub fn all_partitions(&self) -> Vec<(String, i32, Arc<PartitionLog>)> {
        self.read_topics()
            .values()
            .flat_map(|e| {
                e.partitions
                    .iter()
                    .map(|(i, p)| (e.meta.name.clone(), *i, Arc::clone(p)))
            })
            .collect()
    }

    /// The effective log config of a topic.
    pub fn topic_log_config(&self, name: &str) -> Option<LogConfig> {
        self.read_topics()
            .get(name)
            .map(|e| self.defaults.effective(&e.meta.configs))
    }

    /// The topic's entry, or [`LogError::UnknownTopic`].
    fn entry(&self, name: &str) -> Result<TopicEntry, LogError> {
        self.read_topics()
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic {
                name: name.to_string(),
            })
    }

    /// Makes `next` the catalog: `topics.json` first, then what readers see, so a crash never
    /// leaves a change served that a restart would forget.
    fn commit(&self, next: BTreeMap<String, TopicEntry>) -> Result<(), LogError> {
        self.persist(&next)?;
        *self.write_topics() = next;
        Ok(())
    }

    fn persist(&self, topics: &BTreeMap<String, TopicEntry>) -> Result<(), LogError> {
        let file = TopicsFile {
            version: 1,
            topics: topics
                .values()
                .map(|e| StoredTopic {
                    meta: e.meta.clone(),
                    local: Some(e.partitions.keys().copied().collect()),
                })
                .collect(),
        };
        let path = self.data_dir.join(TOPICS_FILE);
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| LogError::Metadata {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }

    /// Validates the name (Kafka rules: `[a-zA-Z0-9._-]`, 1..=249, not "." or "..") and the
    /// configs, persists the topic and creates its partition directories. `partitions == -1`
    /// means the broker default. `validate_only` checks without doing anything.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, LogError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.defaults.default_partitions
        } else {
            partitions
        };
        check_partition_count(name, partitions)?;
        validate_topic_configs(&configs)?;

        let _admin = self.lock_admin();
        if self.read_topics().contains_key(name) {
            return Err(LogError::TopicAlreadyExists {
                name: name.to_string(),
            });
        }
        let meta = TopicMeta {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        if validate_only {
            return Ok(meta);
        }

        let config = self.defaults.effective(&meta.configs);
        let mut entry = TopicEntry::new(meta.clone());
        entry.partitions = self.open_new_partitions(name, 0..partitions, &config, &entry.wake)?;
        let mut next = self.read_topics().clone();
        next.insert(name.to_string(), entry);
        self.commit(next)?;
        tracing::info!(topic = name, partitions, id = %meta.id, "topic created");
        Ok(meta)
    }

    /// Makes this broker's logs match what the cluster says it stores: topics and partitions not
    /// in `desired` (deleted topics, partitions moved away, an older topic of the same name) are
    /// dropped and their files deleted; partitions new to this broker are created empty; config
    /// changes reach every local partition. `topics.json` is written before any file is
    /// deleted, so a crash in between leaves only orphan directories, which [`LogManager::open`]
    /// removes. Blocking. Returns whether anything changed.
    pub fn reconcile(&self, desired: &[DesiredTopic]) -> Result<bool, LogError> {
        self.reconcile_with(|| desired.to_vec())
            .map(|done| done.changed)
    }

    /// [`LogManager::reconcile`] with the view computed by `view` while this manager's admin
    /// lock is held. Callers pass a closure that reads the *latest* cluster state: two
    /// reconciles that each read their view first and then queued for the lock could apply in
    /// the wrong order, and the older view would delete a partition the newer one just created
    /// (with whatever was acknowledged into it in between).
    pub fn reconcile_with(
        &self,
        view: impl FnOnce() -> Vec<DesiredTopic>,
    ) -> Result<Reconciled, LogError> {
        let _admin = self.lock_admin();
        let desired = view();
        let desired = desired.as_slice();
        let current = self.read_topics().clone();
        let forgotten: Vec<String> = current
            .keys()
            .filter(|name| !desired.iter().any(|d| &d.meta.name == *name))
            .cloned()
            .collect();
        let want: BTreeMap<&str, &DesiredTopic> =
            desired.iter().map(|d| (d.meta.name.as_str(), d)).collect();

        // 1. Drop what this broker no longer stores; keep the rest, with the new metadata.
        let mut kept: BTreeMap<String, TopicEntry> = BTreeMap::new();
        let mut retired: Vec<(String, i32, Arc<PartitionLog>)> = Vec::new();
        for (name, entry) in &current {
            let same = want
                .get(name.as_str())
                .filter(|d| d.meta.id == entry.meta.id);
            let mut partitions = BTreeMap::new();
            for (p, log) in &entry.partitions {
                match same {
                    Some(d) if d.local.contains(p) => {
                        partitions.insert(*p, Arc::clone(log));
                    }
                    _ => retired.push((name.clone(), *p, Arc::clone(log))),
                }
            }
            if let Some(d) = same {
                if d.meta.configs != entry.meta.configs {
                    let config = self.defaults.effective(&d.meta.configs);
                    for log in partitions.values() {
                        log.set_config(config.clone());
                    }
                    tracing::info!(topic = %name, configs = ?d.meta.configs, "topic configs changed");
                }
                kept.insert(
                    name.clone(),
                    TopicEntry {
                        meta: d.meta.clone(),
                        partitions,
                        wake: Arc::clone(&entry.wake),
                    },
                );
            }
        }
        // 2. Topics and partitions new to this broker.
        let mut missing: Vec<(&DesiredTopic, i32)> = Vec::new();
        for d in desired {
            let entry = kept
                .entry(d.meta.name.clone())
                .or_insert_with(|| TopicEntry::new(d.meta.clone()));
            missing.extend(
                d.local
                    .iter()
                    .filter(|p| !entry.partitions.contains_key(p))
                    .map(|p| (d, *p)),
            );
        }
        let metas_changed = current.len() != kept.len()
            || current
                .iter()
                .zip(kept.iter())
                .any(|((a, ea), (b, eb))| a != b || ea.meta != eb.meta);
        if retired.is_empty() && missing.is_empty() && !metas_changed {
            return Ok(Reconciled {
                changed: false,
                forgotten,
            });
        }

        let mut next = kept;
        if !retired.is_empty() || metas_changed {
            self.commit(next.clone())?;
        }
        for (name, p, log) in &retired {
            self.retire(name, *p, log);
            tracing::info!(topic = %name, partition = p, "partition no longer stored here; files removed");
        }
        if !retired.is_empty() {
            let _ = sync_dir(&self.data_dir.join(TOPICS_DIR));
        }
        if !missing.is_empty() {
            for (d, p) in missing {
                let config = self.defaults.effective(&d.meta.configs);
                if let Some(entry) = next.get_mut(&d.meta.name) {
                    let logs =
                        self.open_new_partitions(&d.meta.name, p..p + 1, &config, &entry.wake)?;
                    entry.partitions.extend(logs);
                }
                tracing::info!(topic = %d.meta.name, partition = p, "partition created here");
            }
            self.commit(next)?;
        }
        Ok(Reconciled {
            changed: true,
            forgotten,
        })
    }

    /// Forgets one partition's log: keeps its fsync counters for the metrics, deletes its files.
    fn retire(&self, topic: &str, partition: i32, log: &PartitionLog) {
        use std::sync::atomic::Ordering::Relaxed;
        self.retired_fsyncs.fetch_add(log.fsync_count(), Relaxed);
        self.retired_fsync_nanos
            .fetch_add(log.fsync_time().as_nanos() as u64, Relaxed);
        if let Err(e) = log.remove_files() {
            tracing::warn!(topic, partition, error = %e, "could not remove partition directory");
        }
    }

    /// Creates fresh partition directories (removing any stale leftover first) and opens them.
    fn open_new_partitions(
        &self,
        topic: &str,
        range: std::ops::Range<i32>,
        config: &LogConfig,
        wake: &Arc<TopicWake>,
    ) -> Result<BTreeMap<i32, Arc<PartitionLog>>, LogError> {
        let mut logs = BTreeMap::new();
        for p in range {
            let dir = partition_dir(&self.data_dir, topic, p);
            if dir.exists() {
                tracing::warn!(path = %dir.display(), "removing stale partition directory");
                std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
            }
            logs.insert(
                p,
                Arc::new(PartitionLog::open_in(
                    dir,
                    config.clone(),
                    Arc::clone(wake),
                )?),
            );
        }
        sync_dir(&self.data_dir.join(TOPICS_DIR))?;
        Ok(logs)
    }

    /// Removes the topic from `topics.json`, then deletes its partition directories.
    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, LogError> {
        let _admin = self.lock_admin();
        let mut next = self.read_topics().clone();
        let entry = next.remove(name).ok_or_else(|| LogError::UnknownTopic {
            name: name.to_string(),
        })?;
        self.commit(next)?;
        // topics.json no longer names the topic: a crash from here on leaves orphan
        // directories that the next open removes.
        for (p, log) in &entry.partitions {
            self.retire(name, *p, log);
        }
        let _ = sync_dir(&self.data_dir.join(TOPICS_DIR));
        tracing::info!(topic = name, "topic deleted");
        Ok(entry.meta)
    }

    /// Grows the topic to `new_total` partitions (Kafka never shrinks a topic).
    pub fn create_partitions(
        &self,
        name: &str,
        new_total: i32,
        validate_only: bool,
    ) -> Result<TopicMeta, LogError> {
        let _admin = self.lock_admin();
        let current = self.entry(name)?;
        let have = current.meta.partitions;
        if new_total <= have {
            return Err(LogError::InvalidPartitions {
                topic: name.to_string(),
                reason: format!(
                    "topic has {have} partitions; the new total {new_total} must be larger"
                ),
            });
        }
        check_partition_count(name, new_total)?;
        let mut entry = current;
        entry.meta.partitions = new_total;
        if validate_only {
            return Ok(entry.meta);
        }
        let config = self.defaults.effective(&entry.meta.configs);
        let logs = self.open_new_partitions(name, have..new_total, &config, &entry.wake)?;
        entry.partitions.extend(logs);
        let mut next = self.read_topics().clone();
        next.insert(name.to_string(), entry.clone());
        self.commit(next)?;
        tracing::info!(
            topic = name,
            from = have,
            to = new_total,
            "partitions added"
        );
        Ok(entry.meta)
    }

    /// Changes a topic's overrides: applies `ops` to the current overrides when `incremental`
    /// (IncrementalAlterConfigs), else replaces all overrides with the `Set` ops (AlterConfigs).
    pub fn alter_topic_configs(
        &self,
        name: &str,
        ops: Vec<AlterOp>,
        incremental: bool,
        validate_only: bool,
    ) -> Result<TopicMeta, LogError> {
        let _admin = self.lock_admin();
        let mut entry = self.entry(name)?;
        entry.meta.configs = altered_configs(&entry.meta.configs, ops, incremental)?;
        if validate_only {
            return Ok(entry.meta);
        }
        let config = self.defaults.effective(&entry.meta.configs);
        let mut next = self.read_topics().clone();
        next.insert(name.to_string(), entry.clone());
        self.persist(&next)?;
        for p in entry.partitions.values() {
            p.set_config(config.clone());
        }
        *self.write_topics() = next;
        tracing::info!(topic = name, configs = ?entry.meta.configs, "topic configs changed");
        Ok(entry.meta)
    }

    /// Every config of the topic, defaults included (DescribeConfigs), sorted by name.
    pub fn describe_topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>, LogError> {
        let meta = self.topic(name).ok_or_else(|| LogError::UnknownTopic {
            name: name.to_string(),
        })?;
        Ok(self.describe_configs_of(&meta))
    }

    /// Every config of a topic with these overrides, defaults from this broker's flags.
    pub fn describe_configs_of(&self, meta: &TopicMeta) -> Vec<ConfigEntry> {
        self.defaults.describe_topic(&meta.configs)
    }

    /// Broker-level configs (DescribeConfigs on the BROKER resource), sorted by name.
    pub fn describe_broker_configs(&self) -> Vec<ConfigEntry> {
        self.defaults.describe_broker()
    }

    /// Total fsync calls and time spent in them, over every partition ever opened by this
    /// manager (for `/metrics`: monotonic counters).
    pub fn fsync_stats(&self) -> (u64, Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut n = self.retired_fsyncs.load(Relaxed);
        let mut t = Duration::from_nanos(self.retired_fsync_nanos.load(Relaxed));
        for (_, _, log) in self.all_partitions() {
            n += log.fsync_count();
            t += log.fsync_time();
        }
        (n, t)
    }
}

/// `<data-dir>/topics/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir
        .join(TOPICS_DIR)
        .join(format!("{topic}-{partition}"))
}

/// The first partition directory under `topics_dir` that has a non-empty segment file.
fn first_dir_with_records(topics_dir: &Path) -> Result<Option<PathBuf>, LogError> {
    for ent in std::fs::read_dir(topics_dir).map_err(io_err(topics_dir))? {
        let dir = ent.map_err(io_err(topics_dir))?.path();
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let has_records = files.flatten().any(|f| {
            f.path().extension().is_some_and(|x| x == "log")
                && f.metadata().is_ok_and(|m| m.len() > 0)
        });
        if has_records {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

/// `items.map(f)` on at most `threads` scoped threads, results in the order of `items`. Every
/// item is processed whatever the others return; a panic in `f` propagates.
pub(crate) fn map_bounded<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let n = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some((i, item)) = next else {
                    return;
                };
                let r = f(item);
                if let Some(slot) = results.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
                    *slot = Some(r);
                }
            });
        }
    });
    // Every index was taken from the queue exactly once and filled by the thread that took
    // it; the scope returned, so every thread finished without panicking.
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("map_bounded: every item has a result"))
        .collect()
}

fn remove_orphan_dirs(
    topics_dir: &Path,
    topics: &BTreeMap<String, TopicEntry>,
) -> Result<(), LogError> {
    let rd = std::fs::read_dir(topics_dir).map_err(io_err(topics_dir))?;
    let mut removed = false;
    for ent in rd {
        let ent = ent.map_err(io_err(topics_dir))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let known = name
            .rsplit_once('-')
            .and_then(|(t, p)| Some((topics.get(t)?, p.parse::<i32>().ok()?)))
            .is_some_and(|(e, p)| e.partitions.contains_key(&p));
        if !known {
            let path = ent.path();
            tracing::warn!(path = %path.display(), "removing partition directory of a deleted topic");
            crate::recovery::count(crate::recovery::Action::OrphanPartitionRemoved);
            std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(topics_dir)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::log::ConfigSource;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn desired(name: &str, id: u128, local: &[i32]) -> DesiredTopic {
        DesiredTopic {
            meta: TopicMeta {
                name: name.to_string(),
                id: uuid::Uuid::from_u128(id),
                partitions: 2,
                configs: BTreeMap::new(),
            },
            local: local.iter().copied().collect(),
        }
    }

    #[test]
    fn map_bounded_keeps_the_order_and_runs_every_item_once() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let items: Vec<u32> = (0..100).collect();
        let out = map_bounded(items, 7, |i| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            i * 2
        });
        assert_eq!(out, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(calls.into_inner(), 100);
        assert!(map_bounded(Vec::<u32>::new(), 4, |i| i).is_empty());
        assert_eq!(map_bounded(vec![5], 0, |i| i + 1), vec![6]);
    }

    #[test]
    fn map_bounded_runs_the_items_after_a_failing_one() {
        let out = map_bounded((0..10).collect(), 3, |i: i32| {
            if i == 2 {
                Err(format!("partition {i} is damaged"))
            } else {
                Ok(i)
            }
        });
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 9);
        assert_eq!(out[2], Err("partition 2 is damaged".to_string()));
    }

    #[test]
    fn open_recovers_every_partition_of_every_topic() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
            let local: Vec<i32> = (0..40).collect();
            m.reconcile(&[desired("a", 1, &local), desired("b", 2, &[1])])
                .unwrap();
        }
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        for p in 0..40 {
            assert!(m.partition("a", p).is_some(), "a-{p}");
        }
        assert!(m.partition("b", 1).is_some() && m.partition("b", 0).is_none());
        assert_eq!(m.all_partitions().len(), 41);
        drop(m);
        // A partition that cannot be opened fails the open, naming it, as before.
        let bad = partition_dir(tmp.path(), "a", 3);
        std::fs::remove_dir_all(&bad).unwrap();
        std::fs::write(&bad, b"not a directory").unwrap();
        match LogManager::open(tmp.path(), LogDefaults::default()) {
            Err(LogError::Io { path, .. }) => assert_eq!(path, bad),
            other => panic!("expected the error of a-3, got {other:?}"),
        }
    }

    #[test]
    fn reconcile_creates_keeps_and_drops_what_the_view_says() {
        let tmp = tempfile::tempdir().unwrap();
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        let view = [desired("a", 1, &[0, 1]), desired("b", 2, &[1])];
        assert!(m.reconcile(&view).unwrap());
        assert!(
            !m.reconcile(&view).unwrap(),
            "the same view changes nothing"
        );
        assert!(m.partition("b", 1).is_some() && m.partition("b", 0).is_none());
        // "a" deleted, "b" partition 1 moved away: both are dropped and named.
        let done = m.reconcile_with(|| vec![desired("b", 2, &[])]).unwrap();
        assert!(done.changed);
        assert_eq!(done.forgotten, vec!["a".to_string()]);
        assert!(m.partition("b", 1).is_none());
        assert!(!tmp.path().join(TOPICS_DIR).join("a-0").exists());
    }

    /// The view is read under the lock: a reconcile that queued behind another sees the other's
    /// result, so an older view can never be applied after a newer one.
    #[test]
    fn a_queued_reconcile_reads_its_view_after_the_running_one_applied() {
        let tmp = tempfile::tempdir().unwrap();
        let m = Arc::new(LogManager::open(tmp.path(), LogDefaults::default()).unwrap());
        let seen_by_second = std::thread::scope(|s| {
            let mut second = None;
            m.reconcile_with(|| {
                // Queue a second reconcile while the first holds the lock, before it applies.
                let m2 = Arc::clone(&m);
                second = Some(s.spawn(move || {
                    let mut seen = false;
                    m2.reconcile_with(|| {
                        seen = m2.partition("a", 0).is_some();
                        vec![desired("a", 1, &[0])]
                    })
                    .unwrap();
                    seen
                }));
                vec![desired("a", 1, &[0])]
            })
            .unwrap();
            second.take().unwrap().join().unwrap()
        });
        assert!(
            seen_by_second,
            "the queued view was read before the first applied"
        );
    }

    #[test]
    fn create_persists_and_reopens_with_same_id_and_configs() {
        let tmp = tempfile::tempdir().unwrap();
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        let meta = m
            .create_topic("orders", 3, cfg(&[("retention.ms", "1000")]), false)
            .unwrap();
        assert!(m.partition("orders", 2).is_some());
        assert!(m.partition("orders", 3).is_none());
        assert!(matches!(
            m.create_topic("orders", 1, BTreeMap::new(), false),
            Err(LogError::TopicAlreadyExists { .. })
        ));
        drop(m);
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        let again = m.topic("orders").unwrap();
        assert_eq!(again, meta);
        assert_eq!(m.topic_by_id(meta.id).unwrap().name, "orders");
        assert_eq!(m.topic_log_config("orders").unwrap().retention_ms, 1000);
    }

    #[test]
    fn validate_only_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        m.create_topic("t", 2, BTreeMap::new(), true).unwrap();
        assert!(m.topic("t").is_none());
        assert!(!partition_dir(tmp.path(), "t", 0).exists());
        m.create_topic("t", 2, BTreeMap::new(), false).unwrap();
        m.create_partitions("t", 4, true).unwrap();
        assert_eq!(m.topic("t").unwrap().partitions, 2);
    }

    #[test]
    fn delete_removes_dirs_and_recreate_starts_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        let first = m.create_topic("t", 1, BTreeMap::new(), false).unwrap();
        assert!(partition_dir(tmp.path(), "t", 0).exists());
        m.delete_topic("t").unwrap();
        assert!(!partition_dir(tmp.path(), "t", 0).exists());
        assert!(matches!(
            m.delete_topic("t"),
            Err(LogError::UnknownTopic { .. })
        ));
        let second = m.create_topic("t", 1, BTreeMap::new(), false).unwrap();
        assert_ne!(first.id, second.id);
    }

    #[test]
    fn orphan_partition_dirs_are_removed_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(partition_dir(tmp.path(), "gone", 0)).unwrap();
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        assert!(m.topics().is_empty());
        assert!(!partition_dir(tmp.path(), "gone", 0).exists());
    }

    #[test]
    fn create_partitions_only_grows() {
        let tmp = tempfile::tempdir().unwrap();
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        m.create_topic("t", 2, BTreeMap::new(), false).unwrap();
        assert!(matches!(
            m.create_partitions("t", 2, false),
            Err(LogError::InvalidPartitions { .. })
        ));
        m.create_partitions("t", 5, false).unwrap();
        assert!(m.partition("t", 4).is_some());
        drop(m);
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        assert_eq!(m.topic("t").unwrap().partitions, 5);
        assert!(matches!(
            m.create_topic("u", 0, BTreeMap::new(), false),
            Err(LogError::InvalidPartitions { .. })
        ));
        assert_eq!(
            m.create_topic("u", -1, BTreeMap::new(), false)
                .unwrap()
                .partitions,
            1
        );
    }

    #[test]
    fn alter_incremental_and_replace() {
        let tmp = tempfile::tempdir().unwrap();
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        m.create_topic("t", 1, cfg(&[("retention.ms", "5")]), false)
            .unwrap();
        let meta = m
            .alter_topic_configs(
                "t",
                vec![AlterOp::Set("segment.bytes".into(), "100000".into())],
                true,
                false,
            )
            .unwrap();
        assert_eq!(
            meta.configs,
            cfg(&[("retention.ms", "5"), ("segment.bytes", "100000")])
        );
        assert_eq!(m.partition("t", 0).unwrap().config().segment_bytes, 100000);
        let meta = m
            .alter_topic_configs(
                "t",
                vec![AlterOp::Set("sluice.fsync".into(), "interval".into())],
                false,
                false,
            )
            .unwrap();
        assert_eq!(meta.configs, cfg(&[("sluice.fsync", "interval")]));
        let meta = m
            .alter_topic_configs(
                "t",
                vec![AlterOp::Delete("sluice.fsync".into())],
                true,
                false,
            )
            .unwrap();
        assert!(meta.configs.is_empty());
        assert!(m
            .alter_topic_configs("t", vec![AlterOp::Set("x".into(), "1".into())], true, false)
            .is_err());
    }

    #[test]
    fn describe_includes_defaults_overrides_and_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
        m.create_topic("t", 1, cfg(&[("retention.ms", "5")]), false)
            .unwrap();
        let d = m.describe_topic_configs("t").unwrap();
        let get = |k: &str| d.iter().find(|e| e.name == k).unwrap().clone();
        assert_eq!(get("retention.ms").value.as_deref(), Some("5"));
        assert_eq!(get("retention.ms").source, ConfigSource::TopicOverride);
        assert_eq!(get("segment.bytes").source, ConfigSource::Default);
        assert_eq!(get("cleanup.policy").value.as_deref(), Some("delete"));
        assert_eq!(get("compression.type").value.as_deref(), Some("producer"));
        assert!(get("compression.type").read_only);
        assert_eq!(
            get("message.timestamp.type").value.as_deref(),
            Some("CreateTime")
        );
        assert!(!m.describe_broker_configs().is_empty());
        // Synonyms, most specific first: an override, then the broker-wide default by Kafka's
        // name; a default only the broker's; the first is always the value described.
        let syn = |k: &str| {
            get(k)
                .synonyms
                .iter()
                .map(|s| (s.name.clone(), s.value.clone(), s.source))
                .collect::<Vec<_>>()
        };
        let default_ms = LogDefaults::default().log.retention_ms.to_string();
        assert_eq!(
            syn("retention.ms"),
            [
                (
                    "retention.ms".into(),
                    "5".into(),
                    ConfigSource::TopicOverride
                ),
                ("log.retention.ms".into(), default_ms, ConfigSource::Default),
            ]
        );
        assert_eq!(
            syn("segment.ms"),
            [(
                "log.roll.ms".into(),
                get("segment.ms").value.unwrap(),
                ConfigSource::Default
            )]
        );
        for e in &d {
            let first = &e.synonyms[0];
            assert_eq!(
                (Some(&first.value), first.source),
                (e.value.as_ref(), e.source),
                "{e:?}"
            );
        }
        assert!(matches!(
            m.describe_topic_configs("nope"),
            Err(LogError::UnknownTopic { .. })
        ));
    }
}
