//! The hot paths of every request, without sockets: the line-protocol
//! command parser and the HTTP request head handling. A regression here
//! shows as a change in time per call long before it shows in `bench/run`.
//!
//! `cargo bench --bench protocol` (criterion; `-- <filter>` runs some).
//! Inputs are fixed byte strings shaped like what clients send; the
//! functions are pure, so nothing here touches the network or the disk.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry::internal::protocol::{http, line};

/// One line of each kind a busy session sends, with its terminator.
const LINES: &[(&str, &[u8])] = &[
    ("get", b"GET holiday-photos-2025.tar\n"),
    ("view_crlf", b"VIEW report.pdf\r\n"),
    ("put", b"PUT 1073741824 backups/../big upload.bin\n"),
    ("auth", b"AUTH alice correct horse battery staple\n"),
    ("list", b"LIST\n"),
    (
        "expect",
        b"EXPECT sha256=5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\n",
    ),
    ("unknown", b"FROB something\n"),
];

fn line_parser(c: &mut Criterion) {
    let mut g = c.benchmark_group("line");
    for (name, input) in LINES {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(*name, |b| b.iter(|| line::parse(black_box(input))));
    }
    // A line with no terminator yet, as read when a segment ends mid-line:
    // the parser must look at every byte and answer Partial.
    let partial = vec![b'a'; 4000];
    g.throughput(Throughput::Bytes(partial.len() as u64));
    g.bench_function("partial_4000", |b| {
        b.iter(|| line::parse(black_box(&partial)))
    });
    // The longest line: the cut-off path.
    let too_long = vec![b'a'; line::MAX_LINE + 100];
    g.bench_function("too_long", |b| b.iter(|| line::parse(black_box(&too_long))));
    // 64 pipelined GETs in one buffer, parsed the way a session consumes them.
    let mut pipelined = Vec::new();
    for i in 0..64 {
        pipelined.extend_from_slice(format!("GET file-{i:04}.bin\n").as_bytes());
    }
    g.throughput(Throughput::Elements(64));
    g.bench_function("pipelined_64_get", |b| {
        b.iter(|| {
            let mut rest = black_box(&pipelined[..]);
            let mut n = 0;
            while let line::Status::Complete(p) = line::parse(rest) {
                n += usize::from(p.command.is_ok());
                rest = &rest[p.consumed..];
            }
            n
        })
    });
    g.finish();
}

/// Request heads as curl, wrk and a browser send them.
const HEADS: &[(&str, &[u8])] = &[
    (
        "curl_get",
        b"GET /files/report.pdf HTTP/1.1\r\nHost: 127.0.0.1:9980\r\nAuthorization: Basic ZGVtbzpzZWNyZXQ=\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    ),
    (
        "curl_put",
        b"PUT /files/my%20upload.bin HTTP/1.1\r\nHost: 127.0.0.1:9980\r\nAuthorization: Basic ZGVtbzpzZWNyZXQ=\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n",
    ),
    (
        "range_get",
        b"GET /files/video.mp4?preview HTTP/1.1\r\nHost: h\r\nAuthorization: Basic ZGVtbzpzZWNyZXQ=\r\nRange: bytes=1048576-2097151\r\n\r\n",
    ),
    (
        "browser_get",
        b"GET /files/photo.jpg HTTP/1.1\r\nHost: files.example.org\r\nConnection: keep-alive\r\nAuthorization: Basic ZGVtbzpzZWNyZXQ=\r\nsec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\nsec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: \"Linux\"\r\nUpgrade-Insecure-Requests: 1\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\nSec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-User: ?1\r\nSec-Fetch-Dest: document\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-GB,en;q=0.9\r\n\r\n",
    ),
];

fn http_head(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    for (name, input) in HEADS {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(format!("parse_{name}"), |b| {
            b.iter(|| http::parse_head(black_box(input)))
        });
    }
    // The head cut short: httparse answers Partial and the session waits.
    let cut = &HEADS[0].1[..HEADS[0].1.len() - 3];
    g.throughput(Throughput::Bytes(cut.len() as u64));
    g.bench_function("parse_partial", |b| {
        b.iter(|| http::parse_head(black_box(cut)))
    });
    // What a request costs after parsing: route, decode the name.
    g.throughput(Throughput::Elements(1));
    g.bench_function("route_and_decode_name", |b| {
        b.iter(
            || match http::route(black_box(b"/files/my%20holiday%20photos.tar")) {
                http::Route::File(raw) => http::decode_name(raw),
                _ => None,
            },
        )
    });
    // The response head of every download.
    let mut out = Vec::with_capacity(512);
    g.bench_function("write_head_200", |b| {
        b.iter(|| {
            out.clear();
            http::write_head(
                &mut out,
                200,
                &[("Content-Type", "application/octet-stream")],
                Some(black_box(4096)),
                false,
            );
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, line_parser, http_head);
criterion_main!(benches);
