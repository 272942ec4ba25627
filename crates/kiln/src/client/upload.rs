//! `kiln upload`: sends profile files to a server's `/ingest`, one request per file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::{ApiClient, ServerAddr};

/// Flags of `kiln upload`.
#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    #[command(flatten)]
    server: ServerAddr,
    /// A label for every uploaded profile, `name=value`; repeat for more. `service_name=…`
    /// names the service (by default each file's name without its extensions).
    #[arg(long = "label", short = 'l', value_name = "NAME=VALUE")]
    labels: Vec<String>,
    /// The files' format; `auto` tells pprof, JFR and folded stacks apart by their contents.
    #[arg(long, value_enum, default_value = "auto")]
    format: FileFormat,
    /// When the profiles were taken (for folded files, which carry no time; pprof and JFR
    /// carry their own): `now`, `now-1h`, Unix seconds or RFC 3339.
    #[arg(long)]
    from: Option<String>,
    /// End of the profiled interval for folded files.
    #[arg(long)]
    until: Option<String>,
    /// Profile files: pprof (plain or gzipped), JFR, or folded stacks (`a;b;c 42` per line).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// What is in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FileFormat {
    /// Decide by the contents.
    Auto,
    /// pprof's profile.proto, plain or gzipped.
    Pprof,
    /// A Java Flight Recorder recording.
    Jfr,
    /// Folded (collapsed) stacks: `frame;frame;frame value` per line.
    Folded,
}

impl FileFormat {
    /// The format of `bytes` as `auto` decides it: the JFR magic, gzip (pprof), text made of
    /// `stack value` lines (folded), anything else pprof.
    fn detect(bytes: &[u8]) -> Self {
        if bytes.starts_with(b"FLR\0") {
            Self::Jfr
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            Self::Pprof
        } else if looks_folded(bytes) {
            Self::Folded
        } else {
            Self::Pprof
        }
    }

    /// The `format` parameter of `/ingest`.
    fn ingest_name(self) -> &'static str {
        match self {
            Self::Auto | Self::Pprof => "pprof",
            Self::Jfr => "jfr",
            Self::Folded => "folded",
        }
    }
}

/// Whether the first lines of `bytes` are UTF-8 `stack value` lines.
fn looks_folded(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // The cut may split a character: judge what decodes.
        Err(e) if e.valid_up_to() > 0 => {
            std::str::from_utf8(&head[..e.valid_up_to()]).expect("valid up to here")
        }
        Err(_) => return false,
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
    lines.peek().is_some()
        && lines.take(8).all(|line| {
            line.trim_end()
                .rsplit_once(' ')
                .is_some_and(|(_, n)| n.parse::<u64>().is_ok())
        })
}

/// The service of a file by default: its name without known extensions
/// (`checkout.cpu.pb.gz` → `checkout.cpu`).
fn default_service(path: &Path) -> String {
    let mut name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    const EXTENSIONS: [&str; 9] = [
        ".gz",
        ".pb",
        ".pprof",
        ".prof",
        ".jfr",
        ".folded",
        ".collapsed",
        ".txt",
        ".proto",
    ];
    while let Some(ext) = EXTENSIONS.iter().find(|ext| name.ends_with(*ext)) {
        if name.len() == ext.len() {
            break;
        }
        name.truncate(name.len() - ext.len());
    }
    name
}

/// `/ingest`'s `name`: the service, then the other labels in braces.
fn ingest_name(service: &str, labels: &[(String, String)]) -> String {
    let others: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k != "service_name")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if others.is_empty() {
        service.to_string()
    } else {
        format!("{service}{{{}}}", others.join(","))
    }
}

fn parse_labels(labels: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    labels
        .iter()
        .map(|label| {
            let (name, value) = label
                .split_once('=')
                .with_context(|| format!("invalid --label {label:?}: expected name=value"))?;
            kiln_model::validate_label_name(name)
                .with_context(|| format!("invalid --label {label:?}"))?;
            if value.contains(['{', '}', ',', '"']) {
                bail!("invalid --label {label:?}: the value may not contain {{ }} , or \"");
            }
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

/// Uploads every file, then prints what was accepted and what was refused and why. Fails when
/// any file was refused.
pub(crate) async fn run(args: UploadArgs) -> anyhow::Result<()> {
    let labels = parse_labels(&args.labels)?;
    let service = labels
        .iter()
        .find(|(k, _)| k == "service_name")
        .map(|(_, v)| v.clone());
    let client = ApiClient::new(&args.server)?;
    let progress = if args.files.len() > 1 {
        let bar = ProgressBar::new(args.files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} files  {wide_msg}")
                .expect("a valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for path in &args.files {
        progress.set_message(path.display().to_string());
        let service = service.clone().unwrap_or_else(|| default_service(path));
        match upload(&client, path, &service, &labels, &args).await {
            Ok(format) => accepted.push((path, service, format)),
            Err(Failure::Stop(e)) => {
                progress.abandon();
                return Err(e);
            }
            Err(Failure::File(reason)) => refused.push((path, reason)),
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    for (path, service, format) in &accepted {
        println!(
            "accepted  {}  ({}, service {service})",
            path.display(),
            format.ingest_name()
        );
    }
    for (path, reason) in &refused {
        println!("refused   {}  {reason}", path.display());
    }
    println!(
        "{} of {} files accepted by {}",
        accepted.len(),
        args.files.len(),
        client.url()
    );
    if refused.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} of {} files were refused",
            refused.len(),
            args.files.len()
        )
    }
}

/// Why one file was not uploaded: a reason that concerns it alone, or one that stops the
/// whole upload (the server is away, the credentials are wrong).
enum Failure {
    File(String),
    Stop(anyhow::Error),
}

async fn upload(
    client: &ApiClient,
    path: &Path,
    service: &str,
    labels: &[(String, String)],
    args: &UploadArgs,
) -> Result<FileFormat, Failure> {
    let bytes = std::fs::read(path).map_err(|e| Failure::File(format!("cannot read it: {e}")))?;
    let format = match args.format {
        FileFormat::Auto => FileFormat::detect(&bytes),
        format => format,
    };
    let name = ingest_name(service, labels);
    let mut query = vec![("name", name.as_str()), ("format", format.ingest_name())];
    if let Some(from) = &args.from {
        query.push(("from", from));
    }
    if let Some(until) = &args.until {
        query.push(("until", until));
    }
    match client.post("/ingest", &query, bytes).await {
        Ok(_) => Ok(format),
        Err(e) if e.is_per_request() => Err(Failure::File(e.to_string())),
        Err(e) => Err(Failure::Stop(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_contents() {
        assert_eq!(FileFormat::detect(b"FLR\0\0\x02"), FileFormat::Jfr);
        assert_eq!(FileFormat::detect(&[0x1f, 0x8b, 8, 0]), FileFormat::Pprof);
        assert_eq!(
            FileFormat::detect(b"main;work 42\nmain;idle 8\n"),
            FileFormat::Folded
        );
        assert_eq!(
            FileFormat::detect(&[0x0a, 0x04, 0x08, 0x01]),
            FileFormat::Pprof
        );
        assert_eq!(FileFormat::detect(b"main;work forty\n"), FileFormat::Pprof);
    }

    #[test]
    fn service_defaults_to_the_file_name_without_extensions() {
        assert_eq!(
            default_service(Path::new("/x/checkout.cpu.pb.gz")),
            "checkout.cpu"
        );
        assert_eq!(default_service(Path::new("app.jfr")), "app");
        assert_eq!(default_service(Path::new("stacks.folded")), "stacks");
        assert_eq!(default_service(Path::new(".gz")), ".gz");
    }

    #[test]
    fn labels_go_in_braces_after_the_service() {
        let labels = parse_labels(&["env=prod".into(), "service_name=api".into()]).unwrap();
        assert_eq!(ingest_name("api", &labels), "api{env=prod}");
        assert_eq!(ingest_name("api", &[]), "api");
        assert!(parse_labels(&["noequals".into()]).is_err());
        assert!(parse_labels(&["1bad=x".into()]).is_err());
        assert!(parse_labels(&["env=a,b".into()]).is_err());
    }
}
