//! Packet build and reply validation/classification speed, per probe module.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rzmap_core::aesrand::AesRand;
use rzmap_core::engine::FrameBuilder;
use rzmap_core::fields::{Record, Schema};
use rzmap_core::probe::adapter::ProbeSender;
use rzmap_core::probe::{self, PortBitmap, ProbeConfig, ProbeInput, ProbeModule, ReplyCheck};
use rzmap_core::target::Target;
use rzmap_core::validate::Validator;

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn modules() -> Vec<(&'static str, Box<dyn ProbeModule>)> {
    vec![
        ("tcp_synscan", probe::create("tcp_synscan", None).unwrap()),
        ("icmp_echoscan", probe::create("icmp_echoscan", None).unwrap()),
        ("udp", probe::create("udp", Some("text:hello world")).unwrap()),
    ]
}

fn config() -> ProbeConfig {
    ProbeConfig {
        target_ports: vec![80],
        ..ProbeConfig::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
    }
}

fn bench_words(c: &mut Criterion) {
    let v = Validator::new([9; 16]);
    let mut i = 0u32;
    c.bench_function("validator_words", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(v.words(US, Ipv4Addr::from(i), 80))
        })
    });
}

/// One AES call per probe (the baseline) against one call per group of 8 (`words_many`),
/// per probe.
fn bench_words_grouped(c: &mut Criterion) {
    let v = Validator::new([9; 16]);
    let mut g = c.benchmark_group("validator_words_per_probe");
    g.throughput(Throughput::Elements(8));
    let mut i = 0u32;
    g.bench_function("one_call_each_x8", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for k in 0..8u32 {
                acc ^= v.words(US, Ipv4Addr::from(i.wrapping_add(k)), 80)[0];
            }
            i = i.wrapping_add(8);
            black_box(acc)
        })
    });
    g.bench_function("grouped_8", |b| {
        let mut keys = [(US, US, 80u16); 8];
        let mut out = [[0u32; 4]; 8];
        b.iter(|| {
            for (k, key) in keys.iter_mut().enumerate() {
                key.1 = Ipv4Addr::from(i.wrapping_add(k as u32));
            }
            v.words_many(&keys, &mut out);
            i = i.wrapping_add(8);
            black_box(out[7][0])
        })
    });
    g.finish();
}

/// The sender's grouped path (`build_group`: 8 probes, one AES call) per probe, against
/// `build` one probe at a time in the same run.
fn bench_sender_grouped(c: &mut Criterion) {
    use rzmap_core::engine::ProbeSpec;
    use rzmap_core::link::FrameBatch;
    let cfg = std::sync::Arc::new(config());
    let m: Box<dyn ProbeModule> = probe::create("tcp_synscan", None).unwrap();
    let mut s = ProbeSender::new(m.into(), cfg, Validator::new([9; 16]), AesRand::from_seed(1));
    let mut batch = FrameBatch::new(64, 2048);
    for k in 0..64 {
        s.prepare(batch.slot_mut(k));
    }
    let mut g = c.benchmark_group("sender_tcp_synscan_per_probe");
    g.throughput(Throughput::Elements(64));
    let mut i = 0u32;
    g.bench_function("build_one_at_a_time_x64", |b| {
        b.iter(|| {
            batch.clear();
            for _ in 0..64 {
                i = i.wrapping_add(1);
                let t = Target::v4(0xc613_0000 | (i & 0xffff), 80);
                let len = s.build(batch.next_slot(), &t, 0, US);
                batch.commit(len);
            }
            black_box(batch.len())
        })
    });
    g.bench_function("build_group_8_x8", |b| {
        b.iter(|| {
            batch.clear();
            for _ in 0..8 {
                let mut group = [ProbeSpec::EMPTY; 8];
                for p in &mut group {
                    i = i.wrapping_add(1);
                    p.target = Target::v4(0xc613_0000 | (i & 0xffff), 80);
                    p.src = US;
                }
                s.build_group(&mut batch, &group);
            }
            black_box(batch.len())
        })
    });
    g.finish();
}

fn bench_make(c: &mut Criterion) {
    let v = Validator::new([9; 16]);
    let cfg = config();
    let mut g = c.benchmark_group("make");
    g.throughput(Throughput::Elements(1));
    for (name, m) in modules() {
        let mut buf = vec![0u8; 2048];
        m.prepare(&mut buf, &cfg);
        let mut rng = AesRand::from_seed(1);
        let mut i = 0u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let dst = Ipv4Addr::from(0xc613_0000 | (i & 0xffff));
                let validation = v.words(US, dst, 80);
                let p = ProbeInput {
                    src: US,
                    dst,
                    dport: 80,
                    probe_num: 0,
                    validation,
                    now: Default::default(),
                };
                black_box(m.make(&mut buf, &cfg, &p, &mut rng))
            })
        });
    }
    g.finish();
}

/// The sender thread's per-probe path: validation words, clock, module `make`.
fn bench_sender(c: &mut Criterion) {
    let cfg = std::sync::Arc::new(config());
    let mut g = c.benchmark_group("sender");
    g.throughput(Throughput::Elements(1));
    for (name, m) in modules() {
        let mut s =
            ProbeSender::new(m.into(), cfg.clone(), Validator::new([9; 16]), AesRand::from_seed(1));
        let mut buf = vec![0u8; 2048];
        s.prepare(&mut buf);
        let mut i = 0u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let t = Target::v4(0xc613_0000 | (i & 0xffff), 80);
                black_box(s.build(&mut buf, &t, 0, US))
            })
        });
    }
    g.finish();
}

/// A matching reply for each module, built by hand: SYN-ACK, echo reply, UDP.
fn reply_for(name: &str, v: &Validator, cfg: &ProbeConfig) -> Vec<u8> {
    let target = Ipv4Addr::new(198, 19, 1, 2);
    let (proto, l4): (u8, Vec<u8>) = match name {
        "tcp_synscan" => {
            let w = v.words(US, target, 80);
            let mut t = vec![0u8; 24];
            t[0..2].copy_from_slice(&80u16.to_be_bytes());
            t[2..4].copy_from_slice(&cfg.source_port(w[1], 0).to_be_bytes());
            t[8..12].copy_from_slice(&w[0].wrapping_add(1).to_be_bytes());
            t[12] = 6 << 4;
            t[13] = 0x12;
            t[20..24].copy_from_slice(&[2, 4, 5, 0xb4]);
            (6, t)
        }
        "icmp_echoscan" => {
            let w = v.words(US, target, 0);
            let mut t = vec![0u8; 28];
            t[4..6].copy_from_slice(&((w[1] & 0xffff) as u16).to_be_bytes());
            t[6..8].copy_from_slice(&((w[2] & 0xffff) as u16).to_be_bytes());
            (1, t)
        }
        _ => {
            let w = v.words(US, target, 80);
            let mut t = vec![0u8; 8 + 32];
            t[0..2].copy_from_slice(&80u16.to_be_bytes());
            t[2..4].copy_from_slice(&cfg.source_port(w[1], 0).to_be_bytes());
            t[4..6].copy_from_slice(&40u16.to_be_bytes());
            (17, t)
        }
    };
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[8] = 60;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&target.octets());
    ip[16..20].copy_from_slice(&US.octets());
    ip.extend_from_slice(&l4);
    ip
}

fn bench_validate_classify(c: &mut Criterion) {
    let v = Validator::new([9; 16]);
    let cfg = config();
    let ports = PortBitmap::new(&[80]);
    let scope = |a: Ipv4Addr| a.octets()[0] == 198 && a.octets()[1] == 19;
    let chk = ReplyCheck {
        validator: &v,
        sport_first: cfg.sport_first,
        sport_count: cfg.sport_count,
        probes: 1,
        in_scope: &scope,
        target_ports: &ports,
        validate_source_port: None,
    };
    let mut g = c.benchmark_group("validate_classify");
    g.throughput(Throughput::Elements(1));
    for (name, m) in modules() {
        let pkt = reply_for(name, &v, &cfg);
        let kind = m.validate(&pkt, &chk).expect("bench reply validates");
        let schema = Schema::for_module(m.fields());
        let mut rec = Record::for_schema(&schema);
        g.bench_function(name, |b| {
            b.iter(|| {
                let k = m.validate(black_box(&pkt), &chk).unwrap_or(kind);
                rec.clear();
                m.classify(&pkt, &k, &mut rec, schema.module_start());
            })
        });
        g.bench_function(format!("{name}/validate_only"), |b| {
            b.iter(|| black_box(m.validate(black_box(&pkt), &chk)))
        });
        g.bench_function(format!("{name}/reject"), |b| {
            let mut bad = pkt.clone();
            bad[12] ^= 0xff; // source out of scope
            b.iter(|| black_box(m.validate(black_box(&bad), &chk)))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_words,
    bench_words_grouped,
    bench_make,
    bench_sender,
    bench_sender_grouped,
    bench_validate_classify
);
criterion_main!(benches);
