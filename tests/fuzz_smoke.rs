//! Stable-toolchain smoke runs of every fuzz target (`fuzz/`), so CI exercises them without
//! nightly or libFuzzer: each target's body (in `fuzz/src/lib.rs`, included here) runs over its
//! seeds, a few thousand deterministic mutations of them, and proptest-generated inputs.
//! Together well under 30 s in a debug build.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code, unreachable_pub)]
mod targets;

use std::sync::Arc;

use proptest::prelude::*;
use rzmap_core::probe::ProbeModule;
use targets::{Mutation, ReplyCase, ReplyEnv, Shape, TARGETS};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens that matter to the parsers, spliced in by the mutator.
const DICTIONARY: &[&str] = &[
    "${",
    "}",
    "=",
    "${HEX=",
    "${RAND_BYTE=",
    "${SADDR}",
    "/",
    ".",
    "..",
    "/33",
    "/0",
    ":",
    "::",
    "#",
    "\n",
    "\r\n",
    " ",
    "\t",
    "\u{3000}",
    "é",
    ",",
    "-",
    "*",
    "%",
    "0x",
    "08",
    "255",
    "256",
    "65535",
    "65536",
    "4294967296",
    "18446744073709551616",
    "1.5",
    "G",
    "K",
    "\"",
    "'",
    "--",
    "&&",
    "||",
    "(",
    ")",
    "!=",
    "text:",
    "hex:",
    "template-fields",
    "rate",
    "target-ports",
];

fn mutate(seed: &[u8], others: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = [0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'.'][rng.below(8)];
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i) + 1;
                v.drain(i..i + n.min(8));
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let j = rng.below(len - i) + i;
                let chunk = v[i..=j].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            5 if !others.is_empty() => {
                let o = &others[rng.below(others.len())];
                let i = rng.below(o.len() + 1);
                let at = rng.below(len + 1);
                v.splice(at..at, o[i..].iter().take(16).copied());
            }
            _ => {
                let t = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                let at = rng.below(len + 1);
                v.splice(at..at, t.iter().copied());
            }
        }
        v.truncate(512);
    }
    v
}

struct Setup {
    mods: Vec<Arc<dyn ProbeModule>>,
    env: ReplyEnv,
}

fn run(s: &Setup, target: &str, data: &[u8]) {
    match target {
        "wire_parse" => targets::wire_parse(data),
        "reply_validate" => targets::reply_validate_bytes(data, &s.mods, &s.env),
        "template_parse" => targets::template_parse(data),
        "list_parse" => targets::list_parse(data),
        "conffile_parse" => targets::conffile_parse(data),
        "value_parsers" => targets::value_parsers(data),
        "filter_parse" => targets::filter_parse(data),
        other => panic!("unknown target {other}"),
    }
}

fn setup() -> Setup {
    Setup { mods: targets::modules(), env: ReplyEnv::new() }
}

/// How many mutations of the seeds each target runs (the reply target has its own loop).
const MUTATIONS: usize = 1000;

#[test]
fn every_target_survives_mutated_seeds() {
    let s = setup();
    for &t in TARGETS {
        let seeds = targets::seeds(t);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ t.len() as u64);
        for seed in &seeds {
            run(&s, t, seed);
        }
        if seeds.is_empty() {
            continue;
        }
        for i in 0..MUTATIONS {
            let seed = &seeds[i % seeds.len()];
            let input = mutate(seed, &seeds, &mut rng);
            run(&s, t, &input);
        }
    }
}

/// Every module's own answers and ICMP errors validate unmutated, and survive random
/// structured mutations.
#[test]
fn replies_survive_structured_mutations() {
    let s = setup();
    let mut rng = Rng(42);
    let mut cases = 0;
    for module in 0..targets::MODULES.len() as u8 {
        for i in 0..200u32 {
            let shape = match i % 4 {
                0 => Shape::Answer { rst: false, payload: vec![1; rng.below(4)] },
                1 => Shape::Answer { rst: true, payload: vec![] },
                2 => Shape::IcmpError {
                    ty: rng.next() as u8,
                    raw_type: i % 16 == 2,
                    code: rng.next() as u8,
                    quote_extra: (rng.next() as u8) % 48,
                    quote_short: (rng.next() as u8) % 30,
                },
                _ => Shape::Raw((0..rng.below(80)).map(|_| rng.next() as u8).collect()),
            };
            let mutations = (0..rng.below(5))
                .map(|_| {
                    let b = rng.next() as u8;
                    match rng.below(13) {
                        0 => Mutation::SetByte { at: rng.next() as u16, value: b },
                        1 => Mutation::XorByte { at: rng.next() as u16, mask: b },
                        2 => Mutation::Truncate { len: rng.below(80) as u16 },
                        3 => Mutation::Append(vec![b; rng.below(20)]),
                        4 => Mutation::SetTotalLen(rng.next() as u16 % 120),
                        5 => Mutation::SetIhl(b),
                        6 => Mutation::SetProtocol([1, 6, 17, b][rng.below(4)]),
                        7 => Mutation::SetFragment(rng.next() as u16),
                        8 => Mutation::SetL4Byte { at: b % 48, value: rng.next() as u8 },
                        9 => Mutation::SetTcpOffset(b),
                        10 => Mutation::SetQuotedByte { at: b % 40, value: rng.next() as u8 },
                        11 => Mutation::InsertTcpOptions(
                            (0..rng.below(44))
                                .map(|_| [0, 1, 2, 3, 4, 8, 10][rng.below(7)])
                                .collect(),
                        ),
                        _ => Mutation::FixIpChecksum,
                    }
                })
                .collect();
            let case = ReplyCase {
                module,
                shape,
                probe_num: (i / 4 % 3) as u8,
                port: rng.next() as u8,
                target_low: rng.next() as u16,
                mutations,
            };
            targets::reply_validate(&case, &s.mods, &s.env);
            cases += 1;
        }
    }
    assert_eq!(cases, 200 * targets::MODULES.len());
}

/// Text that looks like what the string parsers read.
fn texty() -> impl Strategy<Value = Vec<u8>> {
    "[0-9a-zA-Z .,/:%#=*\"'${}_\\-\n\r\t]{0,48}".prop_map(String::into_bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_target_survives_random_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        which in 0..TARGETS.len(),
    ) {
        run(&setup(), TARGETS[which], &data);
    }

    #[test]
    fn text_targets_survive_random_text(data in texty(), which in 2..TARGETS.len()) {
        run(&setup(), TARGETS[which], &data);
    }
}

/// Writes every target's seeds as a libFuzzer corpus under `$RZMAP_FUZZ_CORPUS/<target>/`
/// (does nothing without the variable): `RZMAP_FUZZ_CORPUS=fuzz/corpus cargo test --test
/// fuzz_smoke write_seed_corpora`.
#[test]
fn write_seed_corpora() {
    let Some(dir) = std::env::var_os("RZMAP_FUZZ_CORPUS") else { return };
    for &t in TARGETS {
        let d = std::path::Path::new(&dir).join(t);
        std::fs::create_dir_all(&d).expect("create corpus directory");
        for (i, s) in targets::seeds(t).iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), s).expect("write seed");
        }
    }
}
