//! TLS against a registry whose certificate comes from a private CA: refused by default with a
//! hint, accepted with `--cert-dir`, with the CA in `$XDG_CONFIG_HOME/containers/certs.d/HOST`,
//! and (unverified) with `--tls-verify=false`. Its own test binary, since it sets
//! `XDG_CONFIG_HOME` for the process.

mod common;

use common::{import, prerequisites, store, Registry};
use rbox_registry::{NoProgress, PullOptions, PullPolicy, PushOptions, TransportOptions};

fn opts(t: TransportOptions) -> PullOptions {
    PullOptions {
        transport: t,
        policy: PullPolicy::Always,
        ..Default::default()
    }
}

#[test]
fn private_ca_via_cert_dir_and_certs_d() {
    if !prerequisites() || !common::require("openssl", common::have("openssl")) {
        return;
    }
    let reg = Registry::start_with(None, true);
    let ca = reg.dir.path().join("certs/ca.crt");
    let d = tempfile::tempdir().unwrap();
    let cert_dir = d.path().join("cert-dir");
    std::fs::create_dir(&cert_dir).unwrap();
    std::fs::copy(&ca, cert_dir.join("ca.crt")).unwrap();
    let base = TransportOptions {
        registries_conf: Some("/dev/null".into()),
        ..Default::default()
    };
    let with_dir = TransportOptions {
        cert_dir: Some(cert_dir.clone()),
        ..base.clone()
    };

    let src = store(&d.path().join("src"));
    import(&src, "tls:1", "tls", 4096);
    let name = reg.image("t/tls:1");
    rbox_registry::push(
        &src,
        "tls:1",
        Some(&name),
        &PushOptions {
            transport: with_dir.clone(),
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();

    let dst = store(&d.path().join("dst"));
    // The CA is unknown: refused, with a hint.
    let e = rbox_registry::pull(&dst, &name, &opts(base.clone()), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("--cert-dir"), "{e}");
    // --cert-dir.
    rbox_registry::pull(&dst, &name, &opts(with_dir), &NoProgress).unwrap();
    // --tls-verify=false: TLS without verification.
    let insecure = TransportOptions {
        tls_verify: Some(false),
        ..base.clone()
    };
    rbox_registry::pull(&dst, &name, &opts(insecure), &NoProgress).unwrap();
    // certs.d under $XDG_CONFIG_HOME, as containers-certs.d(5) describes.
    let config = d.path().join("config");
    let host_dir = config.join("containers/certs.d").join(&reg.addr);
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(&ca, host_dir.join("ca.crt")).unwrap();
    std::env::set_var("XDG_CONFIG_HOME", &config);
    rbox_registry::pull(&dst, &name, &opts(base), &NoProgress).unwrap();
}
