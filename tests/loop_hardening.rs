//! Issue 15, the second part: nothing a peer sends makes the event loop
//! slow for others (legacy key generation off the loop, certificates refused
//! by size, "server busy" when descriptors run out), and a revocation takes
//! effect on sessions already open. Against the real binaries; every loop
//! is bounded, and the only time limits are generous deadlines for honest
//! clients, never latency figures (those are in bench/worst-case.sh).

mod common;

use certboard::client::{self, KeyType};
use certboard::message::CipherId;
use common::{enroll_key, text, TestResult, TestServer, NET_TIMEOUT};

/// A revocation made between the session key and the report: the report is
/// refused with the revoked reason and nothing is recorded.
#[test]
fn a_certificate_revoked_during_a_session_cannot_submit() -> TestResult {
    let server = TestServer::start(&[])?;
    let sid = "1155000041";
    let key = client::make_key(KeyType::Rsa2048)?;
    let cert = enroll_key(server.ca, sid, &key)?;
    let mut conn = client::FramedStream::connect(&server.blackboard.to_string(), NET_TIMEOUT)?;
    let mut revoked = None;
    let result = client::submit(
        &mut conn,
        sid,
        &cert,
        &key,
        CipherId::Aes256Ctr,
        &certboard::crypto::lab_report(sid),
        &mut |step| {
            // Step 5: the session key is in hand, the report not yet sent.
            if step.starts_with("step 5") {
                revoked = Some(server.admin(&["revoke", "--sid", sid, "--reason", "superseded"]));
            }
        },
    );
    let out = revoked.ok_or("never reached step 5")??;
    assert!(out.status.success(), "{}", text(&out));
    match result {
        Err(client::ClientError::Refused { code, reason }) => {
            assert_eq!(code, certboard::message::ErrorCode::BadCertificate);
            assert!(reason.contains("has been revoked (superseded)"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let reports = server.admin(&["reports"])?;
    assert_eq!(common::stdout(&reports), "", "{}", text(&reports));
    Ok(())
}
