//! Responses: what a handler returns, and how it becomes bytes.
//!
//! Encoding appends into a buffer the caller reuses: a status line from a static table, the
//! cached `Date`, `itoa` for `Content-Length`. A `GET /plaintext` response is built and encoded
//! without a single allocation.

use std::time::{SystemTime, UNIX_EPOCH};

use super::syntax::{is_field_vchar, is_ows, is_tchar};

/// A response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body (`Content-Length: 0`).
    Empty,
    /// Bytes known at compile time: no allocation, no copy until encoding.
    Static(&'static [u8]),
    /// Bytes built for this response.
    Owned(Vec<u8>),
}

impl Body {
    /// The body's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Empty => &[],
            Body::Static(bytes) => bytes,
            Body::Owned(bytes) => bytes,
        }
    }
}

/// A complete response, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Body,
    /// Extra header fields (`Allow`, `Retry-After`, …). Empty for most responses, and an empty
    /// `Vec` does not allocate. A field whose name is not a token, or that frames the message
    /// (`Content-Length`, `Transfer-Encoding`, `Connection`), is not sent; control bytes in a
    /// value are sent as spaces ([`Response::encode`]).
    pub headers: Vec<(&'static str, String)>,
}

/// Which `Connection` header a response carries: decided by the connection, not the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// Nothing: HTTP/1.1 keeps the connection open by default.
    Omit,
    /// `Connection: keep-alive`, for an HTTP/1.0 client that asked for it (and for `ab -k`,
    /// which only counts a request as kept alive if it sees this header).
    KeepAlive,
    /// `Connection: close`: this is the last response on the connection.
    Close,
}

impl Response {
    /// A `text/plain` response with a static body.
    pub fn text(status: u16, body: &'static str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Body::Static(body.as_bytes()),
            headers: Vec::new(),
        }
    }

    /// A `text/plain` response with a built body.
    pub fn text_owned(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Body::Owned(body.into_bytes()),
            headers: Vec::new(),
        }
    }

    /// An `application/json` response from already-serialised bytes.
    pub fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: Body::Owned(body),
            headers: Vec::new(),
        }
    }

    /// An `application/json` response with a static body.
    pub fn json_static(status: u16, body: &'static str) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: Body::Static(body.as_bytes()),
            headers: Vec::new(),
        }
    }

    /// An `application/json` response serialised from a `serde_json::Value`.
    pub fn json_value(status: u16, value: &serde_json::Value) -> Response {
        Response::json(status, value.to_string().into_bytes())
    }

    /// Append this response to `out`: status line, `Server`, `Date`, `Content-Type`,
    /// `Content-Length`, the `Connection` header, extra headers, then the body unless
    /// `head_only` (a `HEAD` request gets the `GET` headers and no body, RFC 9110 §9.3.2).
    /// Returns the number of bytes appended.
    ///
    /// What a handler sets cannot break the framing:
    ///
    /// - a 1xx or 204 response has no content: no `Content-Type`, no `Content-Length`
    ///   (RFC 9110 §8.6: a server MUST NOT send it), no body; a 304 keeps the length of the
    ///   body it stands for, as `HEAD` does, and sends no body (RFC 9110 §15.4.5). A body sent
    ///   after any of these would be read by the client as the start of the next response;
    /// - extra fields whose name is not a token, or that would contradict the framing written
    ///   here (`Content-Length`, `Transfer-Encoding`, `Connection`), are left out;
    /// - in field values, every byte a field value may not hold (CR, LF, NUL, the other
    ///   controls, DEL) is sent as SP: RFC 9110 §5.5 gives that replacement as the safe reading
    ///   of such a value, and a CR LF passed through would end the field line and let the value
    ///   forge fields or a whole response.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        date: &DateCache,
        connection: ConnectionHeader,
        head_only: bool,
    ) -> usize {
        let start = out.len();
        let body = self.body.as_bytes();
        let has_content = !(100..200).contains(&self.status) && self.status != 204;
        let framing = if has_content {
            Framing::Length(body.len())
        } else {
            Framing::None
        };
        self.encode_head(out, date, connection, framing);
        if has_content && self.status != 304 && !head_only {
            out.extend_from_slice(body);
        }
        out.len() - start
    }

    /// Append the head of a streamed response: the fields [`Response::encode`] writes, but
    /// `Transfer-Encoding: chunked` instead of `Content-Length` when `chunked`, and no framing
    /// field at all otherwise: the body of an HTTP/1.0 stream ends when the connection closes,
    /// so unless no body follows (`HEAD`), `connection` must then be
    /// [`ConnectionHeader::Close`]. The body follows as [`chunk`]s and [`LAST_CHUNK`], or as
    /// raw bytes. Returns the number of bytes appended.
    pub fn encode_stream_head(
        &self,
        out: &mut Vec<u8>,
        date: &DateCache,
        connection: ConnectionHeader,
        chunked: bool,
    ) -> usize {
        let start = out.len();
        let framing = if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
        self.encode_head(out, date, connection, framing);
        out.len() - start
    }

    /// The status line and the fields, up to and including the empty line.
    fn encode_head(
        &self,
        out: &mut Vec<u8>,
        date: &DateCache,
        connection: ConnectionHeader,
        framing: Framing,
    ) {
        match status_line(self.status) {
            Some(line) => out.extend_from_slice(line),
            None => {
                // A code without a phrase in our table: the reason phrase is optional
                // (RFC 9112 §4: `status-line = HTTP-version SP status-code SP [ reason-phrase ]`).
                out.extend_from_slice(b"HTTP/1.1 ");
                out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
                out.extend_from_slice(b" \r\n");
            }
        }
        out.extend_from_slice(b"Server: evloop\r\nDate: ");
        out.extend_from_slice(date.as_bytes());
        if framing != Framing::None {
            out.extend_from_slice(b"\r\nContent-Type: ");
            put_field_value(out, self.content_type.as_bytes());
        }
        match framing {
            Framing::Length(length) => {
                out.extend_from_slice(b"\r\nContent-Length: ");
                out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            }
            Framing::Chunked => out.extend_from_slice(b"\r\nTransfer-Encoding: chunked"),
            Framing::UntilClose | Framing::None => {}
        }
        out.extend_from_slice(match connection {
            ConnectionHeader::Omit => b"\r\n",
            ConnectionHeader::KeepAlive => b"\r\nConnection: keep-alive\r\n",
            ConnectionHeader::Close => b"\r\nConnection: close\r\n",
        });
        for (name, value) in &self.headers {
            if !is_sendable_field_name(name) {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            put_field_value(out, value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// How a response's head says where its body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No content at all (1xx, 204): neither `Content-Type` nor a length.
    None,
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Nothing: the body ends when the connection closes.
    UntilClose,
}

/// Append `piece` as one chunk of a chunked body (RFC 9112 §7.1). An empty piece appends
/// nothing, since an empty chunk would end the body.
pub fn chunk(out: &mut Vec<u8>, piece: &[u8]) {
    if piece.is_empty() {
        return;
    }
    let mut size = [0u8; 16];
    let mut at = size.len();
    let mut n = piece.len();
    while n > 0 {
        at -= 1;
        size[at] = b"0123456789abcdef"[n % 16];
        n /= 16;
    }
    out.extend_from_slice(&size[at..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(piece);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body: the last (empty) chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// An extra field the encoder may send: a token (RFC 9110 §5.1), and not one of the fields that
/// frame the message, which the encoder writes itself.
fn is_sendable_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(is_tchar)
        && !["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|framing| name.eq_ignore_ascii_case(framing))
}

/// Append a field value with every byte outside `field-vchar / SP / HTAB` (RFC 9110 §5.5) sent as
/// SP. The common value has none, and is copied as is.
fn put_field_value(out: &mut Vec<u8>, value: &[u8]) {
    let allowed = |byte: u8| is_field_vchar(byte) || is_ows(byte);
    if value.iter().all(|&byte| allowed(byte)) {
        out.extend_from_slice(value);
    } else {
        out.extend(
            value
                .iter()
                .map(|&byte| if allowed(byte) { byte } else { b' ' }),
        );
    }
}

/// The interim response sent before reading a body the client announced with
/// `Expect: 100-continue` (RFC 9110 §10.1.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The status line for `status`, from a static table (`None` for codes not in it). evloop always
/// answers `HTTP/1.1`, also to HTTP/1.0 clients (RFC 9110 §6.2: a server sends its own highest
/// version).
fn status_line(status: u16) -> Option<&'static [u8]> {
    Some(match status {
        100 => b"HTTP/1.1 100 Continue\r\n",
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        202 => b"HTTP/1.1 202 Accepted\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        303 => b"HTTP/1.1 303 See Other\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        307 => b"HTTP/1.1 307 Temporary Redirect\r\n",
        308 => b"HTTP/1.1 308 Permanent Redirect\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        401 => b"HTTP/1.1 401 Unauthorized\r\n",
        403 => b"HTTP/1.1 403 Forbidden\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        405 => b"HTTP/1.1 405 Method Not Allowed\r\n",
        408 => b"HTTP/1.1 408 Request Timeout\r\n",
        409 => b"HTTP/1.1 409 Conflict\r\n",
        410 => b"HTTP/1.1 410 Gone\r\n",
        413 => b"HTTP/1.1 413 Content Too Large\r\n",
        414 => b"HTTP/1.1 414 URI Too Long\r\n",
        415 => b"HTTP/1.1 415 Unsupported Media Type\r\n",
        417 => b"HTTP/1.1 417 Expectation Failed\r\n",
        422 => b"HTTP/1.1 422 Unprocessable Content\r\n",
        429 => b"HTTP/1.1 429 Too Many Requests\r\n",
        431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        500 => b"HTTP/1.1 500 Internal Server Error\r\n",
        501 => b"HTTP/1.1 501 Not Implemented\r\n",
        502 => b"HTTP/1.1 502 Bad Gateway\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        504 => b"HTTP/1.1 504 Gateway Timeout\r\n",
        505 => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
        _ => return None,
    })
}

/// The `Date` header value (IMF-fixdate, always 29 bytes), formatted at most once a second.
///
/// The reactor calls [`DateCache::refresh`] once per turn; formatting happens only when the
/// second has changed. TechEmpower's verifier checks both halves of this: the header must be
/// present on every response, and it must change over time.
#[derive(Debug, Clone)]
pub struct DateCache {
    bytes: [u8; 29],
    second: u64,
}

impl DateCache {
    /// A cache holding the current time.
    pub fn new() -> DateCache {
        let mut cache = DateCache {
            bytes: [b' '; 29],
            second: u64::MAX,
        };
        cache.refresh(SystemTime::now());
        cache
    }

    /// Re-format if `now` is in a different second than the cached value.
    pub fn refresh(&mut self, now: SystemTime) {
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == self.bytes.len() {
                self.bytes.copy_from_slice(text.as_bytes());
            }
            self.second = second;
        }
    }

    /// The header value, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fixed_date() -> DateCache {
        let mut date = DateCache::new();
        date.refresh(UNIX_EPOCH + Duration::from_secs(784_111_777));
        date
    }

    /// The plaintext response is byte-for-byte what TechEmpower-style clients expect.
    #[test]
    fn encodes_a_plaintext_response() {
        let mut out = Vec::new();
        Response::text(200, "Hello, World!").encode(
            &mut out,
            &fixed_date(),
            ConnectionHeader::Omit,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: evloop\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 13\r\n\r\nHello, World!"
        );
    }

    /// HEAD keeps Content-Length of the GET body but sends no body; extra headers follow.
    #[test]
    fn head_only_omits_body_but_keeps_length() {
        let mut out = Vec::new();
        let mut response = Response::json_static(503, "{}");
        response.headers.push(("Retry-After", "1".into()));
        response.encode(&mut out, &fixed_date(), ConnectionHeader::Close, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.contains("Content-Length: 2\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    /// A code outside the table keeps its number, with an empty reason phrase.
    #[test]
    fn unlisted_codes_keep_their_number() {
        let mut out = Vec::new();
        Response::text(418, "teapot").encode(&mut out, &fixed_date(), ConnectionHeader::Omit, true);
        assert!(out.starts_with(b"HTTP/1.1 418 \r\nServer: evloop\r\n"));
    }

    fn encoded(response: &Response) -> String {
        let mut out = Vec::new();
        response.encode(&mut out, &fixed_date(), ConnectionHeader::Omit, false);
        String::from_utf8(out).unwrap()
    }

    /// 1xx and 204 responses carry no `Content-Length` (RFC 9110 §8.6) and no content, even
    /// when the handler set a body: a body there would be read as the start of the next response.
    #[test]
    fn no_content_length_on_1xx_and_204() {
        for status in [100, 103, 204] {
            let mut response = Response::text(status, "oops");
            response.headers.push(("X-A", "1".into()));
            assert_eq!(
                encoded(&response),
                format!(
                    "{}Server: evloop\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nX-A: 1\r\n\r\n",
                    match status {
                        100 => "HTTP/1.1 100 Continue\r\n",
                        103 => "HTTP/1.1 103 \r\n",
                        _ => "HTTP/1.1 204 No Content\r\n",
                    }
                )
            );
        }
    }

    /// A 304 keeps the length of the body it stands for, like `HEAD`, and sends no body.
    #[test]
    fn not_modified_sends_no_body() {
        let text = encoded(&Response::text(304, "cached"));
        assert!(text.contains("\r\nContent-Length: 6\r\n\r\n"), "{text:?}");
        assert!(text.ends_with("\r\n\r\n"), "{text:?}");
    }

    /// A field value from a handler never holds CR, LF, NUL or another control byte: each is
    /// sent as SP, so the value stays one field line and cannot forge fields or a response.
    #[test]
    fn field_values_cannot_split_the_response() {
        let mut response = Response::text(200, "ok");
        response.headers.push((
            "X-Note",
            "a\r\nSet-Cookie: x=1\r\n\r\nHTTP/1.1 200 OK\x00\x7f\tb".into(),
        ));
        let text = encoded(&response);
        assert!(
            text.contains("\r\nX-Note: a  Set-Cookie: x=1    HTTP/1.1 200 OK  \tb\r\n\r\nok"),
            "{text:?}"
        );
        assert_eq!(text.matches("\r\n").count(), 7, "{text:?}");
    }

    /// Extra fields with a name that is not a token, or that would contradict the framing the
    /// encoder writes (`Content-Length`, `Transfer-Encoding`, `Connection`), are not sent.
    #[test]
    fn bad_or_framing_field_names_are_not_sent() {
        let mut response = Response::text(200, "ok");
        for name in [
            "X-Ok",
            "Bad Name",
            "X\r\nSet-Cookie",
            "",
            "X:Y",
            "content-length",
            "Transfer-Encoding",
            "Connection",
        ] {
            response.headers.push((name, "1".into()));
        }
        let text = encoded(&response);
        assert!(
            text.ends_with("Content-Length: 2\r\nX-Ok: 1\r\n\r\nok"),
            "{text:?}"
        );
    }

    /// The cached date only changes when the second does.
    #[test]
    fn date_refreshes_per_second() {
        let mut date = fixed_date();
        let before = date.as_bytes().to_vec();
        date.refresh(UNIX_EPOCH + Duration::from_millis(784_111_777_900));
        assert_eq!(date.as_bytes(), &before[..]);
        date.refresh(UNIX_EPOCH + Duration::from_secs(784_111_778));
        assert_eq!(date.as_bytes(), b"Sun, 06 Nov 1994 08:49:38 GMT");
    }
}
