//! Asking a node how it is: `/health` for "up", `/status` for what it is doing. Told apart
//! by what reqwest reports, not by error text, so a view can tell a slow node from an absent
//! one.

use std::time::Duration;

use reqwest::StatusCode;

use crate::api::NodeStatus;
use crate::routes;

/// What one `GET {url}/status` found.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    Answered(Box<NodeStatus>),
    /// The request timed out or the node answered 503 (its read queue is full).
    Busy(String),
    /// Nothing accepted the connection.
    Refused(String),
    /// Any other failure: another HTTP status, a body that is not the status JSON, a
    /// connection dropped mid-answer.
    Bad(String),
}

impl Probe {
    pub fn status(&self) -> Option<&NodeStatus> {
        match self {
            Probe::Answered(s) => Some(s),
            _ => None,
        }
    }
}

/// Asks `url` for its status within `timeout`.
pub async fn probe(client: &reqwest::Client, url: &str, timeout: Duration) -> Probe {
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            Probe::Busy(format!(
                "/status did not answer within {} ms",
                timeout.as_millis()
            ))
        } else if e.is_connect() {
            Probe::Refused("connection refused".to_owned())
        } else {
            Probe::Bad(error_chain(&e))
        }
    };
    let response = match client
        .get(format!("{url}{}", routes::STATUS.path))
        .timeout(timeout)
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => return failed(e),
    };
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return Probe::Busy("/status answered 503 (busy)".to_owned());
    }
    if !status.is_success() {
        return Probe::Bad(format!("/status answered {status}"));
    }
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return failed(e),
    };
    match serde_json::from_slice::<NodeStatus>(&body) {
        Ok(s) => Probe::Answered(Box::new(s)),
        Err(e) => Probe::Bad(format!("/status is not the status JSON: {e}")),
    }
}

/// True when `GET {url}/health` answers 200 within `timeout`.
pub async fn is_healthy(client: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    match client
        .get(format!("{url}{}", routes::HEALTH.path))
        .timeout(timeout)
        .send()
        .await
    {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}

/// An error with its causes, "a: b: c", as `anyhow`'s `{:#}` would print it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Instant;

    use super::*;

    /// A one-shot HTTP server on 127.0.0.1 that answers the first request with `status` and
    /// `body`; its URL.
    fn answer_once(status: &str, body: &str) -> String {
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            // The request ends with an empty line; it has no body.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = reader.get_mut().write_all(response.as_bytes());
        });
        url
    }

    #[tokio::test]
    async fn probes_are_told_apart_by_what_happened_not_by_error_text() {
        let client = reqwest::Client::new();
        let timeout = Duration::from_millis(300);

        let ok = answer_once("200 OK", r#"{"height": 7}"#);
        match probe(&client, &ok, timeout).await {
            Probe::Answered(s) => assert_eq!(s.height, 7),
            other => panic!("200 with status JSON: {other:?}"),
        }
        let full = answer_once("503 Service Unavailable", r#"{"error": "busy"}"#);
        assert_eq!(
            probe(&client, &full, timeout).await,
            Probe::Busy("/status answered 503 (busy)".into())
        );
        let missing = answer_once("404 Not Found", "{}");
        assert_eq!(
            probe(&client, &missing, timeout).await,
            Probe::Bad("/status answered 404 Not Found".into())
        );
        let garbage = answer_once("200 OK", r#"{"height": "x"}"#);
        assert!(matches!(
            probe(&client, &garbage, timeout).await,
            Probe::Bad(_)
        ));

        // The kernel completes the handshake into the backlog; nobody ever reads it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
        let started = Instant::now();
        match probe(&client, &silent_url, timeout).await {
            Probe::Busy(why) => assert!(why.contains("300 ms"), "{why}"),
            other => panic!("a silent listener is busy: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the probe's own timeout applies"
        );
        drop(silent);

        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_url = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        assert_eq!(
            probe(&client, &closed_url, timeout).await,
            Probe::Refused("connection refused".into())
        );
    }
}
