//! The systemd unit in `deploy/` is one systemd accepts: `systemd-analyze verify` finds no
//! fault in it (with `ExecStart` pointed at the binary just built). Skipped, with a note, where
//! systemd is not installed.

use std::process::Command;

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/evloop.service"
    ))
    .expect("deploy/evloop.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/evloop "), "{unit}");
    let local = unit.replace("/usr/local/bin/evloop", env!("CARGO_BIN_EXE_evloop"));
    let dir = std::env::temp_dir().join(format!("evloop-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("evloop.service");
    std::fs::write(&path, local).expect("write the unit");
    let output = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Ok(output) => output,
        Err(err) => {
            eprintln!("systemd-analyze not found ({err}): skipping");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "systemd-analyze verify: {said}");
    assert!(
        !said.contains("evloop.service"),
        "warnings about the unit: {said}"
    );
}
