//! Handlers are user code that runs on the reactor's own thread: whatever they do wrong costs
//! one request, never the server.

mod common;

use evloop::http::{Method, Response};
use evloop::router::Router;

use common::{get, spawn_in_process, test_config, Client};

/// A handler that panics gets its request a JSON 500; the same connection and every other one
/// keep being served.
#[test]
fn a_panicking_handler_is_a_500_not_a_dead_server() {
    let router = Router::new()
        .route(Method::Get, "/boom", |_, _| {
            panic!("this handler fails on purpose")
        })
        .route(Method::Get, "/plaintext", |_, _| {
            Response::text(200, "Hello, World!").into()
        });
    let addr = spawn_in_process(test_config(), router);
    let mut client = Client::connect(addr);
    let response = client.request(get("/boom"));
    assert_eq!(response.status, 500);
    assert_eq!(response.json()["status"], 500);
    assert_eq!(client.request(get("/plaintext")).text(), "Hello, World!");
    let mut other = Client::connect(addr);
    assert_eq!(other.request(get("/plaintext")).status, 200);
}

/// A handler that answers with a 1xx status would desynchronise the client (it reads a 1xx as
/// interim and takes the next response as this one's answer): it is sent as a 500 instead.
#[test]
fn a_handlers_1xx_status_becomes_a_500() {
    let router = Router::new()
        .route(Method::Get, "/interim", |_, _| {
            Response::text(103, "not final").into()
        })
        .route(Method::Get, "/plaintext", |_, _| {
            Response::text(200, "Hello, World!").into()
        });
    let addr = spawn_in_process(test_config(), router);
    let mut client = Client::connect(addr);
    assert_eq!(client.request(get("/interim")).status, 500);
    assert_eq!(client.request(get("/plaintext")).text(), "Hello, World!");
}
