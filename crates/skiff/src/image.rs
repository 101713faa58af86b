//! `skiff image`: the node's image store from the command line (import archives for air-gapped hosts,
//! list, remove, pull), on the same store the agent uses: `<data-dir>/agent/images`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use skiff_runtime::cri::{ImageService, RegistryAuth};
use skiff_runtime::image::registries::REGISTRIES_FILE;
use skiff_runtime::image::{ImageInfo, ImageStore, Images, RegistriesConfig};

/// The image store's directory under the data dir.
pub const STORE_DIR: &str = "agent/images";

#[derive(Args)]
pub struct ImageArgs {
    /// Skiff's data directory; the store is `<data-dir>/agent/images`.
    #[arg(
        long,
        short = 'd',
        default_value = "/var/lib/skiff",
        env = "SKIFF_DATA_DIR",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import images from OCI image layout tars or docker-archive tars (`docker save`, `skopeo copy`).
    Import {
        /// Archives to import (plain or gzip-compressed tar).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Name for OCI layouts whose ref.name annotation is a bare tag (`--base-name busybox` with tag `1`
        /// gives `busybox:1`).
        #[arg(long)]
        base_name: Option<String>,
    },
    /// List images, like `crictl images`.
    #[command(alias = "list")]
    Ls {
        /// Only print image ids.
        #[arg(long, short)]
        quiet: bool,
        /// Add a DIGEST column (the manifest digest).
        #[arg(long)]
        digests: bool,
    },
    /// Remove images by name (`busybox:1`) or id (`sha256:...`, every name of it).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Pull an image from its registry (or the mirrors of `<data-dir>/agent/etc/registries.yaml`).
    Pull {
        name: String,
        /// Credentials, `USERNAME[:PASSWORD]`.
        #[arg(long)]
        creds: Option<String>,
        /// A registries.yaml to use instead of `<data-dir>/agent/etc/registries.yaml`.
        #[arg(long)]
        registries: Option<PathBuf>,
    },
}

/// Opens the store under the data dir.
pub fn open_store(data_dir: &Path) -> anyhow::Result<ImageStore> {
    ImageStore::open(&data_dir.join(STORE_DIR)).map_err(anyhow::Error::from)
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    match args.command {
        ImageCommand::Import { files, base_name } => {
            let store = open_store(&args.data_dir)?;
            for file in &files {
                if !file.is_file() {
                    bail!("{} is not a file", file.display());
                }
                check_archive(file)?;
                let refs = match &base_name {
                    Some(b) => store.import_archive_named(file, b),
                    None => store.import_archive(file),
                }
                .with_context(|| format!("{} was not imported (expected an OCI image layout tar or a docker-archive tar)", file.display()))?;
                for r in refs {
                    println!("imported {} ({})", r.name, r.digest);
                }
            }
            Ok(())
        }
        ImageCommand::Ls { quiet, digests } => {
            let store = open_store(&args.data_dir)?;
            print!("{}", table(&store.list(), quiet, digests));
            Ok(())
        }
        ImageCommand::Rm { names } => {
            let store = Arc::new(open_store(&args.data_dir)?);
            let mut failed = Vec::new();
            for name in &names {
                match remove(&store, name) {
                    Ok(removed) => {
                        for n in removed {
                            println!("deleted {n}");
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        failed.push(name.as_str());
                    }
                }
            }
            if !failed.is_empty() {
                bail!("failed to remove {}", failed.join(", "));
            }
            Ok(())
        }
        ImageCommand::Pull {
            name,
            creds,
            registries,
        } => {
            let path = registries.unwrap_or_else(|| args.data_dir.join(REGISTRIES_FILE));
            let config = RegistriesConfig::load(&path)?;
            let auth = creds.map(|c| {
                let (username, password) = c.split_once(':').unwrap_or((&c, ""));
                RegistryAuth {
                    username: username.to_string(),
                    password: password.to_string(),
                }
            });
            let store = Arc::new(open_store(&args.data_dir)?);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let images = Images::new(store, config);
            let id = runtime.block_on(images.pull_image(&name, auth.as_ref()))?;
            println!("Image is up to date for {id}");
            Ok(())
        }
    }
}

/// Refuses at once a file that is neither a tar nor gzip-compressed (instead of a tar parser's message).
fn check_archive(file: &Path) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(file)
        .with_context(|| format!("cannot open {}", file.display()))?
        .take(512)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let tar = head.len() >= 262 && &head[257..262] == b"ustar";
    if !gzip && !tar {
        bail!(
            "{} is not an image archive: it is neither a tar nor a gzip file (expected an OCI image layout tar or a docker-archive tar)",
            file.display()
        );
    }
    Ok(())
}

/// Removes a name, or every name of an image id; returns the names removed.
fn remove(store: &ImageStore, name: &str) -> anyhow::Result<Vec<String>> {
    let rows = store.list();
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    let is_id = hex.len() >= 4 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if is_id {
        let ids: std::collections::BTreeSet<&str> = rows
            .iter()
            .map(|r| r.config_digest.as_str())
            .filter(|id| id.trim_start_matches("sha256:").starts_with(hex))
            .collect();
        match ids.len() {
            0 => {} // Maybe a name made of hex digits: fall through.
            1 => {
                let id = *ids.iter().next().unwrap_or(&"");
                let names: Vec<String> = rows
                    .iter()
                    .filter(|r| r.config_digest == id)
                    .map(|r| r.name.clone())
                    .collect();
                for n in &names {
                    store.remove(n)?;
                }
                return Ok(names);
            }
            _ => bail!(
                "image id {name} is ambiguous: it matches {}",
                ids.into_iter().collect::<Vec<_>>().join(", ")
            ),
        }
    }
    store.remove(name)?;
    Ok(vec![
        skiff_runtime::image::reference::normalize(name).unwrap_or_else(|_| name.to_string()),
    ])
}

/// `crictl images`' table: IMAGE, TAG, (DIGEST,) IMAGE ID (13 hex digits), SIZE (decimal units).
fn table(rows: &[ImageInfo], quiet: bool, digests: bool) -> String {
    let mut lines: Vec<Vec<String>> = Vec::new();
    if quiet {
        let mut ids: Vec<&str> = rows.iter().map(|r| r.config_digest.as_str()).collect();
        ids.sort();
        ids.dedup();
        return ids.iter().map(|id| format!("{id}\n")).collect();
    }
    let mut header = vec!["IMAGE".to_string(), "TAG".to_string()];
    if digests {
        header.push("DIGEST".into());
    }
    header.extend(["IMAGE ID".to_string(), "SIZE".to_string()]);
    lines.push(header);
    for r in rows {
        let (repo_tag, by_digest) = match r.name.split_once('@') {
            Some((rt, _)) => (rt, true),
            None => (r.name.as_str(), false),
        };
        let slash = repo_tag.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match repo_tag[slash..].rfind(':') {
            Some(i) if !by_digest => (&repo_tag[..slash + i], &repo_tag[slash + i + 1..]),
            Some(i) => (&repo_tag[..slash + i], "<none>"),
            None => (repo_tag, "<none>"),
        };
        let mut line = vec![repo.to_string(), tag.to_string()];
        if digests {
            let d = r.digest.trim_start_matches("sha256:");
            line.push(d[..d.len().min(13)].to_string());
        }
        let id = r.config_digest.trim_start_matches("sha256:");
        line.push(id[..id.len().min(13)].to_string());
        line.push(human_size(r.size));
        lines.push(line);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for l in &lines {
        let mut s = String::new();
        for (c, cell) in l.iter().enumerate() {
            if c + 1 == columns {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    }
    out
}

/// Sizes as crictl prints them (go-units' HumanSize: four significant digits, decimal units).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < UNITS.len() {
        size /= 1000.0;
        unit += 1;
    }
    let int_digits = if size < 1.0 {
        1
    } else {
        size.log10().floor() as usize + 1
    };
    let decimals = 4usize.saturating_sub(int_digits);
    let mut text = format!("{size:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1_180_758), "1.181MB");
        assert_eq!(human_size(719_400), "719.4kB");
        assert_eq!(human_size(2_500_000_000), "2.5GB");
    }

    #[test]
    fn table_has_crictl_columns() {
        let rows = vec![
            ImageInfo {
                name: "docker.io/library/busybox:1".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                config_digest: format!("sha256:{}", "0123456789abcdef".repeat(4)),
                size: 1_180_758,
            },
            ImageInfo {
                name: format!("127.0.0.1:5000/x@sha256:{}", "b".repeat(64)),
                digest: format!("sha256:{}", "b".repeat(64)),
                config_digest: format!("sha256:{}", "f".repeat(64)),
                size: 10,
            },
        ];
        let t = table(&rows, false, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["docker.io/library/busybox", "1", "0123456789abc", "1.181MB"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["127.0.0.1:5000/x", "<none>", "fffffffffffff", "10B"]
        );
        // Columns line up: IMAGE ID starts at the same offset on every line.
        let at = lines[0].find("IMAGE ID").unwrap();
        assert_eq!(&lines[1][at..at + 13], "0123456789abc");
        assert_eq!(table(&rows, true, false).lines().count(), 2);
    }
}
