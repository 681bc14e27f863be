//! What no SDK sends: malformed and oversized bodies, unsigned and tampered requests, unknown
//! routes, the client-events endpoint. Every answer must be AWS-shaped and never a 500.

use crate::harness::{AKID, Server, sign};

#[tokio::test]
async fn health_and_unsigned_requests() {
    let server = Server::start(&[]);
    let health = server.raw("GET", "/healthz", &[], b"").await;
    assert_eq!(health.status, 200);
    let unsigned = server
        .raw(
            "POST",
            "/meetings",
            &[("content-type", "application/json")],
            b"{}",
        )
        .await;
    let message = unsigned.assert_error(403, "ForbiddenException");
    assert!(message.contains("Authorization"), "{message}");
    let garbage = server
        .raw(
            "GET",
            "/meetings",
            &[("authorization", "AWS4-HMAC-SHA256 nonsense")],
            b"",
        )
        .await;
    garbage.assert_error(403, "ForbiddenException");
}

#[tokio::test]
async fn tampered_and_stale_signatures() {
    let server = Server::start(&[]);
    let body = br#"{"MediaRegion":"us-east-1","ExternalMeetingId":"signed"}"#;
    let url = format!("http://{}/meetings", server.addr);
    let headers = sign(
        "POST",
        &url,
        &server.addr,
        body,
        std::time::SystemTime::now(),
    );
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let ok = server.raw("POST", "/meetings", &pairs, body).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.header("x-amzn-requestid").is_some());
    assert_eq!(ok.header("content-type"), Some("application/json"));
    let tampered = br#"{"MediaRegion":"us-east-1","ExternalMeetingId":"signeD"}"#;
    let bad = server.raw("POST", "/meetings", &pairs, tampered).await;
    let message = bad.assert_error(403, "ForbiddenException");
    assert!(message.contains("signature"), "{message}");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(16 * 60);
    let headers = sign("POST", &url, &server.addr, body, old);
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let stale = server.raw("POST", "/meetings", &pairs, body).await;
    stale.assert_error(403, "ForbiddenException");
    assert!(
        pairs
            .iter()
            .any(|(k, v)| *k == "authorization" && v.contains(AKID))
    );
}

#[tokio::test]
async fn malformed_bodies_and_unknown_routes() {
    let server = Server::start(&[]);
    let cases: [(&str, &str, &[u8], &str); 8] = [
        ("POST", "/meetings", b"{not json", "Invalid request body"),
        ("POST", "/meetings", b"[1,2,3]", "JSON object"),
        (
            "POST",
            "/meetings",
            br#"{"MediaRegion":42,"ExternalMeetingId":"x1"}"#,
            "MediaRegion",
        ),
        (
            "POST",
            "/meetings",
            br#"{"MediaRegion":"us-east-1","ExternalMeetingId":"x1","Tags":{"a":1}}"#,
            "Tags",
        ),
        (
            "POST",
            "/meetings?operation=create-attendees",
            br#"{"MediaRegion":"us-east-1","ExternalMeetingId":"x1"}"#,
            "Attendees",
        ),
        (
            "POST",
            "/meetings",
            br#"{"MediaRegion":"us-east-1","ExternalMeetingId":"x1"} trailing"#,
            "Invalid request body",
        ),
        (
            "POST",
            "/meetings",
            "{\"MediaRegion\":\"us-east-1\",\"ExternalMeetingId\":\"\u{1F600}\u{1F600}\"}"
                .as_bytes(),
            "ExternalMeetingId",
        ),
        (
            "POST",
            "/tags?operation=tag-resource",
            br#"{"ResourceARN":"arn:x","Tags":[{"Key":"aws:k","Value":"v"}]}"#,
            "reserved",
        ),
    ];
    for (method, target, body, expected) in cases {
        let response = server.signed(method, target, body).await;
        let message = response.assert_error(400, "BadRequestException");
        assert!(message.contains(expected), "{target}: {message}");
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let response = server.signed("POST", "/meetings", deep.as_bytes()).await;
    response.assert_error(400, "BadRequestException");
    let deep_object = format!("{{\"Tags\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let response = server
        .signed("POST", "/meetings", deep_object.as_bytes())
        .await;
    response.assert_error(400, "BadRequestException");

    let oversized = vec![b' '; (1 << 20) + 1];
    let response = server.signed("POST", "/meetings", &oversized).await;
    let message = response.assert_error(400, "BadRequestException");
    assert!(message.contains("limit"), "{message}");

    for (method, target) in [
        ("POST", "/tags"),
        ("PATCH", "/meetings"),
        ("GET", "/nothing/here"),
        ("POST", "/meetings?operation=bogus"),
    ] {
        let response = server.signed(method, target, b"").await;
        response.assert_error(404, "UnknownOperationException");
    }
    let response = server
        .signed("GET", "/meetings/not-a-guid/attendees", b"")
        .await;
    response.assert_error(400, "BadRequestException");
    let response = server.signed("GET", "/tags", b"").await;
    let message = response.assert_error(400, "BadRequestException");
    assert!(message.contains("ResourceARN"), "{message}");
}

#[tokio::test]
async fn stop_transcription_without_a_body_and_delete_status_codes() {
    let server = Server::start(&[]);
    let created = server
        .signed(
            "POST",
            "/meetings",
            br#"{"MediaRegion":"us-east-1","ExternalMeetingId":"codes"}"#,
        )
        .await;
    assert_eq!(created.status, 200);
    let meeting = created.json();
    let id = meeting["Meeting"]["MeetingId"].as_str().unwrap().to_owned();
    // No null members anywhere (the browser client dereferences what is present).
    assert!(!created.text().contains(":null"), "{}", created.text());
    assert!(meeting["Meeting"].get("MeetingFeatures").is_none());
    assert_eq!(meeting["Meeting"]["TenantIds"], serde_json::json!([]));
    let stop = server
        .signed(
            "POST",
            &format!("/meetings/{id}/transcription?operation=stop"),
            b"",
        )
        .await;
    assert_eq!(stop.status, 200, "{}", stop.text());
    let arn = meeting["Meeting"]["MeetingArn"].as_str().unwrap();
    let tag = server
        .signed(
            "POST",
            "/tags?operation=tag-resource",
            format!(r#"{{"ResourceARN":"{arn}","Tags":[{{"Key":"k","Value":"v"}}]}}"#).as_bytes(),
        )
        .await;
    assert_eq!(tag.status, 204, "{}", tag.text());
    assert!(tag.body.is_empty());
    let list = server
        .signed(
            "GET",
            &format!("/tags?arn={}", arn.replace(':', "%3A").replace('/', "%2F")),
            b"",
        )
        .await;
    assert_eq!(list.json()["Tags"][0]["Key"], "k");
    let delete = server
        .signed("DELETE", &format!("/meetings/{id}"), b"")
        .await;
    assert_eq!(delete.status, 204);
    assert!(delete.body.is_empty());
    assert!(delete.header("x-amzn-requestid").is_some());
}

#[tokio::test]
async fn client_events_endpoint() {
    let server = Server::start(&[]);
    let created = server
        .signed(
            "POST",
            "/meetings?operation=create-attendees",
            br#"{"MediaRegion":"us-east-1","ExternalMeetingId":"events","Attendees":[{"ExternalUserId":"alice"}]}"#,
        )
        .await;
    let token = created.json()["Attendees"][0]["JoinToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let preflight = server
        .raw(
            "OPTIONS",
            "/v1/client-events",
            &[
                ("origin", "http://localhost:3000"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization,content-type",
                ),
            ],
            b"",
        )
        .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap()
            .contains("authorization")
    );
    assert!(
        preflight
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    // Whatever headers the browser asks for are echoed (the bearer token is what counts).
    let asked = "authorization,content-type,x-amzn-trace-id,x-custom-header";
    let preflight = server
        .raw(
            "OPTIONS",
            "/v1/client-events",
            &[
                ("origin", "http://localhost:3000"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", asked),
            ],
            b"",
        )
        .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some(asked)
    );
    assert!(
        preflight
            .header("vary")
            .unwrap()
            .contains("Access-Control-Request-Headers")
    );
    let batch = br#"{"metadata":{"meetingId":"m","attendeeId":"a","type":"Meet","v":1},"events":[{"type":"Meet","v":1,"payloads":[{"name":"meetingStartRequested","ts":1}]}]}"#;
    let bearer = format!("Bearer {token}");
    let ok = server
        .raw(
            "POST",
            "/v1/client-events",
            &[
                ("authorization", &bearer),
                ("origin", "http://localhost:3000"),
            ],
            batch,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let bad = server
        .raw(
            "POST",
            "/v1/client-events",
            &[("authorization", "Bearer not-a-token")],
            batch,
        )
        .await;
    assert_eq!(bad.status, 403);
    let missing = server.raw("POST", "/v1/client-events", &[], batch).await;
    assert_eq!(missing.status, 401);
    // Authentication comes before the body: a bad body does not change the answer to an
    // unauthenticated request, whatever it is.
    let big = vec![b'x'; 2 << 20];
    for body in [&b"{oops"[..], &b""[..], &big[..]] {
        let missing = server.raw("POST", "/v1/client-events", &[], body).await;
        assert_eq!(missing.status, 401, "{}", missing.text());
        let bad = server
            .raw(
                "POST",
                "/v1/client-events",
                &[("authorization", "Bearer not-a-token")],
                body,
            )
            .await;
        assert_eq!(bad.status, 403, "{}", bad.text());
        let beacon = server
            .raw("POST", "/v1/client-events?beacon=1", &[], body)
            .await;
        assert_eq!(beacon.status, 401, "{}", beacon.text());
    }
    let beacon = format!(r#"{{"authorization":"{token}","events":[]}}"#);
    let ok = server
        .raw("POST", "/v1/client-events?beacon=1", &[], beacon.as_bytes())
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let junk = server
        .raw(
            "POST",
            "/v1/client-events",
            &[("authorization", &bearer)],
            b"{oops",
        )
        .await;
    assert_eq!(junk.status, 400);
}

#[tokio::test]
async fn test_clock_refuses_out_of_range_input() {
    let server = Server::start(&[]);
    for body in [
        r#"{"seconds":9223372036854775807}"#,
        r#"{"seconds":-9223372036854775808}"#,
        r#"{"seconds":-1}"#,
        r#"{"seconds":99999999999999999999999}"#,
        r#"{"seconds":1.5}"#,
        r#"{"seconds":"60"}"#,
        r#"{}"#,
        "not json",
    ] {
        let response = server
            .raw(
                "POST",
                "/_carillon/test/clock",
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        assert!(response.json()["message"].is_string(), "{body}");
    }
    // Large but valid steps add up until the total cap, then are refused; the server lives on.
    let ten_years = r#"{"seconds":316224000}"#;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let response = server
            .raw(
                "POST",
                "/_carillon/test/clock",
                &[("content-type", "application/json")],
                ten_years.as_bytes(),
            )
            .await;
        statuses.push(response.status);
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&400),
        "{statuses:?}"
    );
    assert_eq!(server.raw("GET", "/healthz", &[], b"").await.status, 200);
}

/// The signaling URL answers only WebSocket upgrades; anything else is refused with a status
/// that says why, never a 500.
#[tokio::test]
async fn signaling_refuses_requests_that_are_not_websocket_upgrades() {
    let server = Server::start(&[]);
    let target = "/control/2b7bd8d5-5d36-4a9e-8a8a-34cb2d1e8d3b";
    let plain = server.raw("GET", target, &[], b"").await;
    assert_eq!(plain.status, 400);
    assert!(plain.text().contains("upgrade"), "{}", plain.text());
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let old_version = server
        .raw(
            "GET",
            target,
            &[
                upgrade[0],
                upgrade[1],
                upgrade[2],
                ("sec-websocket-version", "8"),
            ],
            b"",
        )
        .await;
    assert_eq!(old_version.status, 426);
    assert_eq!(old_version.header("sec-websocket-version"), Some("13"));
    let no_key = server
        .raw(
            "GET",
            target,
            &[upgrade[0], upgrade[1], ("sec-websocket-version", "13")],
            b"",
        )
        .await;
    assert_eq!(no_key.status, 400);
    assert!(
        no_key.text().contains("Sec-WebSocket-Key"),
        "{}",
        no_key.text()
    );
}
