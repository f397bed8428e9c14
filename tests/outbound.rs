//! Calls upstream made by the reactor itself (`Reply::Call`, `/fanout`'s default mode), over
//! real sockets, against the test upstream (each failure answered by its cause is in
//! tests/fanout.rs, for every mode): a connect that hangs, keep-alive
//! connections reused, the bound on connections and the queue behind it, a client that leaves
//! cancelling its calls (the upstream sees its connections close), no answer ever reaching the
//! wrong client, pipelined fan-outs answered in order, and a kept-alive connection the upstream
//! closed under a call retried once.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use evloop::config::Config;
use evloop::endpoints;
use evloop::http::{Method, Response};
use evloop::outbound::{CallLimits, CallRequest, Upstream};
use evloop::router::{Reply, Router};

use common::upstream::{Behaviour, TestUpstream};
use common::{get, spawn_in_process, test_config, Client};

/// An in-process evloop with every endpoint, calling `upstream` within `calls`.
fn server(upstream: &TestUpstream, calls: CallLimits) -> SocketAddr {
    server_to(upstream.upstream(), calls)
}

fn server_to(upstream: Arc<Upstream>, calls: CallLimits) -> SocketAddr {
    let config = Config {
        pool: 2,
        upstream: Some(upstream),
        calls,
        ..test_config()
    };
    spawn_in_process(config.clone(), endpoints::router_for(&config))
}

/// `GET path` on a new connection.
fn fetch(addr: SocketAddr, path: &str) -> common::Response {
    Client::connect(addr).request(get(path))
}

/// An upstream that accepts no connection (its accept queue is full, so the kernel drops the
/// SYNs) is a 504 once the connect timeout has passed.
#[test]
fn a_connect_that_hangs_is_504() {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue: nobody ever accepts.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        {
            fillers.push(stream);
        }
    }
    let upstream = Arc::new(Upstream::parse(&format!("http://{addr}")).unwrap());
    let limits = CallLimits {
        connect_timeout: Duration::from_millis(300),
        ..CallLimits::default()
    };
    let server = server_to(upstream, limits);
    let started = Instant::now();
    let response = fetch(server, "/fanout?n=1&ms=0");
    assert_eq!(
        response.assert_json_error(504),
        "upstream did not accept the connection in time"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "took {took:?}"
    );
}

/// Keep-alive: three fan-outs of four calls, one after another, use four connections, not
/// twelve.
#[test]
fn kept_alive_connections_are_reused() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let addr = server(&upstream, CallLimits::default());
    let mut client = Client::connect(addr);
    for _ in 0..3 {
        let response = client.request(get("/fanout?n=4&ms=20"));
        assert_eq!(response.status, 200, "{response:?}");
    }
    assert_eq!(upstream.requests(), 12);
    assert_eq!(
        upstream.accepted(),
        4,
        "each call after the first four reused a connection"
    );
    assert_eq!(upstream.peer_closed(), 0, "idle connections stay open");
}

/// At most `max_connections` are open: twelve calls of 100 ms through three connections take
/// four rounds, and the upstream never sees more than three.
#[test]
fn calls_past_the_bound_wait_for_a_connection() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let limits = CallLimits {
        max_connections: 3,
        ..CallLimits::default()
    };
    let addr = server(&upstream, limits);
    let response = fetch(addr, "/fanout?n=12&ms=100");
    assert_eq!(response.status, 200, "{response:?}");
    let elapsed = response.json()["elapsed_ms"].as_f64().unwrap();
    assert!((390.0..2000.0).contains(&elapsed), "elapsed {elapsed} ms");
    assert_eq!(upstream.accepted(), 3);
    assert_eq!(upstream.requests(), 12);
}

/// Past the bound on waiting calls, a call fails at once: 503, naming the cause.
#[test]
fn too_many_waiting_calls_is_503() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let limits = CallLimits {
        max_connections: 1,
        max_waiting: 2,
        ..CallLimits::default()
    };
    let addr = server(&upstream, limits);
    let response = fetch(addr, "/fanout?n=5&ms=100");
    assert_eq!(
        response.assert_json_error(503),
        "server busy: too many calls waiting for an upstream connection"
    );
    // The calls that had started were cancelled with it: the next fan-out has the connection.
    let response = fetch(addr, "/fanout?n=3&ms=10");
    assert_eq!(response.status, 200, "{response:?}");
}

/// A client that leaves cancels its calls: the upstream sees every connection closed at once,
/// long before it would have answered, and the next client's calls work.
#[test]
fn a_client_that_leaves_cancels_its_calls() {
    let upstream = TestUpstream::start(Behaviour::Hang);
    let addr = server(&upstream, CallLimits::default());
    let mut client = Client::connect(addr);
    client.send(get("/fanout?n=3&ms=0"));
    assert!(upstream.wait_requests(3, Duration::from_secs(5)));
    let left = Instant::now();
    drop(client);
    let closed = upstream
        .wait_peer_closed(3, Duration::from_secs(5))
        .expect("the upstream saw its three connections closed");
    let took = closed.saturating_duration_since(left);
    assert!(
        took < Duration::from_secs(1),
        "closed {took:?} after the client left"
    );
}

/// A request timeout (`--request-timeout`) cancels the calls too: 504 for the client, and
/// every connection closed for the upstream, none kept for reuse with a response pending.
#[test]
fn a_request_timeout_cancels_its_calls() {
    let upstream = TestUpstream::start(Behaviour::Hang);
    let config = Config {
        pool: 2,
        upstream: Some(upstream.upstream()),
        request_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let addr = spawn_in_process(config.clone(), endpoints::router_for(&config));
    let mut client = Client::connect(addr);
    let response = client.request(get("/fanout?n=2&ms=0"));
    assert_eq!(response.status, 504, "{response:?}");
    assert!(upstream
        .wait_peer_closed(2, Duration::from_secs(2))
        .is_some());
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// A client that leaves while its calls are under way, and another that takes its place (and,
/// most likely, its slot in the slab) at once: the second gets its own answer, whatever the
/// first one's calls do.
#[test]
fn a_new_client_never_gets_the_answer_of_one_that_left() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let addr = server(&upstream, CallLimits::default());
    for round in 0..5 {
        let mut leaving = Client::connect(addr);
        leaving.send(get("/fanout?n=2&ms=100"));
        assert!(upstream.wait_requests(round * 4 + 2, Duration::from_secs(5)));
        drop(leaving);
        let mut next = Client::connect(addr);
        let response = next.request(get("/fanout?n=2&ms=150"));
        assert_eq!(response.status, 200, "{response:?}");
        let json = response.json();
        assert_eq!(json["ms"], 150, "round {round}: {json}");
        assert!(json["elapsed_ms"].as_f64().unwrap() >= 140.0, "{json}");
    }
}

/// Pipelined requests that each fan out are answered in the order they were sent, whichever
/// finishes first.
#[test]
fn pipelined_fanouts_answer_in_order() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let addr = server(&upstream, CallLimits::default());
    let mut client = Client::connect(addr);
    let requests = [
        get("/fanout?n=3&ms=300"),
        get("/fanout?n=2&ms=10"),
        get("/plaintext"),
        get("/fanout?n=1&ms=100"),
    ]
    .concat();
    client.send(requests);
    let responses: Vec<_> = (0..4).map(|_| client.read_response()).collect();
    assert_eq!(responses[0].json()["n"], 3);
    assert_eq!(responses[1].json()["n"], 2);
    assert_eq!(responses[2].text(), "Hello, World!");
    assert_eq!(responses[3].json()["n"], 1);
}

/// An upstream that closes a kept-alive connection just as the next call goes out on it: the
/// call is sent once more, on a new connection, and the client never notices.
#[test]
fn a_stale_kept_alive_connection_is_retried_once() {
    let upstream = TestUpstream::start(Behaviour::CloseAfterEach {
        after: Duration::from_millis(300),
    });
    let addr = server(&upstream, CallLimits::default());
    let mut client = Client::connect(addr);
    assert_eq!(client.request(get("/fanout?n=1&ms=0")).status, 200);
    // The connection is idle on our side; the upstream will close it without answering.
    let response = client.request(get("/fanout?n=1&ms=0"));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(upstream.accepted(), 2, "one retry, on a new connection");
}

/// A server with two routes: `GET /stall` blocks the reactor for 400 ms (on purpose: the
/// upstream's response or close arrives meanwhile), and `GET /post?ms=N` makes one `POST` to
/// `upstream`'s `/sleep?ms=N` (a request never sent twice) and answers `upstream <status>`, or
/// the call's error.
fn stall_and_post_server(upstream: &TestUpstream) -> SocketAddr {
    let target = upstream.upstream();
    let router = Router::new()
        .route(Method::Get, "/stall", |_, _| {
            sleep(Duration::from_millis(400));
            Response::text(200, "stalled").into()
        })
        .route(Method::Get, "/post", move |req, _| {
            let ms = req.query_param("ms").unwrap_or("0");
            let mut request = CallRequest::get(&target, format!("/sleep?ms={ms}"));
            request.method = Method::Post;
            request.body = Some(b"once".to_vec());
            Reply::call(request, |result| match result {
                Ok(response) => Response::text_owned(200, format!("upstream {}", response.status)),
                Err(err) => evloop::error::Error::from(err).into_response(),
            })
        });
    spawn_in_process(test_config(), router)
}

/// A request that is not idempotent is never sent twice: the same stale connection is a 502.
#[test]
fn a_post_is_not_retried() {
    let upstream = TestUpstream::start(Behaviour::CloseAfterEach {
        after: Duration::from_millis(300),
    });
    let addr = stall_and_post_server(&upstream);
    let mut client = Client::connect(addr);
    assert_eq!(client.request(get("/post")).status, 200);
    let response = client.request(get("/post"));
    assert_eq!(
        response.assert_json_error(502),
        "upstream closed the connection before responding"
    );
    assert_eq!(upstream.accepted(), 1, "not sent again");
}

/// The continuation runs on the reactor and may continue with more work: here the body is
/// parsed by a pool job.
#[test]
fn a_continuation_can_offload() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let target = upstream.upstream();
    let router = Router::new().route(Method::Get, "/parse", move |_, _| {
        Reply::call(CallRequest::get(&target, "/sleep?ms=5"), |result| {
            let body = result.map(|r| r.body).unwrap_or_default();
            Reply::offload(move |job| {
                Response::text_owned(
                    200,
                    format!(
                        "worker {} parsed {}",
                        job.worker,
                        String::from_utf8_lossy(&body)
                    ),
                )
            })
        })
    });
    let addr = spawn_in_process(test_config(), router);
    let response = fetch(addr, "/parse");
    assert_eq!(response.status, 200);
    assert!(
        response.text().ends_with(r#"parsed {"slept_ms":5}"#),
        "{}",
        response.text()
    );
}

/// Many clients each fanning out at once, through a small bound: every one answered, and the
/// connections are shared.
#[test]
fn many_clients_share_the_connections() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let limits = CallLimits {
        max_connections: 16,
        ..CallLimits::default()
    };
    let addr = server(&upstream, limits);
    let clients: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                (0..3)
                    .map(|_| client.request(get("/fanout?n=5&ms=20")).status)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), vec![200, 200, 200]);
    }
    assert_eq!(upstream.requests(), 300);
    assert!(
        upstream.accepted() <= 16,
        "{} connections",
        upstream.accepted()
    );
    sleep(Duration::from_millis(10));
}

/// An upstream that closes right after a keep-alive response, while the reactor is busy, so
/// that the response and the close arrive together: the close is noticed with the response, and
/// the next call (a POST, which is never sent twice) goes on a new connection instead of the
/// closed one.
#[test]
fn a_close_that_comes_with_the_response_is_noticed() {
    for _ in 0..3 {
        let upstream = TestUpstream::start(Behaviour::CloseAfterEach {
            after: Duration::ZERO,
        });
        let addr = stall_and_post_server(&upstream);
        let mut client = Client::connect(addr);
        client.send(get("/post?ms=150"));
        sleep(Duration::from_millis(50));
        let mut staller = Client::connect(addr);
        staller.send(get("/stall"));
        assert_eq!(client.read_response().status, 200);
        sleep(Duration::from_millis(200));
        let response = client.request(get("/post"));
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(upstream.accepted(), 2);
    }
}

/// The upstream closes a kept-alive connection while the reactor is busy (a handler blocks it),
/// and a POST, which is never sent twice, is the next request to need a connection in that same
/// turn, before the close's event is handled: the connection is checked before the POST goes
/// out, and the POST takes a new one.
#[test]
fn a_post_never_goes_out_on_a_connection_closed_meanwhile() {
    for _ in 0..3 {
        let upstream = TestUpstream::start(Behaviour::CloseAfterEach {
            after: Duration::from_millis(100),
        });
        let addr = stall_and_post_server(&upstream);
        let mut client = Client::connect(addr);
        assert_eq!(client.request(get("/post")).status, 200);
        // Both in one write: the POST is dispatched right after the stall, in the same turn.
        client.send([get("/stall"), get("/post")].concat());
        assert_eq!(client.read_response().status, 200);
        let response = client.read_response();
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(upstream.accepted(), 2);
    }
}

/// A call may cap the body it accepts: an upstream answering more is a 502 naming the limit,
/// and the same body under a larger cap is taken whole.
#[test]
fn a_call_refuses_a_body_over_its_cap() {
    let big = Router::new().route(Method::Get, "/big", |_, _| {
        Response::text_owned(200, "x".repeat(100_000)).into()
    });
    let upstream_addr = spawn_in_process(test_config(), big);
    let target = Arc::new(Upstream::parse(&format!("http://{upstream_addr}")).unwrap());
    let router = Router::new().route(Method::Get, "/call", move |req, _| {
        let cap: usize = req.query_param("cap").unwrap_or("0").parse().unwrap_or(0);
        let request = CallRequest {
            max_body: Some(cap),
            ..CallRequest::get(&target, "/big")
        };
        Reply::call(request, |result| match result {
            Ok(response) => Response::text_owned(200, format!("{} bytes", response.body.len())),
            Err(err) => evloop::error::Error::from(err).into_response(),
        })
    });
    let addr = spawn_in_process(test_config(), router);
    assert_eq!(
        fetch(addr, "/call?cap=65536").assert_json_error(502),
        "upstream body over 65536 bytes"
    );
    assert_eq!(fetch(addr, "/call?cap=200000").text(), "100000 bytes");
}

/// A graceful drain closes the kept-alive upstream connections at once, while a client request
/// still keeps the process running, rather than when the process exits.
#[test]
fn a_drain_closes_idle_upstream_connections() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let server = common::spawn_binary(&["--pool", "1", "--upstream", &upstream.url()]);
    assert_eq!(fetch(server.addr(), "/fanout?n=2&ms=0").status, 200);
    assert_eq!(upstream.peer_closed(), 0, "kept alive");
    // A slow request keeps the drain (and the process) going for 1.5 s.
    let mut slow = Client::connect(server.addr());
    slow.send(get("/sleep?ms=1500"));
    sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let closed = upstream
        .wait_peer_closed(2, Duration::from_secs(5))
        .expect("the upstream saw both connections closed");
    let took = closed.saturating_duration_since(signalled);
    assert!(
        took < Duration::from_millis(700),
        "closed {took:?} after SIGTERM"
    );
    assert_eq!(slow.read_response().status, 200);
}

/// A library user's `Duration::MAX` timeouts mean "never", not a panic on the reactor.
#[test]
fn timeouts_of_any_length_are_accepted() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let config = Config {
        upstream: Some(upstream.upstream()),
        request_timeout: Duration::MAX,
        calls: CallLimits {
            connect_timeout: Duration::MAX,
            response_timeout: Duration::MAX,
            idle_timeout: Duration::MAX,
            ..CallLimits::default()
        },
        ..test_config()
    };
    let addr = spawn_in_process(config.clone(), endpoints::router_for(&config));
    let mut client = Client::connect(addr);
    for mode in ["await", "pool", "inline"] {
        let response = client.request(get(&format!("/fanout?n=2&ms=10&mode={mode}")));
        assert_eq!(response.status, 200, "{mode}: {response:?}");
    }
}
