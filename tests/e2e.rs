//! End-to-end: the real server and client binaries, the whole lab workflow.

mod common;
use common::*;

#[test]
fn three_students_enroll_and_submit() -> TestResult {
    let server = TestServer::start(&[])?;
    let out = server.client(&["1155000001", "alice", "bob"])?;
    assert!(out.status.success(), "{}", text(&out));
    let s = stdout(&out);
    for sid in ["1155000001", "alice", "bob"] {
        assert!(s.contains(&format!("SID{sid} sign finished")), "{s}");
    }
    Ok(())
}
