//! The last validation step before a scan: the probe module, the ports it needs, the output
//! plan and the address space, all checked together. Nothing here opens a socket.

use crate::config::ScanConfig;
use crate::targets::{Resolver, Targets, build_targets};
use rzmap_core::aesrand::AesRand;
use rzmap_core::dedup::DedupMethod;
use rzmap_core::error::InputError;
use rzmap_core::fields::{FieldType, Schema};
use rzmap_core::iter::{ScanOrder, Subshard};
use rzmap_core::output::{OutputPlan, OutputRequest, plan_output};
use rzmap_core::probe::{self, ProbeModule};
use std::sync::Arc;

/// Everything a scan needs to know before it touches the network.
pub struct ScanPlan {
    /// The validated options.
    pub config: ScanConfig,
    /// The probe module, built with `--probe-args`.
    pub probe: Box<dyn ProbeModule>,
    /// IP fields, the module's fields, system fields.
    pub schema: Schema,
    /// The ports to scan: `-p` in order, or `[0]` for modules without ports.
    pub ports: Vec<u16>,
    /// `-n` resolved to a number of targets (`None`: no cap; ZMap also treats 0 as no cap).
    pub max_targets: Option<u64>,
    /// `--dedup-method` resolved for the number of ports.
    pub dedup: DedupMethod,
    /// Output module, fields, header and compiled filter.
    pub output: OutputPlan,
    /// The address space.
    pub targets: Targets,
    /// Warnings from every step, in order.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for ScanPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanPlan")
            .field("probe", &self.probe.name())
            .field("ports", &self.ports.len())
            .field("addresses", &self.targets.space.count())
            .finish_non_exhaustive()
    }
}

impl ScanPlan {
    /// The send rate in packets per second (0: unlimited); `-B` is converted with the
    /// module's real frame size (ZMap 4 main charges every module as an 84-byte frame; rzmap
    /// fixes that, keeping the 84-byte floor).
    pub fn packets_per_second(&self) -> u64 {
        self.config.rate.packets_per_second(self.probe.max_frame_len())
    }

    /// Sender threads and batch size for a machine with `cores` CPUs, with the reasons for
    /// any adjustment. The default is min(4, cores − 1, targets), at least 1; it drops to 1
    /// when `2 × threads ≥ max targets`; threads never exceed the number of targets; then
    /// the low-rate rule applies ([`rzmap_core::rate::low_rate_rule`]).
    pub fn threads_and_batch(&self, cores: usize) -> (u8, u16, Vec<String>) {
        let mut notes = Vec::new();
        let targets = self.targets.space.count().saturating_mul(self.ports.len() as u64).max(1);
        let spare = cores.saturating_sub(1).max(1) as u64;
        let mut threads = match self.config.sender_threads {
            Some(t) => {
                if u64::from(t) > spare {
                    notes.push(format!(
                        "{t} sender threads on {cores} cores: more than one per spare core"
                    ));
                }
                u64::from(t)
            }
            None => 4.min(spare),
        };
        if threads > targets {
            threads = targets;
        }
        if let Some(m) = self.max_targets
            && threads > 1
            && 2 * threads >= m
        {
            notes.push(format!("only {m} targets: using one sender thread"));
            threads = 1;
        }
        let threads = threads.clamp(1, 255) as u8;
        let pps = self.packets_per_second();
        let (t, b) =
            rzmap_core::rate::low_rate_rule(pps, u32::from(threads), u32::from(self.config.batch));
        let (t, b) = (t as u8, b as u16);
        if (t, b) != (threads, self.config.batch) {
            notes.push(format!("{pps} packets per second is a low rate: one thread, batch 1"));
        }
        (t, b, notes)
    }
}

impl ScanPlan {
    /// The permutation of this scan (ZMap's cycle, chosen from the seed).
    pub fn scan_order(&self) -> Result<ScanOrder, InputError> {
        let mut rand = AesRand::from_seed(self.config.seed);
        ScanOrder::new(Arc::clone(&self.targets.space), self.ports.clone(), &mut rand)
    }

    /// The subshards of this instance's shard for `threads` sender threads, each with its
    /// share of `-n` and the `-I` filter. Errors when the split does not fit (for example
    /// more shards × threads than targets).
    pub fn subshards(&self, order: &ScanOrder, threads: u8) -> Result<Vec<Subshard>, InputError> {
        let (shard, shards) = (u32::from(self.config.shard), u32::from(self.config.shards));
        (0..u32::from(threads))
            .map(|t| {
                let s = order.subshard(shard, shards, t, u32::from(threads), self.max_targets)?;
                Ok(match &self.targets.ip_list {
                    Some(list) => s.with_filter(Arc::clone(list)),
                    None => s,
                })
            })
            .collect()
    }
}

/// Whether a module's output has repeated or nested fields (and so needs `-O json`).
pub fn has_dynamic_fields(probe: &dyn ProbeModule) -> bool {
    probe.fields().iter().any(|f| matches!(f.ty, FieldType::Repeated | FieldType::Nested))
}

/// Checks the probe module and its ports.
pub fn probe_and_ports(
    config: &ScanConfig,
) -> Result<(Box<dyn ProbeModule>, Vec<u16>), InputError> {
    let probe = probe::create(&config.probe_module, config.probe_args.as_deref())?;
    let name = probe.name();
    let ports = match (probe.needs_ports(), config.target_ports.is_empty()) {
        (true, true) => {
            return Err(InputError::new(
                "--target-ports",
                format!("the {name} probe module needs target ports: give -p (for example -p 80)"),
            ));
        }
        (true, false) => config.target_ports.clone(),
        (false, true) => vec![0],
        (false, false) => {
            return Err(InputError::new(
                "--target-ports",
                format!("the {name} probe module does not use ports: leave out -p"),
            ));
        }
    };
    Ok((probe, ports))
}

/// Builds the plan: module and ports, dedup, output, then the address space (which may read
/// files and resolve host names through `resolver`).
pub fn plan(config: ScanConfig, resolver: Resolver<'_>) -> Result<ScanPlan, InputError> {
    let mut warnings = config.warnings.clone();
    let (probe, ports) = probe_and_ports(&config)?;
    let dedup = config.dedup_method.resolve(ports.len())?;
    let max_targets = config.max_targets.map(|m| m.resolve(ports.len())).filter(|&n| n > 0);
    let schema = if config.banner.is_some() {
        Schema::for_module(&rzmap_core::handshake::TCP_SYNSCAN_BANNER_FIELDS)
    } else {
        Schema::for_module(probe.fields())
    };
    let output = plan_output(
        &OutputRequest {
            module: config.output_module.as_deref(),
            fields: config.output_fields.as_deref(),
            filter: config.output_filter.as_deref(),
            no_header_row: config.no_header_row,
            port_count: ports.len(),
            module_requires_json: has_dynamic_fields(probe.as_ref()),
        },
        &schema,
    )?;
    let targets = build_targets(&config, resolver)?;
    warnings.extend(targets.warnings.iter().cloned());
    Ok(ScanPlan { config, probe, schema, ports, max_targets, dedup, output, targets, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn no_dns(_: &str) -> Result<Vec<Ipv4Addr>, String> {
        Err("no DNS in tests".into())
    }

    fn plan_args(items: &[&str]) -> Result<ScanPlan, String> {
        let argv: Vec<std::ffi::OsString> =
            std::iter::once("rzmap").chain(items.iter().copied()).map(Into::into).collect();
        let p = crate::args::parse(&argv).map_err(|e| e.to_string())?;
        let c = crate::config::resolve(&p.args, || Ok(1)).map_err(|e| e.to_string())?;
        plan(c, &no_dns).map_err(|e| e.to_string())
    }

    #[test]
    fn ports_follow_the_module() {
        let p = plan_args(&["-p", "443,80", "-b", "/dev/null", "198.18.0.0/30"]).unwrap();
        assert_eq!(p.ports, vec![443, 80]);
        assert_eq!(p.dedup, DedupMethod::Window);
        assert_eq!(p.targets.space.count(), 4);
        let p = plan_args(&["-M", "icmp_echoscan", "-b", "/dev/null", "198.18.0.0/30"]).unwrap();
        assert_eq!(p.ports, vec![0]);
        assert_eq!(p.dedup, DedupMethod::Full);
        assert_eq!(
            plan_args(&["198.18.0.0/30"]).unwrap_err(),
            "--target-ports: the tcp_synscan probe module needs target ports: give -p (for example -p 80)"
        );
        assert_eq!(
            plan_args(&["-M", "icmp_echoscan", "-p", "80"]).unwrap_err(),
            "--target-ports: the icmp_echoscan probe module does not use ports: leave out -p"
        );
    }

    #[test]
    fn module_and_output_errors() {
        let e = plan_args(&["-M", "nosuch", "-p", "1"]).unwrap_err();
        assert!(
            e.starts_with(
                "--probe-module: unknown probe module \"nosuch\" (available: tcp_synscan"
            ),
            "{e}"
        );
        let e = plan_args(&["-p", "1", "-O", "nosuch"]).unwrap_err();
        assert!(e.starts_with("--output-module: unknown output module \"nosuch\""), "{e}");
        let e = plan_args(&["-p", "1", "-f", "saddr,bogus"]).unwrap_err();
        assert!(e.starts_with("--output-fields: column 7: unknown field \"bogus\""), "{e}");
        let e = plan_args(&["-p", "1", "--output-filter", "success = "]).unwrap_err();
        assert!(e.starts_with("--output-filter"), "{e}");
        let e = plan_args(&["-M", "udp", "-p", "53"]).unwrap_err();
        assert!(e.starts_with("--probe-args"), "{e}");
    }

    #[test]
    fn max_targets_percent_counts_ports() {
        let p = plan_args(&["-p", "1,2", "-n", "50%", "-b", "/dev/null", "198.18.0.0/30"]).unwrap();
        assert_eq!(p.max_targets, Some(1 << 32));
        let p = plan_args(&["-p", "1", "-n", "10", "-b", "/dev/null", "198.18.0.0/30"]).unwrap();
        assert_eq!(p.max_targets, Some(10));
    }

    #[test]
    fn rate_and_threads() {
        let p = plan_args(&["-p", "1", "-B", "10M", "-b", "/dev/null", "198.18.0.0/16"]).unwrap();
        // The default (windows options) SYN frame is 66 bytes, 90 on the wire.
        assert_eq!(p.packets_per_second(), 10_000_000 / (90 * 8));
        assert_eq!(p.threads_and_batch(8).0, 4);
        assert_eq!(p.threads_and_batch(2).0, 1);
        assert_eq!(p.threads_and_batch(1).0, 1);
        let p = plan_args(&["-p", "1", "-T", "8", "-b", "/dev/null", "198.18.0.0/30"]).unwrap();
        let (t, b, notes) = p.threads_and_batch(2);
        assert_eq!((t, b), (4, 64), "clamped to the 4 targets");
        assert_eq!(notes.len(), 1);
        let p = plan_args(&["-p", "1", "-n", "6", "-b", "/dev/null", "198.18.0.0/24"]).unwrap();
        assert_eq!(p.threads_and_batch(8).0, 1);
        let p = plan_args(&["-p", "1", "-r", "100", "-b", "/dev/null", "198.18.0.0/24"]).unwrap();
        let (t, b, _) = p.threads_and_batch(8);
        assert_eq!((t, b), (1, 1));
    }

    fn order(p: &ScanPlan, threads: u8) -> Vec<Vec<String>> {
        let o = p.scan_order().unwrap();
        p.subshards(&o, threads)
            .unwrap()
            .into_iter()
            .map(|s| s.map(|(ip, port)| format!("{}:{port}", Ipv4Addr::from(ip))).collect())
            .collect()
    }

    #[test]
    fn command_line_gives_zmaps_verified_target_orders() {
        // Vectors checked against ZMap's ziterate (compat.md section 4).
        let p = plan_args(&["-M", "icmp_echoscan", "-e", "1", "-b", "/dev/null", "198.19.0.0/30"])
            .unwrap();
        assert_eq!(
            order(&p, 1),
            [["198.19.0.1:0", "198.19.0.2:0", "198.19.0.0:0", "198.19.0.3:0"]]
        );
        let p = plan_args(&["-p", "80,443,8080", "-e", "7", "-b", "/dev/null", "198.19.0.0/29"])
            .unwrap();
        let got = &order(&p, 1)[0];
        assert_eq!(
            &got[..6],
            [
                "198.19.0.2:8080",
                "198.19.0.3:80",
                "198.19.0.2:80",
                "198.19.0.1:8080",
                "198.19.0.5:443",
                "198.19.0.6:443"
            ]
        );
        assert_eq!(got.len(), 24);
        let shard = |n: &str| {
            let p = plan_args(&[
                "-M",
                "icmp_echoscan",
                "-e",
                "99",
                "--shards",
                "3",
                "--shard",
                n,
                "-b",
                "/dev/null",
                "198.19.0.0/28",
            ])
            .unwrap();
            order(&p, 1)
                .concat()
                .iter()
                .map(|t| t.trim_end_matches(":0").to_string())
                .collect::<Vec<_>>()
        };
        let last = |v: Vec<String>| {
            v.iter()
                .map(|a| a.rsplit('.').next().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(last(shard("0")), "12 10 0 11 5 15");
        assert_eq!(last(shard("1")), "14 2 7");
        assert_eq!(last(shard("2")), "3 9 13 1 4 6 8");
    }

    #[test]
    fn subshards_carry_the_limit_and_the_ip_list() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"198.19.0.3\n198.19.0.9\n").unwrap();
        let path = f.path().display().to_string();
        let p =
            plan_args(&["-M", "icmp_echoscan", "-I", &path, "-b", "/dev/null", "198.19.0.0/28"])
                .unwrap();
        let mut got = order(&p, 2).concat();
        got.sort();
        assert_eq!(got, ["198.19.0.3:0", "198.19.0.9:0"]);
        let p = plan_args(&["-p", "1", "-n", "5", "-b", "/dev/null", "198.19.0.0/24"]).unwrap();
        assert_eq!(order(&p, 2).concat().len(), 5);
        let p = plan_args(&["-p", "1", "-n", "0", "-b", "/dev/null", "198.19.0.0/24"]).unwrap();
        assert_eq!(p.max_targets, None);
        let p = plan_args(&["-p", "1", "-b", "/dev/null", "198.19.0.0/31"]).unwrap();
        let o = p.scan_order().unwrap();
        assert!(p.subshards(&o, 4).is_err(), "4 subshards over 2 targets");
    }

    #[test]
    fn output_defaults() {
        let p = plan_args(&["-p", "1,2", "-b", "/dev/null", "198.18.0.0/30"]).unwrap();
        assert!(p.output.default_mode);
        assert_eq!(p.output.fields.names(&p.schema).collect::<Vec<_>>(), ["saddr", "sport"]);
    }
}
