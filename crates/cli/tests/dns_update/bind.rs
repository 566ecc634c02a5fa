//! A real BIND 9 (`named`) for the tests: started in the foreground in a
//! temporary folder with one primary zone that accepts updates signed with
//! one TSIG key, on 127.0.0.1 and a port probed free first; stopped by the
//! pid it was started with. The folder is kept when a test fails.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgfleet_dns::ResponseCode;

pub struct Bind {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub zone: String,
    child: Option<Child>,
}

/// `named`'s path, or `None` when BIND is not installed.
pub fn named_binary() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("named"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push("/usr/sbin/named".into());
    candidates.into_iter().find(|path| path.is_file())
}

/// A key statement in BIND's format.
pub fn key_statement(name: &str, secret_base64: &str) -> String {
    format!("key \"{name}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret_base64}\";\n}};\n")
}

/// Writes `text` to `path` with mode 0600 (a TSIG key file).
pub fn write_key_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Bind {
    /// Starts `named` serving `zone` (empty but for SOA and NS), updatable
    /// with `key` (a key statement). `None` when `named` is not installed.
    pub async fn start(zone: &str, key: &str) -> Option<Bind> {
        named_binary()?;
        let dir = std::env::temp_dir().join(format!(
            "pgfleet-bind-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let zone_file = dir.join(format!("{zone}.zone"));
        std::fs::write(
            &zone_file,
            format!(
                "$TTL 60\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n"
            ),
        )
        .unwrap();
        let key_name = key
            .split('"')
            .nth(1)
            .expect("key statement with a quoted name");
        let config = format!(
            r#"options {{
    directory "{dir}";
    pid-file none;
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
{key}
zone "{zone}" {{
    type primary;
    file "{zone_file}";
    allow-update {{ key "{key_name}"; }};
}};
"#,
            dir = dir.display(),
            zone_file = zone_file.display(),
        );
        let config_file = dir.join("named.conf");
        std::fs::write(&config_file, config).unwrap();
        let mut bind = Bind {
            addr,
            dir,
            zone: zone.to_string(),
            child: None,
        };
        bind.restart().await;
        Some(bind)
    }

    /// Starts named (again) on its folder, address and zone; the zone keeps
    /// what updates made of it (its journal).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "named is running");
        let named = named_binary().expect("named was found at start");
        let config_file = self.dir.join("named.conf");
        let zone_file = self.dir.join(format!("{}.zone", self.zone));
        let dir = &self.dir;
        let mut command = Command::new(named);
        command
            .arg("-g")
            .arg("-4")
            .arg("-n")
            .arg("1")
            .arg("-c")
            .arg(&config_file);
        // As root, named drops to its own user, who must write the folder
        // (the zone's journal).
        if nix::unistd::geteuid().is_root() {
            if let Ok(Some(user)) = nix::unistd::User::from_name("bind") {
                for path in [dir, &zone_file, &config_file] {
                    nix::unistd::chown(path.as_path(), Some(user.uid), Some(user.gid)).unwrap();
                }
                command.arg("-u").arg("bind");
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("named.log"))
            .unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting named");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("named exited ({status}): {}", self.log());
            }
            // `ns.<zone>` answers once the zone is loaded.
            let answer = pgfleet_dns::query_a(
                self.addr,
                &format!("ns.{}", self.zone),
                Duration::from_millis(500),
            )
            .await;
            if matches!(answer, Ok((ref addresses, ResponseCode::NoError)) if !addresses.is_empty())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "named did not answer for {} in 30 s: {}",
                self.zone,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The A records BIND answers for `name` (empty when none).
    pub async fn addresses(&self, name: &str) -> Vec<Ipv4Addr> {
        let (mut addresses, _) = pgfleet_dns::query_a(self.addr, name, Duration::from_secs(2))
            .await
            .unwrap_or_default();
        addresses.sort();
        addresses
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("named.log")).unwrap_or_default()
    }

    /// Stops named (SIGTERM by its pid, then waits).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "named's folder kept for inspection in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (probed by binding both).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}
