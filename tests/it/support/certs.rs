//! Certificates for TLS tests, made by openssl: a CA and certificates it signs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its key, as PEM files.
pub(crate) struct Pem {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A self-signed CA named `name`.
pub(crate) fn authority(dir: &Path, name: &str) -> Pem {
    let pem = Pem {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        pem.key.to_str().unwrap(),
        "-out",
        pem.cert.to_str().unwrap(),
    ]);
    pem
}

/// A certificate for 127.0.0.1 and localhost, for servers and clients, signed by `ca`.
pub(crate) fn issue(dir: &Path, name: &str, ca: &Pem) -> Pem {
    issue_for(dir, name, ca, &["IP:127.0.0.1", "DNS:localhost"])
}

/// A certificate for the subject alternative names `names` (`IP:…`, `DNS:…`), for servers and
/// clients, signed by `ca`.
pub(crate) fn issue_for(dir: &Path, name: &str, ca: &Pem, names: &[&str]) -> Pem {
    let pem = Pem {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    let csr = dir.join(format!("{name}.csr"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\n",
            names.join(",")
        ),
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        pem.key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-days",
        "2",
        "-CA",
        ca.cert.to_str().unwrap(),
        "-CAkey",
        ca.key.to_str().unwrap(),
        "-CAcreateserial",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        pem.cert.to_str().unwrap(),
    ]);
    pem
}
