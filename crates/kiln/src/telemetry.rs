use kiln_config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Kiln's own logs at info, every library's at warn: openraft, tonic and hyper log their
/// internals (whole Raft state structs) at info, which would drown the start-up log.
/// Targets match by prefix, so `kiln` covers every `kiln_*` crate.
const DEFAULT_FILTER: &str = "warn,kiln=info";

/// Installs the log subscriber: `RUST_LOG` filters (default [`DEFAULT_FILTER`]), `format` shapes.
pub(crate) fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
