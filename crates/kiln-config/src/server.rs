use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::units::{parse_bytes, parse_duration};

/// A role a `kiln server` process can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Target {
    /// Every role in one process.
    All,
    /// Ingest protocols, validation, placement.
    Distributor,
    /// Segment writer.
    Ingester,
    /// The block index.
    Metastore,
    /// Query frontend and backend.
    Querier,
    /// Merges segments into blocks and applies retention.
    Compactor,
}

impl Target {
    /// The target's name as `--target` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::All => "all",
            Target::Distributor => "distributor",
            Target::Ingester => "ingester",
            Target::Metastore => "metastore",
            Target::Querier => "querier",
            Target::Compactor => "compactor",
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The flags of `kiln server`. Every flag is also `KILN_<FLAG>` and a key of the config file.
#[derive(Clone, Debug, Args)]
pub struct ServerArgs {
    /// YAML config file whose keys are flag names (e.g. `ingester.flush-interval: 1s`).
    #[arg(long, env = "KILN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Roles to run, comma-separated.
    #[arg(
        long,
        env = "KILN_TARGET",
        value_enum,
        value_delimiter = ',',
        default_value = "all"
    )]
    pub target: Vec<Target>,

    /// Directory for local state: the metastore and, by default, the object store.
    #[arg(long = "data-dir", env = "KILN_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// HTTP listener: ingest, query, /ready and /metrics (HTTP/1.1 and h2c).
    #[arg(
        long = "http-addr",
        env = "KILN_HTTP_ADDR",
        default_value = "0.0.0.0:4040"
    )]
    pub http_addr: SocketAddr,

    /// Cluster-internal gRPC listener; opened only by roles that serve other processes.
    #[arg(
        long = "grpc-addr",
        env = "KILN_GRPC_ADDR",
        default_value = "0.0.0.0:9095"
    )]
    pub grpc_addr: SocketAddr,

    /// OTLP gRPC listener of the distributor (ProfilesService/Export).
    #[arg(
        long = "otlp-grpc-addr",
        env = "KILN_OTLP_GRPC_ADDR",
        default_value = "0.0.0.0:4317"
    )]
    pub otlp_grpc_addr: SocketAddr,

    /// OTLP/HTTP listener of the distributor (POST /v1development/profiles).
    #[arg(
        long = "otlp-http-addr",
        env = "KILN_OTLP_HTTP_ADDR",
        default_value = "0.0.0.0:4318"
    )]
    pub otlp_http_addr: SocketAddr,

    /// Object store URL: file:///dir, s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix or memory://. Default: file://<data-dir>/objects.
    #[arg(long, env = "KILN_STORAGE")]
    pub storage: Option<String>,

    /// Endpoint of an S3-compatible server, e.g. http://127.0.0.1:9000.
    #[arg(long = "storage.s3.endpoint", env = "KILN_STORAGE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region (default: AWS_REGION, else us-east-1).
    #[arg(long = "storage.s3.region", env = "KILN_STORAGE_S3_REGION")]
    pub s3_region: Option<String>,

    /// Use path-style S3 requests (needed by most S3-compatible servers).
    #[arg(long = "storage.s3.force-path-style", env = "KILN_STORAGE_S3_FORCE_PATH_STYLE",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false")]
    pub s3_force_path_style: bool,

    /// Allow plain-HTTP S3 endpoints.
    #[arg(long = "storage.s3.allow-http", env = "KILN_STORAGE_S3_ALLOW_HTTP",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false")]
    pub s3_allow_http: bool,

    /// S3 access key id (default: AWS_ACCESS_KEY_ID).
    #[arg(
        long = "storage.s3.access-key-id",
        env = "KILN_STORAGE_S3_ACCESS_KEY_ID"
    )]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key (default: AWS_SECRET_ACCESS_KEY).
    #[arg(
        long = "storage.s3.secret-access-key",
        env = "KILN_STORAGE_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub s3_secret_access_key: Option<String>,

    /// Base URL of a GCS-compatible server (an emulator); Google's when unset.
    #[arg(long = "storage.gcs.endpoint", env = "KILN_STORAGE_GCS_ENDPOINT")]
    pub gcs_endpoint: Option<String>,

    /// Service account JSON file for GCS (default: GOOGLE_SERVICE_ACCOUNT or
    /// GOOGLE_APPLICATION_CREDENTIALS, else the metadata server). For an emulator, a file with
    /// `"disable_oauth": true` sends requests without a token.
    #[arg(
        long = "storage.gcs.service-account-path",
        env = "KILN_STORAGE_GCS_SERVICE_ACCOUNT_PATH"
    )]
    pub gcs_service_account_path: Option<String>,

    /// Azure storage account (default: AZURE_STORAGE_ACCOUNT_NAME).
    #[arg(long = "storage.azure.account", env = "KILN_STORAGE_AZURE_ACCOUNT")]
    pub azure_account: Option<String>,

    /// Azure storage account key (default: AZURE_STORAGE_ACCOUNT_KEY).
    #[arg(
        long = "storage.azure.access-key",
        env = "KILN_STORAGE_AZURE_ACCESS_KEY",
        hide_env_values = true
    )]
    pub azure_access_key: Option<String>,

    /// Azure blob endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1 for Azurite.
    #[arg(long = "storage.azure.endpoint", env = "KILN_STORAGE_AZURE_ENDPOINT")]
    pub azure_endpoint: Option<String>,

    /// Use the Azurite emulator's well-known account and key.
    #[arg(long = "storage.azure.use-emulator", env = "KILN_STORAGE_AZURE_USE_EMULATOR",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false")]
    pub azure_use_emulator: bool,

    /// Samples an ingester buffers at most; pushes beyond it are refused (HTTP 429 with
    /// Retry-After, gRPC RESOURCE_EXHAUSTED) instead of queueing without bound.
    #[arg(
        long = "ingester.max-buffered-samples",
        env = "KILN_INGESTER_MAX_BUFFERED_SAMPLES",
        default_value = "20000000"
    )]
    pub ingester_max_buffered_samples: usize,

    /// How often an ingester flushes its buffer as a segment; pushes are acknowledged after it
    /// (docs/adr/0006-flush-interval.md).
    #[arg(long = "ingester.flush-interval", env = "KILN_INGESTER_FLUSH_INTERVAL",
          default_value = "250ms", value_parser = parse_duration)]
    pub ingester_flush_interval: Duration,

    /// The host:port other processes reach this one's --grpc-addr at, when it differs (for
    /// example when --grpc-addr listens on 0.0.0.0): what an ingester announces to distributors.
    #[arg(long = "advertise-addr", env = "KILN_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// How long a distributor waits for an ingester to acknowledge one push (flush interval,
    /// upload and registration included) before trying the next ingester.
    #[arg(long = "distributor.ingester-timeout", env = "KILN_DISTRIBUTOR_INGESTER_TIMEOUT",
          default_value = "30s", value_parser = parse_duration)]
    pub distributor_ingester_timeout: Duration,

    /// The metastore group: the host:port of every metastore node's --grpc-addr, comma-separated,
    /// or `dns+NAME:PORT` for a name that resolves to them (a headless Kubernetes service).
    /// Metastore nodes bootstrap the group from it; other roles find the metastore through it.
    /// Empty: a single-node group in this process.
    #[arg(
        long = "metastore.peers",
        env = "KILN_METASTORE_PEERS",
        value_delimiter = ','
    )]
    pub metastore_peers: Vec<String>,

    /// The address other metastore nodes reach this one at, when it differs from
    /// --advertise-addr or --grpc-addr.
    #[arg(
        long = "metastore.advertise-addr",
        env = "KILN_METASTORE_ADVERTISE_ADDR"
    )]
    pub metastore_advertise_addr: Option<String>,

    /// Snapshot the metastore state and compact the Raft log after this many entries.
    #[arg(
        long = "metastore.snapshot-logs",
        env = "KILN_METASTORE_SNAPSHOT_LOGS",
        default_value = "10000"
    )]
    pub metastore_snapshot_logs: u64,

    /// Raft heartbeat interval of the metastore.
    #[arg(long = "metastore.heartbeat-interval", env = "KILN_METASTORE_HEARTBEAT_INTERVAL",
          default_value = "250ms", value_parser = parse_duration)]
    pub metastore_heartbeat_interval: Duration,

    /// Shortest Raft election timeout (the longest is twice it): how soon followers elect a new
    /// leader after the old one went silent.
    #[arg(long = "metastore.election-timeout", env = "KILN_METASTORE_ELECTION_TIMEOUT",
          default_value = "1s", value_parser = parse_duration)]
    pub metastore_election_timeout: Duration,

    /// Flame graph node limit when a query names none (`max-nodes`); 0 means the server's
    /// maximum (--querier.max-flamegraph-nodes-max).
    #[arg(
        long = "querier.max-flamegraph-nodes",
        env = "KILN_QUERIER_MAX_FLAMEGRAPH_NODES",
        default_value = "8192"
    )]
    pub querier_max_flamegraph_nodes: usize,

    /// The most flame graph nodes any query gets: a larger `max-nodes`, and a `max-nodes` of 0
    /// or less, mean this many (Pyroscope's max_flamegraph_nodes_max).
    #[arg(
        long = "querier.max-flamegraph-nodes-max",
        env = "KILN_QUERIER_MAX_FLAMEGRAPH_NODES_MAX",
        default_value = "1048576",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub querier_max_flamegraph_nodes_max: u64,

    /// Points of one series a SelectSeries may return; more is refused (use a larger step).
    #[arg(
        long = "querier.max-points-per-series",
        env = "KILN_QUERIER_MAX_POINTS_PER_SERIES",
        default_value = "100000",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub querier_max_points_per_series: u64,

    /// Largest query response, e.g. 128MiB (its protobuf encoding; JSON for Pyroscope's HTTP
    /// endpoints); a larger one is refused, naming the limit.
    #[arg(long = "querier.max-response-bytes", env = "KILN_QUERIER_MAX_RESPONSE_BYTES",
          default_value = "128MiB", value_parser = parse_bytes)]
    pub querier_max_response_bytes: usize,

    /// Longest time range of a query, e.g. 31d; 0s means no limit (the range is still checked
    /// for overflow, and retention clamps its start).
    #[arg(long = "querier.max-query-range", env = "KILN_QUERIER_MAX_QUERY_RANGE",
          default_value = "0s", value_parser = parse_duration)]
    pub querier_max_query_range: Duration,

    /// Memory for the decoded samples (and profiles) of blocks cached by the querier, e.g.
    /// 512MiB.
    #[arg(long = "querier.cache-bytes", env = "KILN_QUERIER_CACHE_BYTES",
          default_value = "512MiB", value_parser = parse_bytes)]
    pub querier_cache_bytes: usize,

    /// Memory for the series sections (label sets) the querier caches for label calls, and the
    /// heads (series and profiles) that selects choose row groups by, e.g. 64MiB.
    #[arg(long = "querier.series-cache-bytes", env = "KILN_QUERIER_SERIES_CACHE_BYTES",
          default_value = "64MiB", value_parser = parse_bytes)]
    pub querier_series_cache_bytes: usize,

    /// Memory for regions' directories (their tables of contents, which locate each section)
    /// and samples sections' footers (Parquet metadata, which locate row groups): a section
    /// read again after its cache dropped it is then one ranged GET.
    #[arg(long = "querier.directory-cache-bytes", env = "KILN_QUERIER_DIRECTORY_CACHE_BYTES",
          default_value = "16MiB", value_parser = parse_bytes)]
    pub querier_directory_cache_bytes: usize,

    /// Memory for the decoded symbols (functions, locations, stacks) of blocks, shared by
    /// every query of a region whatever samples it reads, e.g. 128MiB.
    #[arg(long = "querier.symbols-cache-bytes", env = "KILN_QUERIER_SYMBOLS_CACHE_BYTES",
          default_value = "128MiB", value_parser = parse_bytes)]
    pub querier_symbols_cache_bytes: usize,

    /// How long one query may run before it is stopped and answered with 504 (gRPC
    /// DEADLINE_EXCEEDED).
    #[arg(long = "querier.timeout", env = "KILN_QUERIER_TIMEOUT",
          default_value = "2m", value_parser = parse_duration)]
    pub querier_timeout: Duration,

    /// How long one part of a query (a few blocks) may run on another querier before it is
    /// tried on the next; a querier that dies is noticed sooner, by its closed connection or
    /// its unanswered HTTP/2 pings. 0s: only the query's own timeout.
    #[arg(long = "querier.part-timeout", env = "KILN_QUERIER_PART_TIMEOUT",
          default_value = "1m", value_parser = parse_duration)]
    pub querier_part_timeout: Duration,

    /// Queries one querier runs at once; more are answered with 429 (gRPC RESOURCE_EXHAUSTED)
    /// at once instead of queueing. 0 means no limit.
    #[arg(
        long = "querier.max-concurrent",
        env = "KILN_QUERIER_MAX_CONCURRENT",
        default_value = "8"
    )]
    pub querier_max_concurrent: usize,

    /// Threads that decode blocks and merge query results, apart from the threads that serve
    /// requests, flush segments and write the metastore. 0: every core when the process runs
    /// no ingester or metastore, else half of them (at least one).
    #[arg(
        long = "querier.merge-threads",
        env = "KILN_QUERIER_MERGE_THREADS",
        default_value = "0"
    )]
    pub querier_merge_threads: usize,

    /// Rows one SQL query (`POST /api/v1/sql`) may return; more is refused with a message to
    /// aggregate or add LIMIT.
    #[arg(
        long = "sql.max-rows",
        env = "KILN_SQL_MAX_ROWS",
        default_value = "100000"
    )]
    pub sql_max_rows: usize,

    /// Memory one SQL query's operators (aggregations, sorts, joins) may hold, e.g. 256MiB;
    /// a query over it is refused.
    #[arg(long = "sql.memory-bytes", env = "KILN_SQL_MEMORY_BYTES",
          default_value = "256MiB", value_parser = parse_bytes)]
    pub sql_memory_bytes: usize,

    /// Whether queriers serve the web UI at `/`.
    #[arg(long = "ui.enabled", env = "KILN_UI_ENABLED",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "true")]
    pub ui_enabled: bool,

    /// Serve the web UI's files from this folder (crates/kiln-ui/assets in a checkout) instead
    /// of the copies built into the binary: for working on the UI without rebuilding.
    #[arg(long = "ui.dir", env = "KILN_UI_DIR")]
    pub ui_dir: Option<std::path::PathBuf>,

    /// Tenants named at once in the labels of per-tenant metrics (the others share the label
    /// `#other`), and tenants a distributor keeps ingestion-rate and active-series state for
    /// (beyond it, the least recently seen tenant's state is dropped). Tenant ids are chosen by
    /// clients: this bounds what random ids cost.
    #[arg(
        long = "tenants.max-tracked",
        env = "KILN_TENANTS_MAX_TRACKED",
        default_value = "1000"
    )]
    pub tenants_max_tracked: usize,

    /// A tenant's per-tenant metric series are dropped this long after its last use, and its
    /// place among --tenants.max-tracked freed.
    #[arg(long = "tenants.idle-timeout", env = "KILN_TENANTS_IDLE_TIMEOUT",
          default_value = "15m", value_parser = parse_duration)]
    pub tenants_idle_timeout: Duration,

    /// Per-tenant limits: the defaults of every tenant.
    #[command(flatten)]
    pub limits: crate::Limits,

    /// Compaction and retention.
    #[command(flatten)]
    pub compaction: crate::CompactionArgs,

    /// Authentication, TLS, the cluster port and the servers' limits.
    #[command(flatten)]
    pub security: crate::SecurityArgs,

    /// YAML file of per-tenant overrides of the limits (`overrides: {tenant: {limit: value}}`),
    /// re-read every --runtime-config.reload-period without a restart.
    #[arg(long = "runtime-config", env = "KILN_RUNTIME_CONFIG")]
    pub runtime_config: Option<PathBuf>,

    /// How often the runtime config file is re-read.
    #[arg(long = "runtime-config.reload-period", env = "KILN_RUNTIME_CONFIG_RELOAD_PERIOD",
          default_value = "10s", value_parser = parse_duration)]
    pub runtime_config_reload_period: Duration,

    /// Take the tenant from X-Scope-OrgID on every request; otherwise all data is `anonymous`.
    #[arg(long = "auth.multitenancy-enabled", env = "KILN_AUTH_MULTITENANCY_ENABLED",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false")]
    pub multitenancy_enabled: bool,

    /// After SIGTERM, how long requests in flight may take before the process exits anyway
    /// (pushes are flushed at once; this bounds long queries).
    #[arg(long = "shutdown-timeout", env = "KILN_SHUTDOWN_TIMEOUT",
          default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// OTLP/gRPC endpoint (`http://host:4317`) that traces of Kiln's own requests are exported
    /// to; none: no traces are recorded.
    #[arg(long = "tracing.otlp-endpoint", env = "KILN_TRACING_OTLP_ENDPOINT")]
    pub tracing_otlp_endpoint: Option<String>,

    /// Share of traces kept, from 0 to 1, decided where a trace starts (a trace continued from
    /// another process follows that process's decision).
    #[arg(long = "tracing.sample-ratio", env = "KILN_TRACING_SAMPLE_RATIO",
          default_value = "1", value_parser = parse_ratio)]
    pub tracing_sample_ratio: f64,

    /// Log format.
    #[arg(
        long = "log-format",
        env = "KILN_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// A ratio from 0 to 1.
fn parse_ratio(value: &str) -> Result<f64, String> {
    let ratio: f64 = value
        .parse()
        .map_err(|_| format!("not a number: {value:?}"))?;
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

impl ServerArgs {
    /// True when this process runs `target` (directly or through `all`).
    pub fn runs(&self, target: Target) -> bool {
        self.target.contains(&Target::All) || self.target.contains(&target)
    }

    /// The object store URL, defaulting to `file://<data-dir>/objects` (made absolute).
    pub fn storage_url(&self) -> std::io::Result<String> {
        if let Some(url) = &self.storage {
            return Ok(url.clone());
        }
        let dir = std::path::absolute(self.data_dir.join("objects"))?;
        Ok(format!("file://{}", dir.display()))
    }
}
