//! Decoder tests: the framing rules one by one, then two properties over arbitrary input.

use super::*;
use proptest::prelude::*;

/// A request reduced to what a handler can observe, for comparing decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    keep_alive: bool,
}

/// Drive a decoder over `chunks` the way a connection does: append each chunk to a buffer,
/// decode until incomplete, drop what was consumed. Returns the requests and the first error.
fn decode_stream(chunks: &[&[u8]], limits: &Limits) -> (Vec<Seen>, Option<ParseError>) {
    let mut decoder = RequestDecoder::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut seen = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            let mut storage = header_storage();
            let (consumed, done) = match decoder.decode(&buffer, &mut storage, limits) {
                Err(err) => return (seen, Some(err)),
                Ok(Decoded::Incomplete { consumed, .. }) => (consumed, true),
                Ok(Decoded::Request {
                    consumed,
                    info,
                    request,
                }) => {
                    seen.push(Seen {
                        method: request.method,
                        path: request.path.to_string(),
                        query: request.query.to_string(),
                        headers: request
                            .headers
                            .iter()
                            .map(|h| (h.name.to_string(), h.value.to_vec()))
                            .collect(),
                        body: Vec::new(),
                        keep_alive: info.keep_alive,
                    });
                    (consumed, false)
                }
                Ok(Decoded::Owned {
                    consumed,
                    head,
                    body,
                }) => {
                    let mut scratch = Vec::new();
                    let request = head.request(body, &mut scratch);
                    seen.push(Seen {
                        method: request.method,
                        path: request.path.to_string(),
                        query: request.query.to_string(),
                        headers: head.headers.clone(),
                        body: request.body,
                        keep_alive: head.info.keep_alive,
                    });
                    (consumed, false)
                }
            };
            buffer.drain(..consumed);
            if done {
                break;
            }
        }
    }
    (seen, None)
}

fn decode_one(bytes: &[u8]) -> Result<Vec<Seen>, ParseError> {
    match decode_stream(&[bytes], &Limits::default()) {
        (_, Some(err)) => Err(err),
        (seen, None) => Ok(seen),
    }
}

fn first_error(bytes: &[u8]) -> ParseError {
    decode_one(bytes).expect_err("expected an error")
}

/// A simple GET is decoded with its path, query and headers.
#[test]
fn decodes_a_get() {
    let seen = decode_one(b"GET /cpu?ms=5 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n").unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::Get);
    assert_eq!(seen[0].path, "/cpu");
    assert_eq!(seen[0].query, "ms=5");
    assert_eq!(seen[0].headers.len(), 2);
    assert!(seen[0].keep_alive);
}

/// Pipelined requests in one buffer are all decoded, in order.
#[test]
fn decodes_pipelined_requests() {
    let one = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let two = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    let three = b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let all = [&one[..], two, three].concat();
    let seen = decode_one(&all).unwrap();
    let paths: Vec<_> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/a", "/b", "/c"]);
    assert_eq!(seen[1].body, b"abc");
    assert!(!seen[2].keep_alive);
}

/// HTTP/1.0 is close-by-default and keep-alive on request; Host is optional there.
#[test]
fn http10_keep_alive_rules() {
    let seen = decode_one(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(!seen[0].keep_alive);
    let seen = decode_one(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
    assert!(seen[0].keep_alive);
}

/// A chunked body with trailers decodes to its data.
#[test]
fn decodes_a_chunked_body() {
    let seen = decode_one(
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: 1\r\n\r\n",
    )
    .unwrap();
    assert_eq!(seen[0].body, b"abcde");
}

/// Expect: 100-continue is signalled once, when the head is complete and the body is not.
#[test]
fn signals_continue_once() {
    let mut decoder = RequestDecoder::new();
    let limits = Limits::default();
    let head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";
    let mut storage = header_storage();
    match decoder.decode(head, &mut storage, &limits).unwrap() {
        Decoded::Incomplete {
            consumed,
            send_continue,
        } => {
            assert_eq!(consumed, head.len());
            assert!(send_continue);
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut storage = header_storage();
    match decoder.decode(b"h", &mut storage, &limits).unwrap() {
        Decoded::Incomplete { send_continue, .. } => assert!(!send_continue),
        other => panic!("unexpected {other:?}"),
    }
}

/// An empty `Expect` value is no expectation (RFC 9110 §10.1.1 defines `Expect` as a list, and an
/// empty list expects nothing): no interim response, no 417. Any other value but `100-continue`
/// is 417.
#[test]
fn empty_expect_is_no_expectation() {
    for head in [
        &b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect:\r\n\r\n"[..],
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: \t \r\n\r\n",
    ] {
        let mut decoder = RequestDecoder::new();
        let mut storage = header_storage();
        match decoder.decode(head, &mut storage, &Limits::default()) {
            Ok(Decoded::Incomplete { send_continue, .. }) => assert!(!send_continue),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(head)),
        }
        let mut body = head.to_vec();
        body.extend_from_slice(b"hi");
        assert_eq!(decode_one(&body).unwrap()[0].body, b"hi");
    }
    for value in ["tea", "100-continue, tea", "100-continuex", "100"] {
        let head =
            format!("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: {value}\r\n\r\n");
        assert_eq!(first_error(head.as_bytes()), ParseError::ExpectationFailed);
    }
}

/// While a body is awaited, the decoder shows the head it belongs to (route and method known,
/// `Expect: 100-continue` seen); before the head, once the body is complete, and after an error
/// there is none.
#[test]
fn pending_head_is_the_head_whose_body_is_awaited() {
    let mut decoder = RequestDecoder::new();
    let limits = Limits::default();
    assert!(decoder.pending_head().is_none());

    let head =
        b"PUT /upload?n=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
    let mut storage = header_storage();
    let decoded = decoder.decode(head, &mut storage, &limits).unwrap();
    assert!(matches!(
        decoded,
        Decoded::Incomplete {
            send_continue: true,
            ..
        }
    ));
    let pending = decoder
        .pending_head()
        .expect("a head whose body is awaited");
    assert_eq!(pending.info.method, Method::Put);
    assert_eq!(pending.target, "/upload?n=1");
    assert!(pending.info.expect_continue);
    assert_eq!(pending.info.framing, Framing::Length(4));

    let mut storage = header_storage();
    let decoded = decoder.decode(b"data", &mut storage, &limits).unwrap();
    assert!(matches!(decoded, Decoded::Owned { .. }));
    assert!(decoder.pending_head().is_none());

    let mut storage = header_storage();
    let chunked = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4 x";
    assert!(decoder.decode(chunked, &mut storage, &limits).is_err());
    assert!(decoder.pending_head().is_none());
}

/// Every smuggling and framing shape the spec lists is a 400 (or its own code).
#[test]
fn rejects_smuggling_shapes() {
    let cases: &[(&[u8], u16)] = &[
        // CL + TE
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        // differing CLs
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            400,
        ),
        // bad CLs
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            400,
        ),
        // TE other than chunked
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
        // TE on HTTP/1.0
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        // bare LF
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
        // obs-fold
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n", 400),
        // invalid header bytes
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX A: ab\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A : ab\r\n\r\n", 400),
        // Host rules
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        // bad target
        (b"GET cpu HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        // version and method
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTX/1.1\r\nHost: x\r\n\r\n", 400),
        (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
        // Expect
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: tea\r\n\r\n", 417),
    ];
    for (bytes, status) in cases {
        let err = first_error(bytes);
        assert_eq!(
            err.status(),
            *status,
            "{:?} gave {err:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// A CR not followed by LF is refused as soon as the byte after it is seen, wherever it is —
/// request line, field line, the blank line, leading empty lines — and however the bytes are
/// split: never an `Incomplete` that would wait for the header timeout (RFC 9112 §2.2).
#[test]
fn bare_cr_is_refused_at_once() {
    for bytes in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\rX"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc",
        b"GET / HTTP/1.1\r\nHost: a\rX-A: b",
        b"GET /a\rb HTTP/1.1",
        b"\rGET / HTTP/1.1",
        b"\r\n\rGET / HTTP/1.1",
        b"\r\n\r\r",
    ] {
        let mut decoder = RequestDecoder::new();
        let mut buffer = Vec::new();
        let mut failed = false;
        for &byte in bytes {
            buffer.push(byte);
            let mut storage = header_storage();
            match decoder.decode(&buffer, &mut storage, &Limits::default()) {
                Ok(Decoded::Incomplete { consumed, .. }) => drop(buffer.drain(..consumed)),
                Ok(other) => panic!("{other:?}"),
                Err(err) => {
                    assert_eq!(err.status(), 400);
                    failed = true;
                    break;
                }
            }
        }
        assert!(
            failed,
            "{:?} was not refused",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// A CR that is the last byte read so far is not an error: its LF may come with the next read.
#[test]
fn a_final_cr_waits_for_its_lf() {
    let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for cut in 1..head.len() {
        let (seen, err) = decode_stream(&[&head[..cut], &head[cut..]], &Limits::default());
        assert!(err.is_none(), "cut at {cut}: {err:?}");
        assert_eq!(seen.len(), 1);
    }
}

/// `Host` must be `uri-host [ ":" port ]`, at most once in any version; it may be empty only
/// when the target has no authority of its own (RFC 9112 §3.2).
#[test]
fn host_rules() {
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: :80\r\n\r\n",
    ] {
        let err = first_error(bad);
        assert_eq!(err.status(), 400, "{:?}", String::from_utf8_lossy(bad));
    }
    for good in [
        &b"GET / HTTP/1.1\r\nHost:\r\n\r\n"[..],
        b"OPTIONS * HTTP/1.1\r\nHost: \r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\t a \t\r\n\r\n",
    ] {
        let seen = decode_one(good)
            .unwrap_or_else(|err| panic!("{:?}: {err}", String::from_utf8_lossy(good)));
        assert_eq!(seen.len(), 1);
    }
}

/// Targets are checked and split once, in the decoder: absolute form with any case of scheme,
/// its path and query after the authority; a fragment, a bad port or userinfo is 400.
#[test]
fn target_rules() {
    let seen = decode_one(b"GET HTTP://a:8080?x=/y HTTP/1.1\r\nHost: a:8080\r\n\r\n").unwrap();
    assert_eq!(
        (seen[0].path.as_str(), seen[0].query.as_str()),
        ("/", "x=/y")
    );
    let seen =
        decode_one(b"POST Http://a/up?n=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
            .unwrap();
    assert_eq!(
        (seen[0].path.as_str(), seen[0].query.as_str()),
        ("/up", "n=1")
    );
    for bad in [
        &b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET http://a#b/c HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let err = first_error(bad);
        assert_eq!(err.status(), 400, "{:?}", String::from_utf8_lossy(bad));
    }
}

/// After an error nothing that follows on the stream is decoded (no smuggled second request).
#[test]
fn nothing_after_an_error_is_decoded() {
    let (seen, err) = decode_stream(
        &[b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"],
        &Limits::default(),
    );
    assert!(seen.is_empty());
    assert!(err.is_some());
}

/// The size limits give 414, 431 and 413, each before the offending bytes are all read.
#[test]
fn limits_give_their_status_codes() {
    let limits = Limits {
        max_head_bytes: 64,
        max_headers: 3,
        max_body: 10,
    };
    let long_line = [b"GET /".as_slice(), &[b'a'; 100]].concat();
    let (_, err) = decode_stream(&[&long_line], &limits);
    assert_eq!(err, Some(ParseError::UriTooLong));

    let long_head = [b"GET / HTTP/1.1\r\nHost: x\r\nX: ".as_slice(), &[b'a'; 100]].concat();
    let (_, err) = decode_stream(&[&long_head], &limits);
    assert_eq!(err, Some(ParseError::HeadersTooLarge));

    let (_, err) = decode_stream(
        &[b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"],
        &limits,
    );
    assert_eq!(err, Some(ParseError::HeadersTooLarge));

    let (_, err) = decode_stream(
        &[b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"],
        &limits,
    );
    assert_eq!(err, Some(ParseError::BodyTooLarge));

    let (_, err) = decode_stream(
        &[b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n"],
        &limits,
    );
    assert_eq!(err, Some(ParseError::BodyTooLarge));
}

/// Leading empty lines before a request line are skipped (RFC 9112 §2.2).
#[test]
fn skips_leading_empty_lines() {
    let seen = decode_one(b"\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(seen[0].path, "/a");
}

/// Feeding a head one byte at a time scans each byte a bounded number of times: the total work
/// stays linear (a slowloris client cannot make us re-parse from byte 0 on every read).
#[test]
fn byte_at_a_time_head_is_decoded_once() {
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let chunks: Vec<&[u8]> = head.chunks(1).collect();
    let limits = Limits {
        max_headers: 256,
        ..Limits::default()
    };
    let (seen, err) = decode_stream(&chunks, &limits);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers.len(), 201);
}

/// Well-formed chunk extensions (RFC 9112 §7.1.1): BWS, token names, token or quoted values with
/// escapes.
const EXTENSIONS: &str = r#"([ \t]?;[ \t]?[a-z]{1,5}([ \t]?=[ \t]?([a-z0-9!#]{1,5}|"([a-z ;=]|\\[a-z"\\]){0,4}"))?){0,2}"#;

/// Well-formed trailer fields: a token name, a colon, OWS, visible bytes.
const TRAILERS: &str = r"([A-Za-z][A-Za-z0-9-]{0,6}:[ \t]?[!-~]{0,8}[ \t]?\r\n){0,2}";

/// A request stream for the properties: a mix of GETs, CL bodies and chunked bodies (with
/// extensions and trailers).
fn request_stream() -> impl Strategy<Value = Vec<u8>> {
    let one = prop_oneof![
        ("[a-z]{1,8}", "[a-z0-9=&]{0,12}").prop_map(|(path, query)| format!(
            "GET /{path}?{query} HTTP/1.1\r\nHost: h\r\nX-Test: {path}\r\n\r\n"
        )
        .into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|body| {
            let mut req = format!(
                "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(&body);
            req
        }),
        (
            proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 1..20), EXTENSIONS),
                0..4
            ),
            EXTENSIONS,
            TRAILERS,
        )
            .prop_map(|(chunks, last_extensions, trailers)| {
                let mut req =
                    b"POST /chunks HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                        .to_vec();
                for (chunk, extensions) in chunks {
                    req.extend_from_slice(format!("{:x}{extensions}\r\n", chunk.len()).as_bytes());
                    req.extend_from_slice(&chunk);
                    req.extend_from_slice(b"\r\n");
                }
                req.extend_from_slice(format!("0{last_extensions}\r\n{trailers}\r\n").as_bytes());
                req
            }),
    ];
    proptest::collection::vec(one, 1..5).prop_map(|reqs| reqs.concat())
}

proptest! {
    /// Any split of a request stream into reads decodes to the same requests as the whole.
    #[test]
    fn any_split_decodes_the_same(stream in request_stream(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let limits = Limits::default();
        let whole = decode_stream(&[&stream], &limits);
        prop_assert!(whole.1.is_none());
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort();
        points.dedup();
        let pieces: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
        let split = decode_stream(&pieces, &limits);
        prop_assert_eq!(whole, split);
    }

    /// A CR inserted anywhere in a head is a bare CR (before any byte, a LF included: `\r\r\n`),
    /// and is refused, whole or split, without a request getting through.
    #[test]
    fn a_bare_cr_anywhere_in_a_head_is_refused(path in "[a-z]{1,8}", at in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let mut head = format!("GET /{path} HTTP/1.1\r\nHost: h\r\nX-Test: v\r\n\r\n").into_bytes();
        head.insert(at.index(head.len()), b'\r');
        let cut = cut.index(head.len() + 1);
        for pieces in [vec![&head[..]], vec![&head[..cut], &head[cut..]]] {
            let (seen, err) = decode_stream(&pieces, &Limits::default());
            prop_assert!(seen.is_empty());
            prop_assert_eq!(err.map(|e| e.status()), Some(400));
        }
    }

    /// Arbitrary bytes, in arbitrary pieces, never panic the decoder.
    #[test]
    fn arbitrary_bytes_never_panic(pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let refs: Vec<&[u8]> = pieces.iter().map(|p| p.as_slice()).collect();
        let _ = decode_stream(&refs, &Limits { max_head_bytes: 256, max_headers: 8, max_body: 128 });
    }

    /// Mutations of a valid request never panic either (they exercise deeper states than noise).
    #[test]
    fn mutated_requests_never_panic(stream in request_stream(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = stream.clone();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = decode_stream(&[&bytes], &Limits::default());
    }
}
