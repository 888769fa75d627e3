//! WebDAV's request bodies and fields (`protocol::webdav`): whatever
//! arrives, parsing ends (bounded by the body's size), a body with a
//! `<!DOCTYPE` is never accepted, and what is accepted holds together:
//! a `PROPPATCH` value stored for a property parses back, alone, to the
//! same property (it is what a later `PROPFIND` sends), names are never
//! empty, an `If` field has no empty list.

#![no_main]
#![forbid(unsafe_code)]

mod common;

use common::{same, show};
use ferry::internal::protocol::webdav::{self, Condition, PropFind, PropUpdate, XmlError};
use libfuzzer_sys::fuzz_target;

/// Whether the document's prolog (before its root element, where XML
/// allows one) holds a `<!DOCTYPE`: the declaration, comments and
/// processing instructions before it are skipped. (`<!DOCTYPE` inside an
/// attribute value or text declares nothing.)
fn prolog_has_doctype(data: &[u8]) -> bool {
    let mut rest = data;
    loop {
        rest = rest.trim_ascii_start();
        let skip_to = |rest: &[u8], end: &[u8]| {
            rest.windows(end.len())
                .position(|w| w == end)
                .map(|at| at + end.len())
        };
        if rest.starts_with(b"<!DOCTYPE") {
            return true;
        }
        let next = if rest.starts_with(b"<?") {
            skip_to(rest, b"?>")
        } else if rest.starts_with(b"<!--") {
            skip_to(rest, b"-->")
        } else {
            return false;
        };
        match next {
            Some(at) => rest = &rest[at..],
            None => return false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let has_doctype = prolog_has_doctype(data);
    let check = |result: Result<(), XmlError>| {
        if has_doctype {
            assert!(result.is_err(), "a DTD was accepted: {}", show(data));
        }
    };
    check(webdav::parse_propfind(data).map(|find| {
        if let PropFind::Props(props) = find {
            assert!(props.iter().all(|p| !p.name.is_empty()), "{}", show(data));
        }
    }));
    check(webdav::parse_propertyupdate(data).map(|updates| {
        assert!(!updates.is_empty());
        for update in updates {
            let PropUpdate::Set { prop, element, .. } = update else {
                continue;
            };
            assert!(!prop.name.is_empty());
            let again = format!(
                "<D:propertyupdate xmlns:D=\"DAV:\"><D:set><D:prop>{element}</D:prop></D:set></D:propertyupdate>"
            );
            let reparsed = webdav::parse_propertyupdate(again.as_bytes())
                .unwrap_or_else(|err| panic!("stored {element:?} does not parse: {err:?}"));
            match &reparsed[..] {
                [PropUpdate::Set { prop: back, .. }] => same(back, &prop, "the stored property"),
                other => panic!("stored {element:?} parsed to {other:?}"),
            }
        }
    }));
    check(webdav::parse_lockinfo(data).map(|_| ()));
    if let Some(lists) = webdav::parse_if(data) {
        for list in lists {
            assert!(!list.conditions.is_empty());
            for condition in list.conditions {
                if let Condition::Token { token, .. } = condition {
                    assert!(!token.contains('>'));
                }
            }
        }
    }
    let _ = webdav::parse_timeout(data);
    let _ = webdav::parse_depth(data);
    if let Some(token) = webdav::parse_lock_token(data) {
        assert!(token.len() + 2 <= data.len());
    }
});
