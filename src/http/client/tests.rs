//! Client tests: the response framing rules one by one, the request encoder's refusals, then
//! the property that no split of the stream changes what is decoded.

use super::*;
use crate::http::request::Method;
use proptest::prelude::*;

/// What a stream decodes to: the responses, then the error that ended it, if any.
type Outcome = (Vec<UpstreamResponse>, Option<ResponseError>);

/// Drive a decoder over `chunks` the way a connection will: append each chunk to a buffer,
/// decode until incomplete, drop what was consumed; with `eof`, end with `on_eof`, where a
/// close between responses is no error.
fn drive(chunks: &[&[u8]], method_was_head: bool, limits: ResponseLimits, eof: bool) -> Outcome {
    let mut decoder = ResponseDecoder::new(method_was_head, limits);
    let mut buffer: Vec<u8> = Vec::new();
    let mut responses = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match decoder.decode(&buffer) {
                Err(err) => return (responses, Some(err)),
                Ok(Progress::Incomplete { consumed }) => {
                    buffer.drain(..consumed);
                    break;
                }
                Ok(Progress::Complete { consumed, response }) => {
                    buffer.drain(..consumed);
                    responses.push(response);
                }
            }
        }
    }
    if eof {
        match decoder.on_eof() {
            Ok(response) => responses.push(response),
            Err(ResponseError::ClosedBeforeResponse) => {}
            Err(err) => return (responses, Some(err)),
        }
    }
    (responses, None)
}

/// The whole stream in one read.
fn whole(input: &[u8], eof: bool) -> Outcome {
    drive(&[input], false, ResponseLimits::default(), eof)
}

/// The one response a stream must decode to.
fn one(input: &[u8], eof: bool) -> UpstreamResponse {
    let (mut responses, err) = whole(input, eof);
    assert_eq!(err, None, "{:?}", String::from_utf8_lossy(input));
    assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(input));
    responses.remove(0)
}

/// The error a stream must fail with.
fn error(input: &[u8], eof: bool) -> ResponseError {
    whole(input, eof)
        .1
        .unwrap_or_else(|| panic!("accepted {:?}", String::from_utf8_lossy(input)))
}

/// `Content-Length` frames the body; the status, version and fields come out as sent.
#[test]
fn content_length_body() {
    let response = one(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Id: 7\r\n\r\nhello",
        false,
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.version, Version::Http11);
    assert_eq!(response.body, b"hello");
    assert!(response.keep_alive);
    assert_eq!(
        response.headers,
        vec![
            ("Content-Length".to_string(), b"5".to_vec()),
            ("X-Id".to_string(), b"7".to_vec())
        ]
    );
}

/// A chunked body is decoded through its extensions and trailer section, which are dropped.
#[test]
fn chunked_body_with_extensions_and_trailers() {
    let response = one(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;name=\"v\"\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Checksum: 1\r\n\r\n",
        false,
    );
    assert_eq!(response.body, b"Wikipedia");
    assert!(response.keep_alive);
}

/// Without `Content-Length` or `Transfer-Encoding`, the body runs to the close, and such a
/// connection cannot be reused whatever the head says.
#[test]
fn close_delimited_body_ends_at_eof() {
    let input = b"HTTP/1.1 200 OK\r\n\r\nall of this";
    assert_eq!(whole(input, false), (vec![], None));
    let response = one(input, true);
    assert_eq!(response.body, b"all of this");
    assert!(!response.keep_alive);
}

/// A close before the end of a framed body or of a head is an error; a close before any byte
/// is a different one; a close after a complete response is none.
#[test]
fn truncated_responses_fail_at_eof() {
    for input in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWi",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"H",
    ] {
        assert_eq!(error(input, true), ResponseError::ClosedMidResponse);
    }
    let mut decoder = ResponseDecoder::new(false, ResponseLimits::default());
    assert_eq!(decoder.on_eof(), Err(ResponseError::ClosedBeforeResponse));
    let (responses, err) = whole(b"HTTP/1.1 204 No Content\r\n\r\n", true);
    assert_eq!((responses.len(), err), (1, None));
}

/// A response to HEAD has no body even with a `Content-Length`; so have 204 and 304, and the
/// next response starts right after the head.
#[test]
fn bodiless_responses_ignore_their_length() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
    let (responses, err) = drive(&[head], true, ResponseLimits::default(), false);
    assert_eq!(err, None);
    assert_eq!((responses[0].status, responses[0].body.len()), (200, 0));
    for status in [&b"204 No Content"[..], b"304 Not Modified"] {
        let mut input = b"HTTP/1.1 ".to_vec();
        input.extend_from_slice(status);
        input.extend_from_slice(b"\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\n\r\nx");
        let (responses, err) = whole(&input, true);
        assert_eq!(err, None);
        assert_eq!(responses.len(), 2);
        assert!(responses[0].body.is_empty());
        assert_eq!(responses[1].body, b"x");
    }
}

/// Interim responses are skipped and the final one returned, with the bytes of both consumed;
/// 101 is refused.
#[test]
fn interim_responses_are_skipped() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                  HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    let mut decoder = ResponseDecoder::new(false, ResponseLimits::default());
    let Ok(Progress::Complete { consumed, response }) = decoder.decode(input) else {
        panic!("not complete");
    };
    assert_eq!((consumed, response.status), (input.len(), 201));
    assert_eq!(response.body, b"ok");
    assert_eq!(
        error(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
            false
        ),
        ResponseError::SwitchingProtocols
    );
}

/// Back-to-back responses in one buffer come out one per call, each reporting exactly its own
/// bytes; the decoder can be told the next one answers a HEAD.
#[test]
fn pipelined_responses_report_their_own_bytes() {
    let first = &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"[..];
    let second = &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nd\r\n0\r\n\r\n"[..];
    let third = &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"[..];
    let input = [first, second, third].concat();
    let mut decoder = ResponseDecoder::new(false, ResponseLimits::default());
    let mut at = 0;
    for (part, body) in [(first, &b"abc"[..]), (second, b"d")] {
        let Ok(Progress::Complete { consumed, response }) = decoder.decode(&input[at..]) else {
            panic!("not complete at {at}");
        };
        assert_eq!((consumed, response.body.as_slice()), (part.len(), body));
        at += consumed;
    }
    decoder.expect_response(true);
    let Ok(Progress::Complete { consumed, response }) = decoder.decode(&input[at..]) else {
        panic!("HEAD response not complete");
    };
    assert_eq!((consumed, response.body.len()), (third.len(), 0));
}

/// Keep-alive: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `keep-alive`.
#[test]
fn keep_alive_rules() {
    for (head, keep_alive) in [
        (&b"HTTP/1.1 200 OK\r\n"[..], true),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n", false),
        (b"HTTP/1.1 200 OK\r\nConnection: x, Close\r\n", false),
        (b"HTTP/1.0 200 OK\r\n", false),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", true),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n",
            false,
        ),
    ] {
        let mut input = head.to_vec();
        input.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        assert_eq!(one(&input, false).keep_alive, keep_alive, "{head:?}");
    }
}

/// The framing shapes RFC 9112 calls errors, and the ones we refuse for safety.
#[test]
fn framing_errors() {
    for (fields, expected) in [
        (
            &b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"[..],
            ResponseError::LengthAndTransferEncoding,
        ),
        (
            b"Content-Length: 3\r\nContent-Length: 4\r\n",
            ResponseError::ConflictingContentLength,
        ),
        (
            b"Content-Length: +3\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"Content-Length: 3, 3\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"Content-Length: 0x3\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"Content-Length: 99999999999999999999\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"Transfer-Encoding: gzip\r\n",
            ResponseError::UnsupportedTransferEncoding,
        ),
        (
            b"Transfer-Encoding: gzip, chunked\r\n",
            ResponseError::UnsupportedTransferEncoding,
        ),
        (
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            ResponseError::UnsupportedTransferEncoding,
        ),
        (
            b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            ResponseError::UnsupportedTransferEncoding,
        ),
        (b"X: a\r\n b\r\n", ResponseError::MalformedHeader),
        (b"X : a\r\n", ResponseError::MalformedHeader),
        (b"X: a\nY: b\r\n", ResponseError::BareLineEnd),
        (b"X: a\rb\r\n", ResponseError::BareLineEnd),
    ] {
        let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
        input.extend_from_slice(fields);
        input.extend_from_slice(b"\r\nabc");
        assert_eq!(error(&input, true), expected, "{fields:?}");
    }
    // Repeats of one length are tolerated; HTTP/1.0 may not use Transfer-Encoding at all.
    let same = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
    assert_eq!(one(same, false).body, b"abc");
    assert_eq!(
        error(
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            true
        ),
        ResponseError::UnsupportedTransferEncoding
    );
    assert_eq!(
        error(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            true
        ),
        ResponseError::MalformedChunkedBody("missing chunk size")
    );
}

/// Anything but an HTTP/1.x status line is refused, as early as the bytes prove it.
#[test]
fn status_line_errors() {
    for (input, expected) in [
        (
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            ResponseError::MalformedStatusLine,
        ),
        (
            b"HTTP/1.1 099 Low\r\n\r\n",
            ResponseError::MalformedStatusLine,
        ),
        (
            b"HTTP/1.1 600 High\r\n\r\n",
            ResponseError::MalformedStatusLine,
        ),
        (
            b"HTTP/1.1  200 OK\r\n\r\n",
            ResponseError::MalformedStatusLine,
        ),
        (b"HTTP/1.1 200 OK\r\n", ResponseError::ClosedMidResponse),
        (b"HTTP/2 200\r\n\r\n", ResponseError::UnsupportedVersion),
        (
            b"HTTP/2.0 200 OK\r\n\r\n",
            ResponseError::UnsupportedVersion,
        ),
        (
            b"HTTP/1.x 200 OK\r\n\r\n",
            ResponseError::MalformedStatusLine,
        ),
        (
            b"\r\nHTTP/1.1 200 OK\r\n\r\n",
            ResponseError::MalformedStatusLine,
        ),
        (b"<html>", ResponseError::MalformedStatusLine),
    ] {
        assert_eq!(
            error(input, true),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // The HTTP/2 connection preface and a binary HTTP/2 frame fail on their first bytes,
    // without waiting for a line end.
    assert_eq!(
        error(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false),
        ResponseError::MalformedStatusLine
    );
    assert_eq!(
        error(b"\x00\x00\x12\x04", false),
        ResponseError::MalformedStatusLine
    );
}

/// Heads, field counts and bodies over the limits fail while decoding, before the whole
/// message is buffered; trailers count against the head limit.
#[test]
fn limits_are_enforced_while_decoding() {
    let limits = ResponseLimits {
        max_head_bytes: 64,
        max_headers: 2,
        max_body: 8,
    };
    let run = |input: &[u8]| drive(&[input], false, limits, false).1;
    let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 60));
    assert_eq!(run(&long), Some(ResponseError::HeadTooLarge { limit: 64 }));
    assert_eq!(
        run(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
        Some(ResponseError::TooManyHeaders { limit: 2 })
    );
    assert_eq!(
        run(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
        Some(ResponseError::BodyTooLarge { limit: 8 })
    );
    assert_eq!(
        run(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n"),
        Some(ResponseError::BodyTooLarge { limit: 8 })
    );
    assert_eq!(
        run(b"HTTP/1.1 200 OK\r\n\r\n123456789"),
        Some(ResponseError::BodyTooLarge { limit: 8 })
    );
    let mut trailer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: ".to_vec();
    trailer.extend(std::iter::repeat_n(b'a', 64));
    assert_eq!(
        run(&trailer),
        Some(ResponseError::HeadTooLarge { limit: 64 })
    );
    assert_eq!(
        run(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n12345678"),
        None
    );
}

/// After an error, nothing more is decoded.
#[test]
fn an_error_is_final() {
    let mut decoder = ResponseDecoder::new(false, ResponseLimits::default());
    assert!(decoder.decode(b"nope").is_err());
    assert_eq!(
        decoder.decode(b"HTTP/1.1 200 OK\r\n\r\n"),
        Err(ResponseError::Finished)
    );
}

/// A stream of every framing, decoded whole, one byte per read, and cut at every point: the
/// same responses each time.
#[test]
fn every_split_gives_the_same_responses() {
    let input: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
        HTTP/1.1 204 No Content\r\n\r\n\
        HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: 1\r\n\r\n\
        HTTP/1.0 200 OK\r\n\r\nuntil the end";
    let expected = whole(input, true);
    assert_eq!(expected.0.len(), 4);
    assert_eq!(expected.1, None);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        drive(&bytes, false, ResponseLimits::default(), true),
        expected
    );
    for cut in 0..=input.len() {
        let split = [&input[..cut], &input[cut..]];
        assert_eq!(
            drive(&split, false, ResponseLimits::default(), true),
            expected,
            "cut at {cut}"
        );
    }
}

/// A well-formed response of one of the framings, as bytes.
fn response_strategy() -> impl Strategy<Value = Vec<u8>> {
    let body = proptest::collection::vec(any::<u8>(), 0..30);
    (body, 0..4u8).prop_map(|(body, kind)| match kind {
        0 => {
            let mut out =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            out.extend_from_slice(&body);
            out
        }
        1 => {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for chunk in body.chunks(7) {
                out.extend_from_slice(format!("{:x};e=1\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\nT: x\r\n\r\n");
            out
        }
        2 => b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n".to_vec(),
        _ => b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    })
}

proptest! {
    /// Pipelined responses cut at random points decode as they do whole.
    #[test]
    fn random_splits_never_change_the_result(
        responses in proptest::collection::vec(response_strategy(), 1..5),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let input = responses.concat();
        let expected = whole(&input, true);
        prop_assert_eq!(expected.0.len(), responses.len());
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for point in points {
            chunks.push(&input[from..point]);
            from = point;
        }
        chunks.push(&input[from..]);
        prop_assert_eq!(drive(&chunks, false, ResponseLimits::default(), true), expected);
    }
}

/// A request carries `Host`, the caller's fields and, with a body, `Content-Length`; no
/// `Connection`.
#[test]
fn encodes_a_request() {
    let mut out = Vec::new();
    encode_request(
        &mut out,
        Method::Post,
        "api.internal:8080",
        "/v1/items?x=1",
        &[("Accept", b"application/json")],
        Some(b"{}"),
    )
    .unwrap();
    assert_eq!(
        out,
        b"POST /v1/items?x=1 HTTP/1.1\r\nHost: api.internal:8080\r\n\
          Accept: application/json\r\nContent-Length: 2\r\n\r\n{}"
    );
    out.clear();
    encode_request(&mut out, Method::Get, "a", "/", &[], None).unwrap();
    assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    out.clear();
    encode_request(&mut out, Method::Post, "a", "/", &[], Some(b"")).unwrap();
    assert_eq!(
        out,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
    );
}

/// CR, LF, NUL and the like cannot reach the wire through any argument, and the fields the
/// encoder owns cannot be set twice; nothing is written on a refusal.
#[test]
fn refuses_injection() {
    let value: &[u8] = b"ok";
    for (host, path, field, expected) in [
        ("a\r\nX: y", "/", ("A", value), EncodeError::InvalidHost),
        ("", "/", ("A", value), EncodeError::InvalidHost),
        (
            "a",
            "/x HTTP/1.1\r\nX: y",
            ("A", value),
            EncodeError::InvalidPath,
        ),
        ("a", "/x\0", ("A", value), EncodeError::InvalidPath),
        ("a", "x", ("A", value), EncodeError::InvalidPath),
        ("a", "/", ("A\r\nB", value), EncodeError::InvalidFieldName),
        ("a", "/", ("", value), EncodeError::InvalidFieldName),
        (
            "a",
            "/",
            ("A", b"x\r\nB: y"),
            EncodeError::InvalidFieldValue,
        ),
        ("a", "/", ("A", b"x\ny"), EncodeError::InvalidFieldValue),
        ("a", "/", ("A", b"x\0"), EncodeError::InvalidFieldValue),
        (
            "a",
            "/",
            ("content-length", b"1"),
            EncodeError::ReservedField,
        ),
        (
            "a",
            "/",
            ("Transfer-Encoding", b"chunked"),
            EncodeError::ReservedField,
        ),
        ("a", "/", ("Host", b"b"), EncodeError::ReservedField),
        (
            "a",
            "/",
            ("Connection", b"close"),
            EncodeError::ReservedField,
        ),
    ] {
        let mut out = Vec::new();
        let result = encode_request(&mut out, Method::Get, host, path, &[field], None);
        assert_eq!(result, Err(expected), "{host:?} {path:?} {field:?}");
        assert!(out.is_empty());
    }
    let mut out = Vec::new();
    assert_eq!(
        encode_request(&mut out, Method::Connect, "a:443", "/", &[], None),
        Err(EncodeError::UnsupportedMethod)
    );
}
