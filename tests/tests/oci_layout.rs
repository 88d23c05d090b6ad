//! `host-shim oci` on the real release module, read back the way a registry client and Istio's
//! fetcher read it: `index.json` → manifest → config and layer, every blob checked against its
//! digest and size, the layer gunzipped and untarred, and `plugin.wasm` compared byte for byte
//! with the module. The reading side is written here independently of `host-shim/src/oci.rs`.
mod envoy_support;

use std::io::Read as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn package(out: &Path, tag: &str) -> String {
    let output = Command::new(envoy_support::host_shim_binary())
        .args(["oci", env!("FILTER_WASM")])
        .arg(out)
        .args(["--tag", tag])
        .output()
        .expect("run host-shim oci");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "host-shim oci failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A blob by descriptor, checked against the descriptor's digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().expect("digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob present");
    assert_eq!(sha256(&bytes), digest, "blob content matches its digest");
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "descriptor size of {digest}"
    );
    bytes
}

fn read_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

#[test]
fn the_layout_unpacks_to_the_module_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("oci");
    let printed = package(&layout, "0.1.0");

    assert_eq!(
        read_json(&std::fs::read(layout.join("oci-layout")).unwrap()),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = read_json(&std::fs::read(layout.join("index.json")).unwrap());
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let descriptor = &manifests[0];
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"],
        "0.1.0"
    );
    assert!(
        printed.contains(descriptor["digest"].as_str().unwrap()),
        "the manifest digest is printed for pinning: {printed}"
    );

    let manifest = read_json(&blob(&layout, descriptor));
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config = read_json(&blob(&layout, &manifest["config"]));
    // Istio's compat variant: the last (here the only) layer is a tar+gzip holding plugin.wasm.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(&layout, &layers[0]);

    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(layer.as_slice())
        .read_to_end(&mut tar_bytes)
        .expect("the layer is gzip");
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        sha256(&tar_bytes),
        "diff_id is the uncompressed layer's digest"
    );
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut found = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        found.push((name, body));
    }
    assert_eq!(found.len(), 1, "one file in the layer");
    let (name, body) = &found[0];
    assert_eq!(name, "plugin.wasm");
    let module = std::fs::read(env!("FILTER_WASM")).unwrap();
    assert!(body == &module, "plugin.wasm differs from the module");

    // Every blob in the layout is one the manifest references: nothing stale to push.
    let mut on_disk: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    on_disk.sort();
    let mut referenced = vec![
        descriptor["digest"].as_str().unwrap().to_owned(),
        manifest["config"]["digest"].as_str().unwrap().to_owned(),
        layers[0]["digest"].as_str().unwrap().to_owned(),
    ];
    referenced.sort();
    assert_eq!(on_disk, referenced);
}

#[test]
fn packaging_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    package(&a, "v1");
    package(&b, "v1");
    for file in ["index.json", "oci-layout"] {
        assert_eq!(
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
            "{file}"
        );
    }
}
