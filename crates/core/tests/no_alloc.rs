//! Building probes and validating/classifying replies allocate nothing, measured with a
//! counting global allocator (`stats_alloc`, so this file needs no `unsafe`).
//!
//! Everything runs in one `#[test]` so no other test thread allocates while we count.

use std::alloc::System;
use std::net::Ipv4Addr;
use std::time::Duration;

use rzmap_core::aesrand::AesRand;
use rzmap_core::engine::{FrameBuilder, GROUP, ProbeSpec};
use rzmap_core::fields::{Record, Schema};
use rzmap_core::link::FrameBatch;
use rzmap_core::probe::adapter::ProbeSender;
use rzmap_core::probe::{self, PortBitmap, ProbeConfig, ProbeInput, ReplyCheck, ReplyKind};
use rzmap_core::target::Target;
use rzmap_core::validate::Validator;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn ip_packet(src: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[8] = 60;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&US.octets());
    ip.extend_from_slice(l4);
    ip
}

fn udp_datagram(src: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    ip_packet(src, 17, &u)
}

/// A reply each module counts as a success (or at least classifies fully), built from the
/// probe frame; `None` for modules covered by the ICMP-error path only.
fn success_reply(module: &str, frame: &[u8], w: [u32; 4], target: Ipv4Addr) -> Option<Vec<u8>> {
    let sport = u16::from_be_bytes([frame[34], frame[35]]);
    match module {
        "tcp_synackscan" => {
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&80u16.to_be_bytes());
            t[2..4].copy_from_slice(&sport.to_be_bytes());
            t[4..8].copy_from_slice(&w[2].to_be_bytes());
            t[12] = 5 << 4;
            t[13] = 0x04; // RST
            Some(ip_packet(target, 6, &t))
        }
        "icmp_echo_time" => {
            let mut e = frame[34..].to_vec();
            e[0] = 0; // echo reply
            Some(ip_packet(target, 1, &e))
        }
        "ntp" => {
            let mut d = vec![0u8; 48];
            d[0] = 0x24;
            Some(udp_datagram(target, 80, sport, &d))
        }
        "upnp" => Some(udp_datagram(
            target,
            80,
            sport,
            b"HTTP/1.1 200 OK\r\nServer: s\r\nLOCATION: http://x/\r\nST: upnp:rootdevice\r\nEXT:\r\n\r\n",
        )),
        "bacnet" => Some(udp_datagram(target, 80, sport, &[0x81, 0x0a, 0, 6, 1, 0])),
        "ipip" => Some(frame[34..].to_vec()),
        _ => None,
    }
}

#[test]
fn make_validate_classify_do_not_allocate() {
    let v = Validator::new([5; 16]);
    let cfg =
        ProbeConfig { target_ports: vec![80], ..ProbeConfig::new([2, 0, 0, 0, 0, 1], [2; 6]) };
    let ports = PortBitmap::new(&[80]);
    let scope = |a: Ipv4Addr| a.octets()[0] == 198;
    let chk = ReplyCheck {
        validator: &v,
        sport_first: cfg.sport_first,
        sport_count: cfg.sport_count,
        probes: 1,
        in_scope: &scope,
        target_ports: &ports,
        validate_source_port: None,
    };
    let target = Ipv4Addr::new(198, 19, 9, 9);
    let dir = tempfile::tempdir().unwrap();
    let tpl = dir.path().join("sip.tpl");
    std::fs::write(&tpl, b"OPTIONS sip:${DADDR}:${DPORT} ${RAND_ALPHA=6} ${NTP_TIMESTAMP}")
        .unwrap();
    let tpl_arg = format!("template:{}", tpl.display());
    let mods = [
        probe::create("tcp_synscan", None).unwrap(),
        probe::create("tcp_synscan", Some("linux")).unwrap(),
        probe::create("icmp_echoscan", Some("text:ping")).unwrap(),
        probe::create("udp", Some("hex:0102030405")).unwrap(),
        probe::create("udp", Some(&tpl_arg)).unwrap(),
        probe::create("tcp_synackscan", None).unwrap(),
        probe::create("icmp_echo_time", None).unwrap(),
        probe::create("ntp", None).unwrap(),
        probe::create("upnp", None).unwrap(),
        probe::create("bacnet", None).unwrap(),
        probe::create("ipip", None).unwrap(),
    ];
    for m in &mods {
        let port = if m.needs_ports() { 80 } else { 0 };
        let mut buf = vec![0u8; 2048];
        m.prepare(&mut buf, &cfg);
        let mut rng = AesRand::from_seed(7);
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);

        // Replies: one valid, built from our own probe (ICMP error quoting it), one rejected.
        let w = v.words(US, target, port);
        let p = ProbeInput {
            src: US,
            dst: target,
            dport: port,
            probe_num: 0,
            validation: w,
            now: Default::default(),
        };
        let n = m.make(&mut buf, &cfg, &p, &mut rng);
        let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&buf[14..n]);
        let err = ip_packet(Ipv4Addr::new(198, 18, 9, 1), 1, &icmp);
        let garbage = ip_packet(target, 6, &[0xff; 40]);
        let ok = success_reply(m.name(), &buf[..n], w, target);
        // Warm up the record arena.
        assert_eq!(m.validate(&err, &chk), Ok(ReplyKind::IcmpError), "{}", m.name());
        m.classify(&err, &ReplyKind::IcmpError, &mut rec, schema.module_start());
        let ok_kind = ok.as_ref().map(|r| m.validate(r, &chk));
        if let Some(k) = ok_kind {
            assert!(k.is_ok(), "{}: {k:?}", m.name());
        }
        if let (Some(r), Some(Ok(k))) = (&ok, ok_kind) {
            m.classify(r, &k, &mut rec, schema.module_start());
            m.set_capture_time(&mut rec, schema.module_start(), Duration::from_secs(1 << 31));
        }

        // The counter is process-wide, and the test harness's main thread may allocate
        // while this test starts (it prints and sets up timers). A per-packet allocation would
        // show in every pass, so one clean pass of 1000 probes proves there is none.
        let mut passes = Vec::new();
        for _ in 0..3 {
            let region = Region::new(GLOBAL);
            for i in 0..1000u32 {
                let dst = Ipv4Addr::from(0xc613_0000 | i);
                let w = v.words(US, dst, port);
                let p = ProbeInput {
                    src: US,
                    dst,
                    dport: port,
                    probe_num: i % 3,
                    validation: w,
                    now: Duration::from_micros(u64::from(i) * 1_000_003),
                };
                let len = m.make(&mut buf, &cfg, &p, &mut rng);
                assert!(len <= m.max_frame_len());
                let k = m.validate(&err, &chk).unwrap_or(ReplyKind::IcmpError);
                rec.clear();
                m.classify(&err, &k, &mut rec, schema.module_start());
                let _ = m.validate(&garbage, &chk);
                if let (Some(r), Some(Ok(k))) = (&ok, ok_kind) {
                    let k2 = m.validate(r, &chk).unwrap_or(k);
                    rec.clear();
                    m.classify(r, &k2, &mut rec, schema.module_start());
                    m.set_capture_time(&mut rec, schema.module_start(), p.now);
                }
            }
            let stats = region.change();
            if stats.allocations == 0 && stats.reallocations == 0 {
                passes.clear();
                break;
            }
            passes.push(stats);
        }
        assert!(passes.is_empty(), "{} allocated in every pass: {passes:?}", m.name());
    }
    // The sender's grouped path (8 probes, one AES call) into a reused batch, tcp_synscan.
    let module: std::sync::Arc<dyn probe::ProbeModule> =
        probe::create("tcp_synscan", None).unwrap().into();
    let mut sender = ProbeSender::new(
        module,
        std::sync::Arc::new(cfg.clone()),
        Validator::new([5; 16]),
        AesRand::from_seed(3),
    );
    let mut batch = FrameBatch::new(64, 128);
    for k in 0..64 {
        sender.prepare(batch.slot_mut(k));
    }
    let mut group = [ProbeSpec::EMPTY; GROUP];
    for pass in 0..3u32 {
        batch.clear();
        let region = Region::new(GLOBAL);
        for g in 0..8u32 {
            for (k, p) in group.iter_mut().enumerate() {
                p.target = Target::v4(0xc613_0000 + pass * 64 + g * 8 + k as u32, 80);
                p.src = US;
            }
            assert_eq!(sender.build_group(&mut batch, &group), GROUP);
        }
        let stats = region.change();
        assert_eq!(
            (stats.allocations, stats.reallocations),
            (0, 0),
            "build_group allocated in pass {pass}: {stats:?}"
        );
    }
    // The counter really counts: this test could fail.
    let region = Region::new(GLOBAL);
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(10));
    drop(v);
    assert_eq!(region.change().allocations, 1);
}
