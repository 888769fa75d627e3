//! `protocol::proxy::parse`, the PROXY protocol header a trusted load
//! balancer sends first: it never reads past its bounds, never looks at
//! the bytes behind a header, decides the same on any prefix that holds
//! the header, keeps its errors when more bytes come, and round-trips the
//! addresses it carries through both versions' formatters.

#![no_main]
#![forbid(unsafe_code)]

mod common;

use common::{same, show};
use ferry::internal::protocol::proxy::{self, MAX_V1, MAX_V2, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = proxy::parse(data);
    match parsed {
        Ok(Status::Complete(header)) => {
            assert!(header.consumed <= data.len(), "{}", show(data));
            assert!(header.consumed <= MAX_V2.max(MAX_V1));
            assert!(header.version == 1 || header.version == 2);
            assert_eq!(header.source.is_some(), header.destination.is_some());
            // What follows the header plays no part.
            same(
                proxy::parse(&data[..header.consumed]),
                parsed,
                format_args!("the header alone of {}", show(data)),
            );
            let mut more = data[..header.consumed].to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n");
            same(proxy::parse(&more), parsed, "with a request behind it");
            // Every shorter prefix asks for more.
            for cut in 0..header.consumed {
                same(
                    proxy::parse(&data[..cut]),
                    Ok(Status::Partial),
                    format_args!("prefix {cut} of {}", show(data)),
                );
            }
            if let (Some(src), Some(dst)) = (header.source, header.destination) {
                for bytes in [
                    proxy::format_v1(Some((src, dst))),
                    proxy::format_v2(Some((src, dst))),
                ] {
                    let Ok(Status::Complete(again)) = proxy::parse(&bytes) else {
                        panic!("formatted {} does not parse", show(&bytes));
                    };
                    same(again.source, Some(src), "source round trip");
                    same(again.destination, Some(dst), "destination round trip");
                    same(again.consumed, bytes.len(), "formatted length");
                }
            }
        }
        Ok(Status::Partial) => {
            // Never waits for more than the longest header it takes.
            assert!(data.len() < MAX_V2, "partial at {} bytes", data.len());
        }
        Err(err) => {
            // Errors are final: more bytes do not make a header.
            let mut more = data.to_vec();
            more.extend_from_slice(b"\r\n");
            same(proxy::parse(&more), Err(err), format_args!("after {}", show(data)));
            assert!(!err.to_string().is_empty());
        }
    }
});
