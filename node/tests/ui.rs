//! The visualizer served by a real node at `/ui/`, and the browser origins allowed to read its
//! GET answers: the chain's own validators, nobody else.

mod common;

use std::path::PathBuf;

use common::*;
use reqwest::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE, LOCATION, ORIGIN};

/// A stand-in for `wasm/www` after `wasm/build.sh`: the served bytes are what is checked.
fn fake_ui(root: &std::path::Path) -> PathBuf {
    let dir = root.join("www");
    std::fs::create_dir_all(dir.join("pkg")).expect("ui dir");
    std::fs::write(dir.join("index.html"), "<!doctype html><title>ui</title>").expect("write");
    std::fs::write(dir.join("app.js"), "console.log('ui')").expect("write");
    std::fs::write(dir.join("pkg/tinyweb_wasm_bg.wasm"), b"\0asm\x01\0\0\0").expect("write");
    std::fs::write(dir.join("secret.key"), "not an asset").expect("write");
    dir
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_serves_the_page_under_ui_and_nothing_outside_it() {
    let assets = tempfile::tempdir().expect("tempdir");
    let www = fake_ui(assets.path());
    let mut cluster = TestCluster::create(2, |c| c.node.ui_dir = Some(www.clone()));
    cluster.start_healthy(0).await;
    let base = cluster.nodes[0].url();
    let client = no_redirects();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let r = get("/ui").await.expect("GET /ui");
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()[LOCATION], "/ui/");
    let r = get("/ui?live=http://127.0.0.1:1")
        .await
        .expect("GET /ui?live");
    assert_eq!(r.headers()[LOCATION], "/ui/?live=http://127.0.0.1:1");

    let r = get("/ui/").await.expect("GET /ui/");
    assert_eq!(r.status(), 200);
    assert!(r.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap_or("")
        .starts_with("text/html"));
    assert_eq!(
        r.text().await.expect("body"),
        "<!doctype html><title>ui</title>"
    );

    let r = get("/ui/pkg/tinyweb_wasm_bg.wasm").await.expect("GET wasm");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[CONTENT_TYPE], "application/wasm");
    assert_eq!(r.bytes().await.expect("body").as_ref(), b"\0asm\x01\0\0\0");

    for outside in [
        "/ui/secret.key",
        "/ui/missing.js",
        "/ui/..%2Fnode.key",
        "/ui/%2e%2e/node0/node.key",
        "/ui/.hidden.js",
    ] {
        let r = get(outside).await.expect("GET");
        assert_eq!(r.status(), 404, "{outside}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ui_dir_there_is_no_page() {
    let mut cluster = TestCluster::create(1, |_| {});
    cluster.start_healthy(0).await;
    let r = no_redirects()
        .get(format!("{}/ui/", cluster.nodes[0].url()))
        .send()
        .await
        .expect("GET /ui/");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_the_clusters_own_nodes_may_read_status_and_strangers_may_not() {
    let mut cluster = TestCluster::create(2, |_| {});
    cluster.start_healthy(0).await;
    let status = format!("{}/status", cluster.nodes[0].url());
    let client = no_redirects();
    let allowed = |origin: String| {
        let request = client.get(&status).header(ORIGIN, origin);
        async move {
            let r = request.send().await.expect("GET /status");
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()[reqwest::header::VARY], "Origin");
            r.headers()
                .get(ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.to_str().unwrap_or("").to_owned())
        }
    };
    // Node 1's page (another validator of this chain) and node 0's own.
    for node in [1, 0] {
        let origin = cluster.nodes[node].url();
        assert_eq!(allowed(origin.clone()).await, Some(origin));
    }
    for stranger in [
        "http://evil.example".to_owned(),
        "http://127.0.0.1:1".to_owned(),
        "null".to_owned(),
        format!("{}/path", cluster.nodes[1].url()),
    ] {
        assert_eq!(allowed(stranger.clone()).await, None, "{stranger}");
    }
}
