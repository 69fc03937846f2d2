//! Template rendering speed: the shipped SIP OPTIONS template (built as the documentation's
//! example is: addresses, ports and random fields in a multi-line request), and a fixed-size
//! binary DNS template, each rendered for one packet.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rzmap_core::aesrand::AesRand;
use rzmap_core::probe::template::{Template, TemplateInput};

const SIP: &[u8] = include_bytes!("../../../examples/udp-probes/sip_options.tpl");
const DNS: &[u8] = include_bytes!("../../../examples/udp-probes/dns_53_random_id.tpl");

fn bench_render(c: &mut Criterion, name: &str, text: &[u8]) {
    let template = Template::parse(text, name).expect("valid example template");
    let mut out = vec![0u8; template.max_len()];
    let mut rng = AesRand::from_seed(1);
    let mut input = TemplateInput {
        saddr: Ipv4Addr::new(198, 18, 0, 1),
        daddr: Ipv4Addr::new(198, 19, 12, 34),
        sport: 40000,
        dport: 5060,
        unix_sec: 1_700_000_000,
        unix_usec: 123_456,
    };
    let sample_len = template.render(&mut out, &input, &mut rng);
    let mut group = c.benchmark_group("template_render");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{name} ({sample_len} B)"), |b| {
        b.iter(|| {
            input.daddr = Ipv4Addr::from(u32::from(input.daddr).wrapping_add(1));
            black_box(template.render(&mut out, black_box(&input), &mut rng))
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_render(c, "sip_options.tpl", SIP);
    bench_render(c, "dns_53_random_id.tpl", DNS);
    // The SIP template's 38 random characters alone: the share the generator costs.
    bench_render(c, "random-38", b"${RAND_ALPHANUM=16}${RAND_ALPHANUM=10}${RAND_DIGIT=12}");
}

criterion_group!(template, benches);
criterion_main!(template);
