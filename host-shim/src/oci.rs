//! `host-shim oci`: packages the filter module as an OCI image layout on disk, without Docker,
//! in the form Istio's wasm image fetcher accepts (`pkg/wasm/imagefetcher.go`): the *compat*
//! variant of the Wasm image spec, one `application/vnd.oci.image.layer.v1.tar+gzip` layer
//! holding `plugin.wasm`, with an `application/vnd.oci.image.config.v1+json` config.
//!
//! ```text
//! <out>/oci-layout                  {"imageLayoutVersion":"1.0.0"}
//! <out>/index.json                  one manifest, tagged with `--tag` (org.opencontainers.image.ref.name)
//! <out>/blobs/sha256/<manifest>     the image manifest
//! <out>/blobs/sha256/<config>       the image config
//! <out>/blobs/sha256/<layer>        tar.gz of plugin.wasm
//! ```
//!
//! The output is a function of the module's bytes and the tag alone (mtime 0, uid/gid 0, mode
//! 0644, no gzip name or time), so the same module always gives the same manifest digest, and a
//! WasmPlugin can pin it (`url: oci://…@sha256:<digest>`). `oras cp --from-oci-layout` or
//! `crane push` take the directory as it is.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file Istio's fetcher looks for in the layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";

#[derive(Debug, clap::Args)]
pub struct OciArgs {
    /// The filter module (`make wasm` builds it).
    pub wasm: PathBuf,
    /// The OCI image layout directory to write (created; an existing layout is replaced).
    pub out: PathBuf,
    /// The tag recorded in index.json, which `oras cp --from-oci-layout <out>:<tag>` reads.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
}

/// A content-addressed blob.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob { media_type, bytes }
    }

    /// `sha256:<hex>`
    pub fn digest(&self) -> String {
        sha256(&self.bytes)
    }

    /// The OCI descriptor of this blob.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
        })
    }

    /// The descriptor with one annotation.
    fn annotated(&self, key: &str, value: &str) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
            "annotations": { key: value },
        })
    }
}

/// The image, ready to be written.
#[derive(Debug, Clone)]
pub struct Image {
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Blob,
    pub index: Vec<u8>,
}

pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The tar holding only `plugin.wasm`, with every header field fixed.
fn layer_tar(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(PLUGIN_FILE)?;
    header.set_size(u64::try_from(wasm.len())?);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, wasm)?;
    Ok(builder.into_inner()?)
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    // No file name, mtime 0: the compressed bytes depend on the input alone.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// Builds the compat-variant image of `wasm`, tagged `tag` in the index.
pub fn build(wasm: &[u8], tag: &str) -> anyhow::Result<Image> {
    if !wasm.starts_with(b"\0asm") {
        bail!("not a WebAssembly module (no \\0asm magic)");
    }
    if tag.is_empty() {
        bail!("the tag is empty");
    }
    let tar = layer_tar(wasm)?;
    let diff_id = sha256(&tar);
    let layer = Blob::new(LAYER_MEDIA_TYPE, gzip(&tar)?);
    let config = Blob::new(
        CONFIG_MEDIA_TYPE,
        serde_json::to_vec(&json!({
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        }))?,
    );
    let manifest = Blob::new(
        MANIFEST_MEDIA_TYPE,
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.descriptor(),
            "layers": [layer.annotated("org.opencontainers.image.title", PLUGIN_FILE)],
        }))?,
    );
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [manifest.annotated("org.opencontainers.image.ref.name", tag)],
    }))?;
    Ok(Image {
        layer,
        config,
        manifest,
        index,
    })
}

/// Writes `image` as an OCI image layout at `out`. An existing layout there is replaced (its
/// blobs removed first, so no stale blob survives); any other non-empty directory is refused.
pub fn write(image: &Image, out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        let is_layout = out.join("oci-layout").exists();
        let empty = std::fs::read_dir(out)?.next().is_none();
        if !is_layout && !empty {
            bail!(
                "{} exists and is not an OCI image layout: refusing to write into it",
                out.display()
            );
        }
        let blobs = out.join("blobs");
        if blobs.exists() {
            std::fs::remove_dir_all(&blobs)
                .with_context(|| format!("removing {}", blobs.display()))?;
        }
    }
    let dir = out.join("blobs/sha256");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for blob in [&image.layer, &image.config, &image.manifest] {
        let digest = blob.digest();
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(dir.join(hex), &blob.bytes)?;
    }
    std::fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    std::fs::write(out.join("index.json"), &image.index)?;
    Ok(())
}

pub fn run(args: OciArgs) -> anyhow::Result<()> {
    let wasm =
        std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    let image = build(&wasm, &args.tag).with_context(|| args.wasm.display().to_string())?;
    write(&image, &args.out)?;
    println!(
        "{out}: OCI image layout (Istio wasm \"compat\" variant), tag {tag}\n\
         \x20 manifest {manifest} ({manifest_size} bytes)\n\
         \x20 layer    {layer} ({layer_size} bytes, {PLUGIN_FILE}: {wasm_size} bytes)\n\
         push:  oras cp --from-oci-layout {out}:{tag} REGISTRY/mcp-auth-filter:{tag}\n\
         \x20  or: crane push {out} REGISTRY/mcp-auth-filter:{tag}\n\
         pin:   url: oci://REGISTRY/mcp-auth-filter@{manifest}",
        out = args.out.display(),
        tag = args.tag,
        manifest = image.manifest.digest(),
        manifest_size = image.manifest.bytes.len(),
        layer = image.layer.digest(),
        layer_size = image.layer.bytes.len(),
        wasm_size = wasm.len(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 a pretend module body";

    fn json_of(blob: &Blob) -> Value {
        serde_json::from_slice(&blob.bytes).unwrap()
    }

    #[test]
    fn the_same_module_gives_the_same_digests() {
        let a = build(MODULE, "v1").unwrap();
        let b = build(MODULE, "v1").unwrap();
        assert_eq!(a.manifest.digest(), b.manifest.digest());
        assert_eq!(a.layer.bytes, b.layer.bytes);
        assert_eq!(a.index, b.index);
        let other = build(b"\0asm\x01\0\0\0 another body", "v1").unwrap();
        assert_ne!(a.manifest.digest(), other.manifest.digest());
    }

    #[test]
    fn the_manifest_describes_the_config_and_the_one_layer_exactly() {
        let image = build(MODULE, "v1").unwrap();
        let manifest = json_of(&image.manifest);
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["config"]["digest"], image.config.digest());
        assert_eq!(manifest["config"]["size"], image.config.bytes.len());
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(layers[0]["digest"], image.layer.digest());
        assert_eq!(layers[0]["size"], image.layer.bytes.len());
    }

    #[test]
    fn the_layer_holds_plugin_wasm_owned_by_root_at_time_zero() {
        let image = build(MODULE, "v1").unwrap();
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(image.layer.bytes.as_slice())
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let config = json_of(&image.config);
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256(&tar_bytes));
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some(PLUGIN_FILE));
        assert_eq!(entry.header().mtime().unwrap(), 0);
        assert_eq!(entry.header().uid().unwrap(), 0);
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        assert_eq!(body, MODULE);
        drop(entry);
        assert!(entries.next().is_none(), "one file only");
    }

    #[test]
    fn not_a_module_is_refused() {
        assert!(build(b"PK\x03\x04", "v1").is_err());
        assert!(build(MODULE, "").is_err());
    }

    #[test]
    fn writing_replaces_a_layout_but_not_another_directory() {
        let dir = std::env::temp_dir().join(format!("host-shim-oci-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = build(MODULE, "v1").unwrap();
        write(&first, &dir).unwrap();
        let second = build(b"\0asm\x01\0\0\0 v2", "v2").unwrap();
        write(&second, &dir).unwrap();
        let blobs: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(blobs.len(), 3, "stale blobs removed: {blobs:?}");
        let other = dir.join("not-a-layout");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("keep.txt"), "x").unwrap();
        assert!(write(&first, &other).is_err());
        assert!(other.join("keep.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
