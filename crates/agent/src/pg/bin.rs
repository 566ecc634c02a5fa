//! Finding the PostgreSQL binaries: `--pg-bin`, else `pg_config --bindir`,
//! else the newest `/usr/lib/postgresql/*/bin`.

use std::path::{Path, PathBuf};

/// The major version in the output of `postgres --version`
/// (`postgres (PostgreSQL) 16.4 (Debian 16.4-1)` → 16, `… 18beta1` → 18,
/// `… 18devel` → 18): the leading digits of the first word that starts
/// with a digit.
pub fn parse_version(text: &str) -> Option<u32> {
    text.split_whitespace().find_map(|word| {
        let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    })
}

#[derive(Debug, Clone)]
pub struct PgBin {
    pub dir: PathBuf,
    pub version: u32,
}

impl PgBin {
    pub fn find(explicit: Option<&Path>) -> anyhow::Result<PgBin> {
        let dir = match explicit {
            Some(dir) => dir.to_path_buf(),
            None => Self::from_pg_config().or_else(Self::newest_installed).ok_or_else(|| {
                anyhow::anyhow!("no PostgreSQL server binaries found: install postgresql (Debian: apt-get install postgresql) or pass --pg-bin")
            })?,
        };
        if !dir.join("postgres").exists() || !dir.join("initdb").exists() {
            anyhow::bail!("{} has no postgres/initdb binaries: pass --pg-bin with a PostgreSQL server bin directory", dir.display());
        }
        let output = std::process::Command::new(dir.join("postgres"))
            .arg("--version")
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let version = parse_version(&text)
            .ok_or_else(|| anyhow::anyhow!("cannot read the PostgreSQL version from {text:?}"))?;
        Ok(PgBin { dir, version })
    }

    fn from_pg_config() -> Option<PathBuf> {
        let output = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()?;
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        dir.join("postgres").exists().then_some(dir)
    }

    fn newest_installed() -> Option<PathBuf> {
        let mut best: Option<(u32, PathBuf)> = None;
        for entry in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
            let Ok(version) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let bin = entry.path().join("bin");
            if bin.join("postgres").exists() && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
        best.map(|(_, dir)| dir)
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the binaries are and what `postgres --version` says now (a
    /// template made by other binaries is remade).
    pub async fn version_line(&self) -> anyhow::Result<String> {
        let output = tokio::process::Command::new(self.tool("postgres"))
            .arg("--version")
            .output()
            .await?;
        Ok(format!(
            "{} {}",
            self.dir.display(),
            String::from_utf8_lossy(&output.stdout).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn release_beta_and_development_builds_give_their_major_version() {
        use super::parse_version;
        assert_eq!(
            parse_version("postgres (PostgreSQL) 16.4 (Debian 16.4-1)"),
            Some(16)
        );
        assert_eq!(parse_version("postgres (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_version("postgres (PostgreSQL) 18devel"), Some(18));
        assert_eq!(parse_version("postgres (PostgreSQL)"), None);
    }
}
