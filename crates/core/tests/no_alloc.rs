//! Building probes and validating/classifying replies allocate nothing, measured with a
//! counting global allocator (`stats_alloc`, so this file needs no `unsafe`).
//!
//! Everything runs in one `#[test]` so no other test thread allocates while we count.

use std::alloc::System;
use std::net::Ipv4Addr;
use std::time::Duration;

use rzmap_core::aesrand::AesRand;
use rzmap_core::fields::{Record, Schema};
use rzmap_core::probe::{self, PortBitmap, ProbeConfig, ProbeInput, ReplyCheck, ReplyKind};
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
        // Warm up the record arena.
        assert_eq!(m.validate(&err, &chk), Ok(ReplyKind::IcmpError), "{}", m.name());
        m.classify(&err, &ReplyKind::IcmpError, &mut rec, schema.module_start());

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
    // The counter really counts: this test could fail.
    let region = Region::new(GLOBAL);
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(10));
    drop(v);
    assert_eq!(region.change().allocations, 1);
}
