//! Shared parts of the benchmark drivers: child processes killed on drop, CPU and memory
//! read from /proc, a stand-in HTTP target, witness set-up through the real `quorate-witness
//! init`, and Prometheus text parsing (counters and histogram quantiles).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A child process that is killed (and reaped) when dropped, on every exit path.
#[derive(Debug)]
pub struct Guard {
    pub name: String,
    child: Child,
}

impl Guard {
    /// Starts `bin args…` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, bin: &Path, args: &[&str], log: &Path) -> anyhow::Result<Guard> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .args(args)
            .env(
                "QUORATE_LOG",
                std::env::var("QB_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Guard {
            name: name.to_string(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time and memory of one process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub cpu_s: f64,
    pub rss_kb: u64,
    /// Peak resident set size (VmHWM).
    pub hwm_kb: u64,
}

pub fn proc_sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("unexpected /proc/PID/stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After "comm) ": state is field 0, utime 11, stime 12 (in clock ticks).
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("/proc/{pid}/stat: field {i} missing"))
    };
    let hz = clock_ticks();
    let cpu_s = (ticks(11)? + ticks(12)?) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_s,
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
    })
}

fn clock_ticks() -> f64 {
    // getconf CLK_TCK; 100 on every Linux this runs on, but ask rather than assume.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Serves `ok` with status 200 on every path at `addr` until the runtime ends: the stand-in
/// for the primary and backup web servers (one listener answers every address of 127/8).
pub async fn stand_in_target(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the stand-in target on {addr}"))?;
    let app = axum::Router::new().fallback(|| async { "ok\n" });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}

/// Waits until a TCP connect to `addr` succeeds (bounded).
pub fn wait_tcp(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after {within:?}")
}

/// A witness made by the real `quorate-witness init`, with raised limits.
#[derive(Debug)]
pub struct WitnessSetup {
    pub config: PathBuf,
    pub public_key: String,
    pub cert_sha256: String,
    pub listen: SocketAddr,
}

/// Runs `quorate-witness init` in `dir`, then sets `limits` in its `[limits]` table.
pub fn init_witness(
    bin: &Path,
    dir: &Path,
    listen: SocketAddr,
    allow: &str,
    coordinators: &[String],
    limits: &str,
) -> anyhow::Result<WitnessSetup> {
    let mut args = vec![
        "init".to_string(),
        "--dir".into(),
        dir.display().to_string(),
        "--listen".into(),
        listen.to_string(),
        "--name".into(),
        listen.ip().to_string(),
        "--allow".into(),
        allow.into(),
    ];
    for c in coordinators {
        args.push("--coordinator".into());
        args.push(c.clone());
    }
    let out = Command::new(bin.join("quorate-witness"))
        .args(&args)
        .output()
        .context("running quorate-witness init")?;
    if !out.status.success() {
        bail!(
            "quorate-witness init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| -> anyhow::Result<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .map(str::to_string)
            .with_context(|| format!("quorate-witness init printed no {key}"))
    };
    let config = dir.join("witness.toml");
    let mut cfg = std::fs::read_to_string(&config)?;
    // `init` ends the file with a commented `[limits]` table; add the keys to it (or add it).
    let last_table = cfg.lines().rev().find(|l| l.trim_start().starts_with('['));
    if last_table.map(str::trim) != Some("[limits]") {
        cfg.push_str("\n[limits]\n");
    }
    cfg.push('\n');
    cfg.push_str(limits);
    cfg.push('\n');
    std::fs::write(&config, cfg)?;
    let check = Command::new(bin.join("quorate-witness"))
        .args(["check", "--config"])
        .arg(&config)
        .output()?;
    if !check.status.success() {
        bail!(
            "witness config {} invalid: {}",
            config.display(),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    Ok(WitnessSetup {
        config,
        public_key: field("public_key")?,
        cert_sha256: field("cert_sha256")?,
        listen,
    })
}

/// Creates a coordinator key with `quorate-coordinator keygen`; returns its public key.
pub fn coordinator_keygen(bin: &Path, out: &Path) -> anyhow::Result<String> {
    let o = Command::new(bin.join("quorate-coordinator"))
        .args(["keygen", "--out"])
        .arg(out)
        .output()
        .context("running quorate-coordinator keygen")?;
    if !o.status.success() {
        bail!("keygen failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    text.split('"')
        .find(|s| s.starts_with("ed25519:"))
        .map(str::to_string)
        .context("keygen printed no public key")
}

/// Sums every sample of a counter or gauge family (`name{…} value` lines).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Cumulative bucket counts of a histogram family, summed over its label sets: `le` → count.
pub fn histogram_buckets(text: &str, name: &str) -> BTreeMap<u64, f64> {
    let prefix = format!("{name}_bucket{{");
    let mut out = BTreeMap::new();
    for l in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = l.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let le_ns = if le == "+Inf" {
            u64::MAX
        } else {
            match le.parse::<f64>() {
                Ok(v) => (v * 1e9) as u64,
                Err(_) => continue,
            }
        };
        let Some(v) = l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()) else {
            continue;
        };
        *out.entry(le_ns).or_insert(0.0) += v;
    }
    out
}

/// The upper bound (seconds) of the bucket holding quantile `q` of `after − before`;
/// `None` without observations, `f64::INFINITY` when it falls in the +Inf bucket.
pub fn histogram_quantile(
    before: &BTreeMap<u64, f64>,
    after: &BTreeMap<u64, f64>,
    q: f64,
) -> Option<f64> {
    let delta: Vec<(u64, f64)> = after
        .iter()
        .map(|(le, v)| (*le, v - before.get(le).copied().unwrap_or(0.0)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let want = q * total;
    delta.iter().find(|(_, c)| *c >= want).map(|(le, _)| {
        if *le == u64::MAX {
            f64::INFINITY
        } else {
            *le as f64 / 1e9
        }
    })
}

/// GETs `url` with a short timeout; the body as text.
pub async fn get_text(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let r = client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !r.status().is_success() {
        bail!("GET {url}: HTTP {}", r.status());
    }
    Ok(r.text().await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE quorate_vote_latency_seconds histogram\n\
quorate_vote_latency_seconds_sum{witness=\"w1\"} 0.5\n\
quorate_vote_latency_seconds_count{witness=\"w1\"} 10\n\
quorate_vote_latency_seconds_bucket{le=\"0.001\",witness=\"w1\"} 2\n\
quorate_vote_latency_seconds_bucket{le=\"0.002\",witness=\"w1\"} 9\n\
quorate_vote_latency_seconds_bucket{le=\"+Inf\",witness=\"w1\"} 10\n\
quorate_vote_latency_seconds_bucket{le=\"0.001\",witness=\"w2\"} 0\n\
quorate_vote_latency_seconds_bucket{le=\"0.002\",witness=\"w2\"} 0\n\
quorate_vote_latency_seconds_bucket{le=\"+Inf\",witness=\"w2\"} 10\n\
quorate_ticks_total{service=\"a\"} 3\n\
quorate_ticks_total{service=\"b\"} 4\n\
quorate_ticks_total_other 100\n";

    #[test]
    fn counters_are_summed_over_label_sets_only_for_the_named_family() {
        assert_eq!(metric_sum(TEXT, "quorate_ticks_total"), 7.0);
    }

    #[test]
    fn quantiles_come_from_the_summed_bucket_deltas() {
        let after = histogram_buckets(TEXT, "quorate_vote_latency_seconds");
        assert_eq!(after.get(&1_000_000), Some(&2.0));
        assert_eq!(after.get(&u64::MAX), Some(&20.0));
        let before = BTreeMap::new();
        assert_eq!(histogram_quantile(&before, &after, 0.1), Some(0.001));
        assert_eq!(histogram_quantile(&before, &after, 0.45), Some(0.002));
        assert_eq!(
            histogram_quantile(&before, &after, 0.99),
            Some(f64::INFINITY)
        );
        assert_eq!(histogram_quantile(&after, &after, 0.5), None);
    }
}
