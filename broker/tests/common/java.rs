//! The Java Kafka client driver (`broker/tests/java/SluiceJavaClient.java`, on
//! `org.apache.kafka:kafka-clients` 4.x fetched by `scripts/java-clients.sh`), the share
//! consumer's and a Kafka Streams application (`SluiceShareClient.java`, `SluiceStreamsApp.java`,
//! on the same version of `kafka-streams`), compiled with javac
//! at test time into `$SLUICE_CACHE/java-prog-<hash of the source and the jar set>/`, and Apache
//! Kafka's own command-line tools (`kafka-topics.sh`, `kafka-reassign-partitions.sh`: their main
//! classes from the jars `bench/kafka/setup.sh` fetches). Every run is bounded in time.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::drivers::{
    cached_build, client_setup_dir, fnv1a, installed_path, run_bounded, run_build, run_within,
    Finished,
};

/// The longest a Java driver run may take.
pub const RUN: Duration = Duration::from_secs(120);

/// The jar directory of `scripts/java-clients.sh` (env `SLUICE_JAVA_CLIENTS_DIR`, else the
/// script's last stdout line).
pub fn jars_dir() -> Result<PathBuf, String> {
    client_setup_dir("java-clients.sh", "SLUICE_JAVA_CLIENTS_DIR", "jars")
}

/// The classpath (compiled driver + client jars), compiling the driver when its cache is cold.
pub fn classpath() -> String {
    static CP: OnceLock<Result<String, String>> = OnceLock::new();
    CP.get_or_init(|| {
        let jars = jars_dir()?.join("jars");
        let java_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java");
        let srcs = [
            java_dir.join("SluiceJavaClient.java"),
            java_dir.join("SluiceShareClient.java"),
            java_dir.join("SluiceStreamsApp.java"),
            java_dir.join("SluiceTxnClient.java"),
        ];
        let mut code = Vec::new();
        for src in &srcs {
            code.extend(std::fs::read(src).map_err(|e| format!("read {}: {e}", src.display()))?);
        }
        let mut names: Vec<String> = std::fs::read_dir(&jars)
            .map_err(|e| format!("read {}: {e}", jars.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        let key = fnv1a(&[&code, names.join(",").as_bytes()]);
        let jar_glob = format!("{}/*", jars.display());
        let dir = cached_build("java-prog", key, "SluiceTxnClient.class", |out| {
            run_build(
                Command::new("javac")
                    .args(["-encoding", "UTF-8", "-d"])
                    .arg(out)
                    .args(["-cp", &jar_glob])
                    .args(&srcs),
                &format!("javac {}", java_dir.display()),
            )
        })?;
        Ok(format!("{}:{jar_glob}", dir.display()))
    })
    .clone()
    .unwrap_or_else(|e| {
        panic!("the Java Kafka client is needed: {e}. Run scripts/java-clients.sh (needs java, javac and mvn; or set SLUICE_JAVA_CLIENTS_DIR)")
    })
}

pub fn java_cmd(args: &[&str]) -> Command {
    java_main("SluiceJavaClient", args)
}

/// The share-consumer driver (`tests/java/SluiceShareClient.java`) with `args`.
pub fn share_cmd(args: &[&str]) -> Command {
    java_main("SluiceShareClient", args)
}

/// The Kafka Streams application (`tests/java/SluiceStreamsApp.java`) with `args`.
pub fn streams_cmd(args: &[&str]) -> Command {
    java_main("SluiceStreamsApp", args)
}

/// The transactions driver (`tests/java/SluiceTxnClient.java`) with `args`.
pub fn txn_cmd(args: &[&str]) -> Command {
    java_main("SluiceTxnClient", args)
}

fn java_main(main: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        &classpath(),
        main,
    ])
    .args(args);
    cmd
}

/// Runs the driver; panics with its output unless it exits 0 within `RUN`.
pub fn run_java(args: &[&str]) -> Finished {
    run_bounded(java_cmd(args), &format!("java {}", args.join(" ")), RUN)
}

/// Runs the driver within `RUN` (killed after); returns whether it exited 0, and its output.
pub fn try_java(args: &[&str]) -> (bool, Finished) {
    let (status, out) = run_within(java_cmd(args), &format!("java {}", args.join(" ")), RUN);
    (status.is_some_and(|s| s.success()), out)
}

/// Runs the driver expecting it to fail; returns its stderr. Panics if it succeeds or hangs.
pub fn java_fails(args: &[&str]) -> String {
    let (status, out) = run_within(java_cmd(args), &format!("java {}", args.join(" ")), RUN);
    match status {
        None => panic!(
            "java {} did not finish within {RUN:?}:\n{}",
            args.join(" "),
            out.stderr
        ),
        Some(s) if s.success() => panic!(
            "java {} was expected to fail but succeeded:\n{}",
            args.join(" "),
            out.stdout
        ),
        Some(_) => out.stderr,
    }
}

/// The driver's commands against the broker at `bootstrap`: `<command> --bootstrap <it> …`,
/// each with the client properties `props` (`--prop k=v`, e.g. the security settings).
pub struct JavaDriver {
    pub bootstrap: String,
    pub props: Vec<String>,
}

impl JavaDriver {
    pub fn at(bootstrap: &str) -> JavaDriver {
        JavaDriver::with_props(bootstrap, &[])
    }

    /// A driver whose every client (producer, consumer, admin) is given `props`.
    pub fn with_props(bootstrap: &str, props: &[(&str, &str)]) -> JavaDriver {
        JavaDriver {
            bootstrap: bootstrap.to_string(),
            props: props.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        }
    }

    /// A client of a SASL_SSL listener that authenticates as `user` with SCRAM-SHA-512 and
    /// trusts the PEM CA certificates `ca_pem` (not a file: `ssl.truststore.certificates`).
    pub fn sasl_ssl_scram_sha_512(
        bootstrap: &str,
        user: &str,
        password: &str,
        ca_pem: &str,
    ) -> JavaDriver {
        let props = scram_sha_512_props(user, password, ssl_truststore_certificates(ca_pem));
        let borrowed: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
        JavaDriver::with_props(bootstrap, &borrowed)
    }

    pub fn command<T>(&self, command: &str, args: &[&str], run: fn(&[&str]) -> T) -> T {
        let mut all = vec![command, "--bootstrap", self.bootstrap.as_str()];
        all.extend_from_slice(args);
        for p in &self.props {
            all.extend_from_slice(&["--prop", p.as_str()]);
        }
        run(&all)
    }

    /// One AdminClient operation (`args` starts with its name).
    pub fn admin(&self, args: &[&str]) -> Finished {
        self.command("admin", args, run_java)
    }

    /// An admin operation that may fail (e.g. while a group does not exist yet).
    pub fn try_admin(&self, args: &[&str]) -> (bool, Finished) {
        self.command("admin", args, try_java)
    }

    /// An admin operation that must fail; its stderr.
    pub fn admin_fails(&self, args: &[&str]) -> String {
        self.command("admin", args, java_fails)
    }

    /// Produces the test records `records` to `topic`, with `extra` options.
    pub fn produce(&self, topic: &str, records: Range<u64>, extra: &[&str]) -> Finished {
        self.producing(topic, records, extra, run_java)
    }

    /// A produce that must fail; its stderr.
    pub fn produce_fails(&self, topic: &str, records: Range<u64>, extra: &[&str]) -> String {
        self.producing(topic, records, extra, java_fails)
    }

    pub fn producing<T>(
        &self,
        topic: &str,
        records: Range<u64>,
        extra: &[&str],
        run: fn(&[&str]) -> T,
    ) -> T {
        let (from, to) = (records.start.to_string(), records.end.to_string());
        let mut args = vec!["--topic", topic, "--from", &from, "--to", &to];
        args.extend_from_slice(extra);
        self.command("produce", &args, run)
    }

    /// A group consumer that reads `count` records of `topic` in `group` and commits them, with
    /// `extra` options.
    pub fn consume(&self, topic: &str, group: &str, count: u64, extra: &[&str]) -> Finished {
        self.consuming(topic, group, count, extra, run_java)
    }

    /// A consume that must fail; its stderr.
    pub fn consume_fails(&self, topic: &str, group: &str, count: u64, extra: &[&str]) -> String {
        self.consuming(topic, group, count, extra, java_fails)
    }

    pub fn consuming<T>(
        &self,
        topic: &str,
        group: &str,
        count: u64,
        extra: &[&str],
        run: fn(&[&str]) -> T,
    ) -> T {
        let count = count.to_string();
        let mut args = vec!["--topic", topic, "--group", group, "--count", &count];
        args.extend_from_slice(extra);
        self.command("consume", &args, run)
    }
}

/// The Java client's trust settings for the PEM CA certificates `ca_pem` given inline.
pub fn ssl_truststore_certificates(ca_pem: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ssl.truststore.type", "PEM".to_string()),
        ("ssl.truststore.certificates", ca_pem.to_string()),
    ]
}

/// The Java client's SASL_SSL settings to authenticate as `user` with SCRAM-SHA-512, plus
/// `trust` (how the broker's certificate is verified).
pub fn scram_sha_512_props(
    user: &str,
    password: &str,
    trust: Vec<(&'static str, String)>,
) -> Vec<(&'static str, String)> {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut props = vec![
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanism", "SCRAM-SHA-512".to_string()),
        (
            "sasl.jaas.config",
            format!(
                "org.apache.kafka.common.security.scram.ScramLoginModule required \
                 username=\"{}\" password=\"{}\";",
                quote(user),
                quote(password)
            ),
        ),
    ];
    props.extend(trust);
    props
}

// ---------------------------------------------------------------------------------------------
// Apache Kafka's command-line tools

/// The Apache Kafka jars (broker, kafka-tools, clients): env `SLUICE_KAFKA_LIB`, else the last
/// stdout line of `bench/kafka/setup.sh` (which fetches them from Maven Central, cached).
fn kafka_lib_dir() -> String {
    static LIB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = LIB
        .get_or_init(|| installed_path("bench/kafka/setup.sh", "SLUICE_KAFKA_LIB", ""))
        .clone()
        .unwrap_or_else(|e| {
            panic!("Apache Kafka's tools are needed: {e}. Run bench/kafka/setup.sh (needs java and mvn; or set SLUICE_KAFKA_LIB to its lib directory)")
        });
    dir.display().to_string()
}

/// `java <main_class> <args>` on the Kafka jars, e.g.
/// `org.apache.kafka.tools.TopicCommand` for `kafka-topics.sh`.
pub fn kafka_tool_cmd(main_class: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-cp",
        &format!("{}/*", kafka_lib_dir()),
        main_class,
    ])
    .args(args);
    cmd
}

/// Writes the client properties `props` as a Java properties file at `path` (a tool's
/// `--command-config`); returns the path.
pub fn write_client_properties(path: &Path, props: &[(&str, String)]) -> String {
    let text: String = props
        .iter()
        .map(|(k, v)| format!("{k}={}\n", v.replace('\\', "\\\\").replace('\n', "\\n")))
        .collect();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.display().to_string()
}

/// Runs a Kafka tool; panics with its output unless it exits 0 within [`RUN`].
pub fn kafka_tool(main_class: &str, args: &[&str]) -> Finished {
    let what = format!("{main_class} {}", args.join(" "));
    run_bounded(kafka_tool_cmd(main_class, args), &what, RUN)
}

/// Runs a Kafka tool within [`RUN`]: whether it exited 0, and its output.
pub fn try_kafka_tool(main_class: &str, args: &[&str]) -> (bool, Finished) {
    let what = format!("{main_class} {}", args.join(" "));
    let (status, out) = run_within(kafka_tool_cmd(main_class, args), &what, RUN);
    (status.is_some_and(|s| s.success()), out)
}

/// `kafka-configs.sh --bootstrap-server <bootstrap> <args>` (Kafka's ConfigCommand) within
/// [`RUN`]: whether it exited 0, and what it printed (stdout, then stderr).
pub fn kafka_configs(bootstrap: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--bootstrap-server", bootstrap];
    all.extend_from_slice(args);
    let (ok, out) = try_kafka_tool("kafka.admin.ConfigCommand", &all);
    (ok, format!("{}{}", out.stdout, out.stderr))
}
