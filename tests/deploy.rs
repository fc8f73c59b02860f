//! The systemd unit in deploy/ is one systemd accepts (issue 12), when
//! `systemd-analyze` is there to ask.

use std::process::Command;

#[test]
fn the_systemd_unit_verifies() -> Result<(), Box<dyn std::error::Error>> {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/certboard.service");
    let text = std::fs::read_to_string(unit)?;
    assert!(
        text.contains("--ca-passphrase-file"),
        "the unit never prompts"
    );
    // The unit names its binary where an install puts it; verify a copy
    // that points at the built server, so the check needs no install.
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("certboard.service");
    std::fs::write(
        &copy,
        text.replace(
            "/usr/local/bin/certboard-server",
            env!("CARGO_BIN_EXE_server"),
        ),
    )?;
    let out = match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("systemd-analyze not available ({e}); unit not verified");
            return Ok(());
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    // Only our unit's own problems count: the host's other units (or no
    // running systemd in a container) are not ours to judge.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("certboard.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{err}");
    Ok(())
}
