//! Request smuggling: every ambiguous or malformed framing is answered 400 with
//! `Connection: close`, the connection is closed, and nothing written after the rejected request
//! on that connection is ever processed.
//!
//! Each test writes the bad request and a well-formed `GET /plaintext` in one write, reads until
//! the server closes, and asserts that exactly one response — the 400 — came back.

mod common;

use std::time::Duration;

use common::{get, spawn_binary, Client, ServerProcess};

const CLOSE_WITHIN: Duration = Duration::from_secs(3);

fn server() -> ServerProcess {
    spawn_binary(&["--pool", "1"])
}

/// Send `bad` followed by a valid request in one write: expect one 400 JSON error with
/// `Connection: close`, then EOF, and no answer to the request behind it.
fn assert_rejected_alone(bad: &[u8]) {
    let server = server();
    let mut client = Client::connect(server.addr());
    let mut bytes = bad.to_vec();
    bytes.extend_from_slice(get("/plaintext").as_bytes());
    client.send(&bytes);
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(
        responses.len(),
        1,
        "{:?} got {responses:?}",
        String::from_utf8_lossy(bad)
    );
    responses[0].assert_json_error(400);
    assert!(responses[0].says_close(), "{:?}", responses[0]);
}

/// `Content-Length` and `Transfer-Encoding` together (CL.TE) are refused.
#[test]
fn content_length_with_transfer_encoding() {
    assert_rejected_alone(
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
}

/// `Transfer-Encoding` before `Content-Length` (TE.CL) is refused too.
#[test]
fn transfer_encoding_with_content_length() {
    assert_rejected_alone(
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
          Content-Length: 5\r\n\r\n0\r\n\r\n",
    );
}

/// Two `Content-Length` fields that differ are refused.
#[test]
fn two_differing_content_lengths() {
    assert_rejected_alone(
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    );
}

/// A negative `Content-Length` is refused.
#[test]
fn content_length_negative() {
    assert_rejected_alone(b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n");
}

/// A list as `Content-Length` (`1,2`) is refused.
#[test]
fn content_length_list() {
    assert_rejected_alone(b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 1,2\r\n\r\nab");
}

/// A non-numeric `Content-Length` is refused.
#[test]
fn content_length_not_a_number() {
    assert_rejected_alone(b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
}

/// A signed `Content-Length` (`+5`) is refused: the grammar is digits only.
#[test]
fn content_length_with_plus_sign() {
    assert_rejected_alone(
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    );
}

/// `Transfer-Encoding: gzip` (not chunked) is refused.
#[test]
fn transfer_encoding_gzip() {
    assert_rejected_alone(
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    );
}

/// `Transfer-Encoding: chunked, gzip` (chunked not last) is refused.
#[test]
fn transfer_encoding_chunked_then_gzip() {
    assert_rejected_alone(
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    );
}

/// `Transfer-Encoding` on an HTTP/1.0 request is refused.
#[test]
fn transfer_encoding_on_http10() {
    assert_rejected_alone(
        b"POST /plaintext HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n\
          0\r\n\r\n",
    );
}

/// `Transfer-Encoding : chunked` (space before the colon) is refused, not read as a header with
/// a different name.
#[test]
fn space_before_colon() {
    assert_rejected_alone(
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    );
}

/// Bare LF line endings are refused.
#[test]
fn bare_lf_line_endings() {
    assert_rejected_alone(b"GET /plaintext HTTP/1.1\nHost: x\n\n");
}

/// A single bare LF among CRLF lines is refused.
#[test]
fn one_bare_lf_in_the_head() {
    assert_rejected_alone(b"GET /plaintext HTTP/1.1\r\nHost: x\nX-Other: y\r\n\r\n");
}

/// An obs-fold continuation line is refused.
#[test]
fn obs_fold() {
    assert_rejected_alone(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n");
}

/// A control character in a header value is refused.
#[test]
fn control_character_in_header_value() {
    assert_rejected_alone(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n");
}

/// A NUL byte in a header value is refused.
#[test]
fn nul_in_header_value() {
    assert_rejected_alone(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n");
}

/// A space inside a header name is refused.
#[test]
fn space_in_header_name() {
    assert_rejected_alone(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n");
}

/// An HTTP/1.1 request without `Host` is refused.
#[test]
fn missing_host_on_http11() {
    assert_rejected_alone(b"GET /plaintext HTTP/1.1\r\nUser-Agent: t\r\n\r\n");
}

/// An HTTP/1.1 request with two `Host` fields is refused.
#[test]
fn duplicate_host() {
    assert_rejected_alone(b"GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
}

/// A bare CR in the request line is refused.
#[test]
fn bare_cr_in_request_line() {
    assert_rejected_alone(b"GET /plaintext HTTP/1.1\rHost: x\r\n\r\n");
}

/// A space inside the request target makes the request line malformed: 400, not a claim that
/// HTTP/1.1 is an unsupported version (RFC 9112 §3: an invalid request-line gets 400).
#[test]
fn space_inside_request_target() {
    assert_rejected_alone(b"GET /plain text HTTP/1.1\r\nHost: x\r\n\r\n");
}

/// A malformed chunk size is refused, and the bytes after it are not read as a request.
#[test]
fn malformed_chunk_size() {
    assert_rejected_alone(
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
}

/// Chunk data longer than its announced size is refused (the excess is not a new request).
#[test]
fn chunk_data_longer_than_its_size() {
    assert_rejected_alone(
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabcGET /json HTTP/1.1\r\nHost: x\r\n\r\n",
    );
}

/// Requests before a malformed one are answered in order; the malformed one gets the last
/// response (400, `Connection: close`), and nothing after it is answered.
#[test]
fn good_requests_before_a_bad_one_are_answered() {
    let server = server();
    let mut client = Client::connect(server.addr());
    client.send(format!(
        "{}{}GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n{}",
        get("/sleep?ms=100"),
        get("/json"),
        get("/plaintext")
    ));
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 3, "{responses:?}");
    assert_eq!(responses[0].text(), r#"{"slept_ms":100}"#);
    assert!(!responses[0].says_close());
    assert_eq!(responses[1].text(), r#"{"message":"Hello, World!"}"#);
    assert!(!responses[1].says_close());
    responses[2].assert_json_error(400);
    assert!(responses[2].says_close());
}

/// A rejected request that arrives on a connection already used for a good one still ends it:
/// the 400 closes the connection, and a request sent afterwards in a separate write is not
/// answered either.
#[test]
fn rejection_after_a_good_request_closes() {
    let server = server();
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/plaintext")).status, 200);
    client.send("GET /plaintext HTTP/1.1\r\n\r\n");
    let response = client.read_response();
    response.assert_json_error(400);
    assert!(response.says_close());
    // The server may still read (and discard) what we send while it lingers; it answers nothing.
    let _ = std::io::Write::write_all(&mut client.stream(), get("/plaintext").as_bytes());
    let (rest, _) = client.read_to_end(CLOSE_WITHIN);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}
