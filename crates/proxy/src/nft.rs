//! Running `nft`: a batch on standard input (`nft -f -`, atomic), and reading the table back as JSON for the
//! repair check.

use std::collections::BTreeMap;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::Error;

/// The `nft` command line (e.g. `["nft"]`, or `["ip", "netns", "exec", NS, "nft"]`).
#[derive(Debug, Clone)]
pub struct Nft {
    pub command: Vec<String>,
}

/// What the repair check compares: rules per chain and elements per set or map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    pub chains: BTreeMap<String, usize>,
    pub sets: BTreeMap<String, usize>,
}

impl Nft {
    pub fn new(command: Vec<String>) -> Nft {
        Nft { command }
    }

    fn command(&self, args: &[&str]) -> Result<Command, Error> {
        let (program, rest) = self.command.split_first().ok_or(Error::EmptyNftCommand)?;
        let mut c = Command::new(program);
        c.args(rest).args(args).kill_on_drop(true);
        Ok(c)
    }

    /// Runs `nft -f -` with `script` on standard input. nft applies the whole batch or nothing.
    pub async fn apply(&self, script: &str) -> Result<(), Error> {
        let mut child = self
            .command(&["-f", "-"])?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Spawn { command: self.command.join(" "), source: e })?;
        let mut stdin = child.stdin.take().expect("piped");
        let script_owned = script.to_owned();
        let writer = tokio::spawn(async move {
            let r = stdin.write_all(script_owned.as_bytes()).await;
            drop(stdin);
            r
        });
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| Error::Spawn { command: self.command.join(" "), source: e })?;
        let _ = writer.await;
        if !out.status.success() {
            return Err(Error::Nft {
                command: format!("{} -f -", self.command.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Runs nft with arguments and returns its standard output.
    pub async fn run(&self, args: &[&str]) -> Result<String, Error> {
        let out = self
            .command(args)?
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::Spawn { command: self.command.join(" "), source: e })?;
        if !out.status.success() {
            return Err(Error::Nft {
                command: format!("{} {}", self.command.join(" "), args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Rules per chain and elements per set of `ip <table>`, or None when the table does not exist.
    pub async fn fingerprint(&self, table: &str) -> Result<Option<Fingerprint>, Error> {
        let text = match self.run(&["-j", "list", "table", "ip", table]).await {
            Ok(t) => t,
            Err(Error::Nft { stderr, .. }) if stderr.contains("No such file or directory") => return Ok(None),
            Err(e) => return Err(e),
        };
        parse_fingerprint(&text).map(Some)
    }
}

/// Reads rules per chain and elements per set from `nft -j list table` output.
pub fn parse_fingerprint(json: &str) -> Result<Fingerprint, Error> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Error::NftOutput(format!("nft -j output is not JSON: {e}")))?;
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .ok_or_else(|| Error::NftOutput("nft -j output has no \"nftables\" array".into()))?;
    let mut f = Fingerprint::default();
    for item in items {
        if let Some(c) = item.get("chain") {
            let name = c.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            f.chains.entry(name.to_string()).or_insert(0);
        } else if let Some(r) = item.get("rule") {
            let chain = r.get("chain").and_then(|n| n.as_str()).unwrap_or_default();
            *f.chains.entry(chain.to_string()).or_insert(0) += 1;
        } else if let Some(s) = item.get("set").or_else(|| item.get("map")) {
            let name = s.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            let n = s.get("elem").and_then(|e| e.as_array()).map_or(0, |e| e.len());
            f.sets.insert(name.to_string(), n);
        }
    }
    Ok(f)
}
