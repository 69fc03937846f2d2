//! `rzmap-blast`: the send-path limit. A minimal raw blaster that sends 60-byte TCP SYN frames
//! to every address of a lab prefix (× N ports) as fast as one core can, through
//! [`AfPacketSender`], and prints what it achieved. `scripts/bench-lab.sh` compares the
//! scanners against it.
//!
//! Safety: it only ever sends from inside the named network namespace (`--netns`, entered
//! on the sending thread and checked with [`require_in_netns`]), and only to 198.18.0.0/15.
//!
//! Modes: `sendto` (one frame per `sendmmsg` call, the cost of a `sendto` loop),
//! `sendmmsg` (batches of `--batch`, default 64) and `qdisc-bypass` (batches plus
//! `PACKET_QDISC_BYPASS`), `tx-ring` (batches copied into a TPACKET_V2 transmit ring,
//! [`TxRingSender`], one kick per batch) and `tx-ring-bypass` (the ring plus
//! `PACKET_QDISC_BYPASS`) and `af-xdp` (batches copied into the UMEM of an AF_XDP socket in
//! copy mode, [`XdpSender`], kicked until the batch is sent). Frames are templates written once per batch slot; per frame only
//! the destination address and port and the two checksums are patched.
//!
//! Output (one line, stdout): `mode=… batch=… sent=… failed=… secs=… pps=… cpu_s=…`, where
//! `cpu_s` is the sending thread's on-CPU time (`/proc/thread-self/schedstat`).

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Instant;

use rzmap_sys::discovery::link_by_name;
use rzmap_sys::netns::{enter_netns, require_in_netns};
use rzmap_sys::send::{AfPacketSender, SendOutcome};
use rzmap_sys::tx_ring::{TxRingConfig, TxRingSender};
use rzmap_sys::xdp::{XdpConfig, XdpSender};

const USAGE: &str = "usage: rzmap-blast --netns NS --iface IF --src IP --gw-mac MAC \
--dst 198.18.0.0/16 [--ports N] [--mode sendto|sendmmsg|qdisc-bypass|tx-ring|tx-ring-bypass|af-xdp] [--batch N] [--count N]";

/// Length of the frames sent (Ethernet minimum without FCS).
const FRAME_LEN: usize = 60;
/// First destination port; ports `BASE_PORT..BASE_PORT + ports` are probed.
const BASE_PORT: u16 = 1000;
/// Source port of every probe.
const SRC_PORT: u16 = 40000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Sendto,
    Sendmmsg,
    QdiscBypass,
    TxRing,
    TxRingBypass,
    AfXdp,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sendto => "sendto",
            Mode::Sendmmsg => "sendmmsg",
            Mode::QdiscBypass => "qdisc-bypass",
            Mode::TxRing => "tx-ring",
            Mode::TxRingBypass => "tx-ring-bypass",
            Mode::AfXdp => "af-xdp",
        }
    }
}

struct Opts {
    netns: String,
    iface: String,
    src: Ipv4Addr,
    gw_mac: [u8; 6],
    dst: (u32, u8),
    ports: u32,
    mode: Mode,
    batch: usize,
    count: Option<u64>,
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

fn parse_prefix(s: &str) -> Option<(u32, u8)> {
    let (a, l) = s.split_once('/')?;
    let a: Ipv4Addr = a.parse().ok()?;
    let l: u8 = l.parse().ok().filter(|&l| l <= 32)?;
    let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
    Some((u32::from(a) & mask, l))
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let (mut netns, mut iface, mut src, mut gw_mac, mut dst) = (None, None, None, None, None);
    let (mut ports, mut mode, mut batch, mut count) = (1u32, Mode::Sendmmsg, None, None);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let val = args.next().ok_or_else(|| format!("{flag}: missing value"))?;
        let bad = || format!("{flag}: invalid value {val:?}");
        match flag.as_str() {
            "--netns" => netns = Some(val),
            "--iface" => iface = Some(val),
            "--src" => src = Some(val.parse::<Ipv4Addr>().map_err(|_| bad())?),
            "--gw-mac" => gw_mac = Some(parse_mac(&val).ok_or_else(bad)?),
            "--dst" => dst = Some(parse_prefix(&val).ok_or_else(bad)?),
            "--ports" => {
                ports = val.parse().ok().filter(|p| (1..=60000).contains(p)).ok_or_else(bad)?
            }
            "--batch" => {
                batch = Some(val.parse().ok().filter(|b| (1..=1024).contains(b)).ok_or_else(bad)?)
            }
            "--count" => count = Some(val.parse().map_err(|_| bad())?),
            "--mode" => {
                mode = match val.as_str() {
                    "sendto" => Mode::Sendto,
                    "sendmmsg" => Mode::Sendmmsg,
                    "qdisc-bypass" => Mode::QdiscBypass,
                    "tx-ring" => Mode::TxRing,
                    "tx-ring-bypass" => Mode::TxRingBypass,
                    "af-xdp" => Mode::AfXdp,
                    _ => return Err(bad()),
                }
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    let need = |what: &str| format!("missing {what}\n{USAGE}");
    let dst = dst.ok_or_else(|| need("--dst"))?;
    // Lab addresses only: the destination prefix must lie inside 198.18.0.0/15.
    let lab = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    if dst.1 < 15 || dst.0 & 0xfffe_0000 != lab {
        return Err("--dst must lie inside 198.18.0.0/15 (lab addresses only)".into());
    }
    let batch = batch.unwrap_or(if mode == Mode::Sendto { 1 } else { 64 });
    if mode == Mode::Sendto && batch != 1 {
        return Err("--mode sendto sends one frame per call (no --batch)".into());
    }
    Ok(Opts {
        netns: netns.ok_or_else(|| need("--netns"))?,
        iface: iface.ok_or_else(|| need("--iface"))?,
        src: src.ok_or_else(|| need("--src"))?,
        gw_mac: gw_mac.ok_or_else(|| need("--gw-mac"))?,
        dst,
        ports,
        mode,
        batch,
        count,
    })
}

/// One's-complement sum of big-endian 16-bit words.
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for w in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Writes the SYN template (everything but destination, port and checksums) into `f`.
fn write_template(f: &mut [u8], src_mac: [u8; 6], gw_mac: [u8; 6], src: Ipv4Addr) {
    f[..FRAME_LEN].fill(0);
    f[0..6].copy_from_slice(&gw_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 255;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&SRC_PORT.to_be_bytes());
    tcp[4..8].copy_from_slice(&0x5eed_0001u32.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
}

/// Patches destination `dst:port` into a template and recomputes both checksums.
fn patch(f: &mut [u8], dst: u32, port: u16) {
    f[30..34].copy_from_slice(&dst.to_be_bytes());
    f[24..26].fill(0);
    let c = fold(sum16(&f[14..34], 0));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[36..38].copy_from_slice(&port.to_be_bytes());
    f[50..52].fill(0);
    // Pseudo header: source, destination, protocol, TCP length.
    let acc = sum16(&f[26..34], 6 + 20);
    let c = fold(sum16(&f[34..54], acc));
    f[50..52].copy_from_slice(&c.to_be_bytes());
}

/// On-CPU nanoseconds of the calling thread so far.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// The three send back ends.
enum Sender {
    Mmsg(AfPacketSender),
    Ring(TxRingSender),
    Xdp(Box<XdpSender>),
}

struct Report {
    sent: u64,
    failed: u64,
    secs: f64,
    cpu_s: Option<f64>,
    last_error: Option<std::io::Error>,
}

fn blast(o: &Opts) -> Result<Report, String> {
    enter_netns(&o.netns).map_err(|e| format!("cannot enter netns {}: {e}", o.netns))?;
    require_in_netns(&o.netns).map_err(|e| e.to_string())?;
    let link = link_by_name(&o.iface).map_err(|e| e.to_string())?;
    let src_mac = link.mac.ok_or_else(|| format!("{} has no MAC address", o.iface))?;
    let mut sender = if matches!(o.mode, Mode::TxRing | Mode::TxRingBypass) {
        let cfg = TxRingConfig { qdisc_bypass: o.mode == Mode::TxRingBypass, ..Default::default() };
        let mut s = TxRingSender::open(link.index, o.gw_mac, &cfg)
            .map_err(|e| format!("AF_PACKET transmit ring on {}: {e}", o.iface))?;
        s.set_retries(0);
        Sender::Ring(s)
    } else if o.mode == Mode::AfXdp {
        let s = XdpSender::open(link.index, &XdpConfig::default())
            .map_err(|e| format!("AF_XDP socket on {}: {e}", o.iface))?;
        // Default retries: a kick that finds the socket buffer full of skbs in flight
        // (EAGAIN, no progress) is normal here and must not fail the batch.
        Sender::Xdp(Box::new(s))
    } else {
        let mut s = AfPacketSender::open(link.index, o.gw_mac)
            .map_err(|e| format!("AF_PACKET socket on {}: {e}", o.iface))?;
        s.set_retries(0);
        if o.mode == Mode::QdiscBypass {
            s.set_qdisc_bypass(true).map_err(|e| format!("PACKET_QDISC_BYPASS: {e}"))?;
        }
        Sender::Mmsg(s)
    };
    // One template per batch slot, written once; per frame only the patch below changes.
    let mut slots = vec![[0u8; 64]; o.batch];
    for slot in &mut slots {
        write_template(slot, src_mac, o.gw_mac, o.src);
    }
    let hosts = 1u64 << (32 - u32::from(o.dst.1));
    let total = o.count.unwrap_or(hosts * u64::from(o.ports));
    let (mut sent, mut failed, mut last_errno) = (0u64, 0u64, None);
    let cpu0 = thread_cpu_ns();
    let t0 = Instant::now();
    let mut i = 0u64;
    while i < total {
        let n = (total - i).min(o.batch as u64) as usize;
        for f in &mut slots[..n] {
            let dst = o.dst.0.wrapping_add((i % hosts) as u32);
            let port = BASE_PORT + ((i / hosts) % u64::from(o.ports)) as u16;
            patch(f, dst, port);
            i += 1;
        }
        let frames = slots[..n].iter().map(|f| &f[..FRAME_LEN]);
        let out: SendOutcome = match &mut sender {
            Sender::Mmsg(s) => s.send_from(frames),
            Sender::Ring(s) => s.send_from(frames),
            Sender::Xdp(s) => s.send_from(frames),
        };
        sent += out.sent as u64;
        failed += out.failed as u64;
        if out.last_errno.is_some() {
            last_errno = out.last_errno;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = cpu0.zip(thread_cpu_ns()).map(|(a, b)| (b - a) as f64 / 1e9);
    Ok(Report {
        sent,
        failed,
        secs,
        cpu_s,
        last_error: last_errno.map(std::io::Error::from_raw_os_error),
    })
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rzmap-blast: {e}");
            return ExitCode::from(2);
        }
    };
    // The namespace is entered by a dedicated thread; the main thread stays where it was.
    let r = std::thread::scope(|s| s.spawn(|| blast(&o)).join());
    match r {
        Ok(Ok(r)) => {
            println!(
                "mode={} batch={} sent={} failed={} secs={:.3} pps={:.0} cpu_s={}",
                o.mode.name(),
                o.batch,
                r.sent,
                r.failed,
                r.secs,
                r.sent as f64 / r.secs.max(1e-9),
                r.cpu_s.map(|c| format!("{c:.3}")).unwrap_or_else(|| "?".into())
            );
            if let Some(e) = r.last_error {
                eprintln!("rzmap-blast: last send error: {e}");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("rzmap-blast: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("rzmap-blast: sending thread panicked");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_checksums_verify() {
        let mut f = [0u8; FRAME_LEN];
        write_template(
            &mut f,
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(198, 19, 255, 254),
        );
        patch(&mut f, u32::from(Ipv4Addr::new(198, 18, 3, 7)), 1063);
        // A correct header sums to 0xffff including its checksum.
        assert_eq!(fold(sum16(&f[14..34], 0)), 0);
        assert_eq!(fold(sum16(&f[34..54], sum16(&f[26..34], 26))), 0);
        assert_eq!(&f[30..34], &[198, 18, 3, 7]);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 1063);
    }

    #[test]
    fn etherparse_agrees() {
        let mut f = [0u8; FRAME_LEN];
        let src = Ipv4Addr::new(198, 19, 255, 254);
        write_template(&mut f, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], src);
        patch(&mut f, u32::from(Ipv4Addr::new(198, 18, 255, 1)), 1001);
        let p = etherparse::PacketHeaders::from_ethernet_slice(&f).expect("parses");
        let Some(etherparse::NetHeaders::Ipv4(ip, _)) = p.net else { panic!("not IPv4") };
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert_eq!(ip.destination, [198, 18, 255, 1]);
        let Some(etherparse::TransportHeader::Tcp(tcp)) = p.transport else { panic!("not TCP") };
        assert!(tcp.syn && !tcp.ack);
        assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(&ip, &[]).expect("fits"));
        assert_eq!(tcp.destination_port, 1001);
    }

    #[test]
    fn prefix_and_mac_parsing() {
        assert_eq!(
            parse_prefix("198.18.1.2/16"),
            Some((u32::from(Ipv4Addr::new(198, 18, 0, 0)), 16))
        );
        assert_eq!(parse_prefix("198.18.0.0/33"), None);
        assert_eq!(parse_mac("02:72:7a:00:00:01"), Some([2, 0x72, 0x7a, 0, 0, 1]));
        assert_eq!(parse_mac("02:72:7a:00:00"), None);
        assert_eq!(parse_mac("02:72:7a:00:00:01:05"), None);
    }
}
