//! `services/*`: the router's own services on the service thread's one
//! core, a request's whole way there and back: posted into the services'
//! mailbox as a worker posts it, answered from the tables, the reply
//! posted back and taken out as the worker takes it. Each iteration
//! serves one batch; criterion reports what a second holds.
//! - `dhcp_transactions`: a DISCOVER and its REQUEST from acme-web's VM
//!   (OFFER and ACK back), 32 transactions a batch.
//! - `dns_authoritative`: 64 queries for the VM's own name (A).
//! - `dns_cached`: 64 queries for a name the tenant's upstream answered
//!   once before (from the cache).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xvr_bench::example_state;
use xvr_dataplane::pipeline::Meta;
use xvr_dataplane::service::{links, PortBudget, ServiceLink, Services};
use xvr_dataplane::{Frame, Pipeline, Tables, Verdict};
use xvr_testkit::headers;

const VM: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x10];
const ROUTER: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
const UPSTREAM: [u8; 4] = [198, 51, 100, 53];
const BATCH: usize = 64;

/// The example with acme's VM named `web` and an upstream resolver.
fn tables() -> Tables {
    let mut state = example_state();
    state.neighbors[0].hostname = Some("web".into());
    let acme = state.tenants.iter_mut().find(|t| t.name == "acme").unwrap();
    acme.dns.upstreams = vec![UPSTREAM.into()];
    // The bench measures the services, not the tenant's fair share.
    acme.limits.service_requests_per_second = Some(u32::MAX);
    acme.limits.service_requests_per_port_second = Some(u32::MAX);
    state.build().unwrap()
}

/// A DHCP message of `kind` (1 DISCOVER, 3 REQUEST) from the VM,
/// broadcast from 0.0.0.0, with `options` after the type.
fn dhcp(kind: u8, options: &[u8]) -> Vec<u8> {
    let mut m = vec![1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0x80, 0];
    m.extend([0; 16]);
    m.extend(VM);
    m.extend([0; 10 + 192]);
    m.extend([99, 130, 83, 99, 53, 1, kind]);
    m.extend(options);
    m.push(255);
    headers(VM, [0xff; 6], [0; 4], [255; 4]).udp(68, 67, &m)
}

/// A DNS query for `name` (A) from the VM to its gateway.
fn dns(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    headers(VM, ROUTER, [10, 0, 0, 10], [10, 0, 0, 1]).udp(40000, 53, &q)
}

/// The services and a worker's link to them.
struct Rig {
    tables: Tables,
    port: u16,
    services: Services,
    link: ServiceLink,
    budget: PortBudget,
    pipeline: Pipeline,
    second: u32,
}

impl Rig {
    fn new() -> Rig {
        let tables = tables();
        let port = tables.port_by_name("acme-web").unwrap();
        let (services, mut link) = links(1).unwrap();
        Rig {
            tables,
            port,
            services,
            link: link.remove(0),
            budget: PortBudget::default(),
            pipeline: Pipeline::new(),
            second: 0,
        }
    }

    /// Sends `inputs` as a worker does (through the pipeline, which
    /// must hand them all to the services), serves them, and returns
    /// what came back.
    fn exchange(&mut self, inputs: &[Vec<u8>]) -> Vec<(Vec<u8>, Meta)> {
        let mut bufs: Vec<Vec<u8>> = inputs.iter().map(|_| vec![0u8; 2048]).collect();
        let mut frames: Vec<Frame<'_>> = bufs
            .iter_mut()
            .zip(inputs)
            .map(|(buf, f)| Frame::with_data(buf, f, self.port))
            .collect();
        self.pipeline.run(&self.tables, &mut frames);
        assert!(frames.iter().all(|f| f.meta.verdict == Verdict::Local));
        self.second += 1;
        let budget = (&self.tables, &mut self.budget, self.second);
        self.link
            .send(&mut frames, budget, &mut self.pipeline.stats);
        assert_eq!(self.services.serve_waiting(&self.tables), inputs.len());
        let mut out = Vec::new();
        let mut reply = vec![0u8; 2048];
        while let Some((len, meta)) = self.link.receive_into(&mut reply) {
            out.push((reply[..len].to_vec(), meta));
        }
        out
    }

    /// Measures `inputs` served as one batch, each with one reply.
    fn bench(&mut self, c: &mut Criterion, id: &str, inputs: &[Vec<u8>], per_batch: u64) {
        let mut group = c.benchmark_group("services");
        group.throughput(Throughput::Elements(per_batch));
        group.bench_function(id, |b| {
            b.iter(|| assert_eq!(self.exchange(inputs).len(), inputs.len()))
        });
        group.finish();
    }
}

/// Puts an upstream's answer for `name` in the cache: the forwarded
/// query comes back answered, as the worker would hand it over.
fn warm_cache(rig: &mut Rig, name: &str) {
    let sent = rig.exchange(&[dns(1, name)]);
    let (query, meta) = &sent[0];
    assert_eq!(meta.stage, xvr_dataplane::pipeline::Stage::L3, "forwarded");
    let payload = &query[42..];
    let port = u16::from_be_bytes([query[34], query[35]]);
    let mut answer = payload.to_vec();
    answer[2] |= 0x80; // a response
    answer[7] = 1; // one answer
    answer.truncate(12 + name.len() + 2 + 4); // the question, no EDNS
    answer[11] = 0;
    answer.extend([
        0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 198, 51, 100, 7,
    ]);
    let frame = headers(ROUTER, ROUTER, UPSTREAM, [10, 0, 0, 1]).udp(53, port, &answer);
    let mut buf = vec![0u8; 2048];
    let mut frames = [Frame::with_data(&mut buf, &frame, rig.port)];
    let mut meta = Meta::new(rig.port);
    meta.tenant = rig.tables.tenant_id("acme").unwrap();
    meta.verdict = Verdict::Local;
    frames[0].meta = meta;
    rig.second += 1;
    let budget = (&rig.tables, &mut rig.budget, rig.second);
    rig.link.send(&mut frames, budget, &mut rig.pipeline.stats);
    rig.services.serve_waiting(&rig.tables);
    assert!(
        rig.link.receive_into(&mut buf).is_some(),
        "the answer to the VM"
    );
}

fn services(c: &mut Criterion) {
    let mut rig = Rig::new();
    let request = [50, 4, 10, 0, 0, 10, 54, 4, 10, 0, 0, 1];
    let transactions: Vec<Vec<u8>> = (0..BATCH / 2)
        .flat_map(|_| [dhcp(1, &[]), dhcp(3, &request)])
        .collect();
    rig.bench(c, "dhcp_transactions", &transactions, (BATCH / 2) as u64);
    let own: Vec<Vec<u8>> = (0..BATCH as u16)
        .map(|i| dns(i, "web.acme.internal"))
        .collect();
    rig.bench(c, "dns_authoritative", &own, BATCH as u64);
    warm_cache(&mut rig, "www.example.test");
    let cached: Vec<Vec<u8>> = (0..BATCH as u16)
        .map(|i| dns(i, "www.example.test"))
        .collect();
    rig.bench(c, "dns_cached", &cached, BATCH as u64);
    let counters = rig.services.counters().lock().unwrap().dns;
    assert!(
        counters.from_cache > 0 && counters.forwarded == 1,
        "{counters:?}"
    );
}

criterion_group!(benches, services);
criterion_main!(benches);
