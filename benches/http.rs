//! Micro-benchmarks of the HTTP hot path, without sockets: what one reactor turn spends per
//! request once the bytes are in memory.
//!
//! - `decode/wrk_get`: the request wrk sends (request line and `Host`), decoded with the
//!   connection's [`RequestDecoder`];
//! - `decode/techempower_get`: the same with the six browser-like header fields of the
//!   TechEmpower plaintext test;
//! - `decode/pipelined_16`: sixteen wrk requests in one buffer, as one read brings them under
//!   `scripts/pipeline.lua`, decoded one after another (throughput counts requests);
//! - `encode/plaintext`, `encode/json_keep_alive`: a response appended to a reused buffer with
//!   the cached `Date` (the second as `ab -k` sees it, with `Connection: keep-alive`);
//! - `chunked/…`: a `Transfer-Encoding: chunked` body through [`ChunkedDecoder`], in large
//!   chunks (bulk copies) and in tiny ones (the byte-at-a-time framing state machine).
//!
//! `cargo bench --bench http` measures (about 15 s: short warm-up and measurement times, since
//! these loops are nanoseconds long and settle fast); `cargo test --benches` runs each once as
//! a test, and the set-up of each checks that the bytes decode to what they should.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use evloop::http::chunked::ChunkedDecoder;
use evloop::http::decoder::header_storage;
use evloop::http::{ConnectionHeader, DateCache, Decoded, Limits, RequestDecoder, Response};

/// What `wrk -t1 -c64 http://127.0.0.1:8888/plaintext` sends on every request.
const WRK_GET: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8888\r\n\r\n";

/// The TechEmpower plaintext request: a browser-like head with six header fields.
const TECHEMPOWER_GET: &[u8] = b"GET /plaintext HTTP/1.1\r\n\
Host: server\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20130501 Firefox/30.0 AppleWebKit/600.00 Chrome/30.0.0000.0 Trident/10.0 Safari/600.00\r\n\
Cookie: uid=12345678901234567890; __utma=1.1234567890.1234567890.1234567890.1234567890.12; wd=2560x1600\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Connection: keep-alive\r\n\
\r\n";

/// Requests per write in the pipelined wrk scenario.
const PIPELINE_DEPTH: usize = 16;

/// Decode the one bodiless request at the front of `input`; returns the bytes it used.
fn decode_one(decoder: &mut RequestDecoder, input: &[u8], limits: &Limits) -> usize {
    let mut storage = header_storage();
    match decoder.decode(input, &mut storage, limits) {
        Ok(Decoded::Request {
            consumed, request, ..
        }) => {
            black_box(request.path);
            consumed
        }
        other => panic!("expected one complete bodiless request, got {other:?}"),
    }
}

/// Decode every request in `input`, front to back, as the connection does after one read;
/// returns how many there were.
fn decode_all(decoder: &mut RequestDecoder, input: &[u8], limits: &Limits) -> usize {
    let mut at = 0;
    let mut requests = 0;
    while at < input.len() {
        at += decode_one(decoder, &input[at..], limits);
        requests += 1;
    }
    requests
}

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("decode");

    for (name, request) in [("wrk_get", WRK_GET), ("techempower_get", TECHEMPOWER_GET)] {
        let mut decoder = RequestDecoder::new();
        assert_eq!(decode_one(&mut decoder, request, &limits), request.len());
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| decode_one(&mut decoder, black_box(request), &limits))
        });
    }

    let pipelined = WRK_GET.repeat(PIPELINE_DEPTH);
    let mut decoder = RequestDecoder::new();
    assert_eq!(
        decode_all(&mut decoder, &pipelined, &limits),
        PIPELINE_DEPTH
    );
    group.throughput(Throughput::Elements(PIPELINE_DEPTH as u64));
    group.bench_function("pipelined_16", |b| {
        b.iter(|| decode_all(&mut decoder, black_box(&pipelined), &limits))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let date = DateCache::new();
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));

    let plaintext = Response::text(200, "Hello, World!");
    plaintext.encode(&mut out, &date, ConnectionHeader::Omit, false);
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n") && out.ends_with(b"\r\n\r\nHello, World!"));
    group.bench_function("plaintext", |b| {
        b.iter(|| {
            out.clear();
            black_box(&plaintext).encode(&mut out, &date, ConnectionHeader::Omit, false)
        })
    });

    let json = Response::json_static(200, r#"{"message":"Hello, World!"}"#);
    group.bench_function("json_keep_alive", |b| {
        b.iter(|| {
            out.clear();
            black_box(&json).encode(&mut out, &date, ConnectionHeader::KeepAlive, false)
        })
    });
    group.finish();
}

/// `total` bytes of body framed as chunks of `chunk` bytes, then the last chunk and an empty
/// trailer section.
fn chunked_body(total: usize, chunk: usize) -> Vec<u8> {
    let mut framed = Vec::with_capacity(total + total / chunk * 8 + 8);
    let mut left = total;
    let mut byte = 0u8;
    while left > 0 {
        let size = chunk.min(left);
        framed.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        for _ in 0..size {
            framed.push(b'a' + byte % 26);
            byte = byte.wrapping_add(1);
        }
        framed.extend_from_slice(b"\r\n");
        left -= size;
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    framed
}

fn chunked(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("chunked");
    for (name, total, chunk) in [
        ("64KiB_in_4KiB_chunks", 64 * 1024, 4 * 1024),
        ("4KiB_in_16B_chunks", 4 * 1024, 16),
    ] {
        let framed = chunked_body(total, chunk);
        let mut body = Vec::with_capacity(total);
        let mut decoder = ChunkedDecoder::new();
        let used = decoder
            .decode(&framed, &mut body, limits.max_body, limits.max_head_bytes)
            .expect("a well-formed chunked body");
        assert!(decoder.is_done() && used == framed.len() && body.len() == total);

        group.throughput(Throughput::Bytes(total as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                body.clear();
                let mut decoder = ChunkedDecoder::new();
                decoder.decode(
                    black_box(&framed),
                    &mut body,
                    limits.max_body,
                    limits.max_head_bytes,
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = decode, encode, chunked
}
criterion_main!(benches);
