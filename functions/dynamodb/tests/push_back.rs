//! The push-back counts: a throttle the SDK retried away is counted by the client's
//! interceptor (over a real HTTP connection to a scripted endpoint, since no local DynamoDB
//! throttles), and an append that lost a race is counted by the store (on the local DynamoDB).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use sagaflow_dynamodb::{DynamoEventStore, PushBack, PushBackCounts};
use sagaflow_eventsourcing::EventStore;
use sagaflow_eventsourcing::StreamId;

/// Answers each connection's requests with the next of `responses` (status, JSON body).
fn scripted_endpoint(responses: Vec<(u16, &'static str)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut responses = responses.into_iter();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let Some((status, answer)) = responses.next() else {
                    return;
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                writer.write_all(reply.as_bytes()).unwrap();
            }
        }
    });
    url
}

#[tokio::test]
async fn a_throttle_the_sdk_retried_away_is_still_counted() {
    let endpoint = scripted_endpoint(vec![
        (
            400,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate of requests exceeds the allowed throughput."}"#,
        ),
        (200, r#"{"Count":0,"Items":[],"ScannedCount":0}"#),
    ]);
    let push_back = Arc::new(PushBack::default());
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .interceptor(push_back.interceptor())
        .build();
    let store = DynamoEventStore::new(aws_sdk_dynamodb::Client::from_conf(config), "events")
        .with_push_back(push_back.clone());
    let events = store
        .load(&StreamId::new("payment", "ord-1"), 0)
        .await
        .expect("the retry succeeds");
    assert!(events.is_empty());
    assert_eq!(
        push_back.take(),
        PushBackCounts {
            throttled: 1,
            conflicts: 0
        }
    );
}
