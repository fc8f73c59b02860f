//! What the fuzz targets share besides the library's fixtures: the
//! `fuzz_target!` macro. With the `libfuzzer` feature (on by default, as
//! cargo-fuzz builds) it is libfuzzer-sys's, and a target is a libFuzzer
//! binary. Without it (`--no-default-features`, on stable Rust, as CI
//! builds: scripts/fuzz-check.sh) a target is a plain program that feeds
//! each file it is given, or each file of each directory, to the target
//! once, as libFuzzer does when it replays a crash: CI compiles every
//! target against the library of the day and runs it over its seeds,
//! without libFuzzer's C++ runtime (whose build flags would otherwise make
//! cargo build the vendored OpenSSL a second time).

#[cfg(feature = "libfuzzer")]
pub use libfuzzer_sys::fuzz_target;

use std::path::{Path, PathBuf};

/// Without libFuzzer: the target's `main`, over the files and directories
/// named on the command line (see the crate's header).
#[cfg(not(feature = "libfuzzer"))]
#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:expr) => {
        fn main() {
            fn one($data: &[u8]) {
                $body;
            }
            $crate::replay(one)
        }
    };
}

/// Feeds every input named on the command line to `one`, in a stable
/// order; exits with 2 when an input cannot be read or none is given. A
/// failed check panics, which ends the process with an error as in a
/// libFuzzer run.
pub fn replay(one: fn(&[u8])) {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.is_empty() {
        eprintln!("usage: TARGET FILE_OR_DIR... (each file is fed to the target once)");
        std::process::exit(2);
    }
    let mut count = 0usize;
    for arg in &args {
        match inputs(arg) {
            Ok(files) => {
                for file in files {
                    match std::fs::read(&file) {
                        Ok(data) => one(&data),
                        Err(e) => fail(&file, &e),
                    }
                    count += 1;
                }
            }
            Err(e) => fail(arg, &e),
        }
    }
    eprintln!("replayed {count} inputs");
}

/// `path` itself, or the files of the directory `path` sorted by name.
fn inputs(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn fail(path: &Path, e: &std::io::Error) -> ! {
    eprintln!("{}: {e}", path.display());
    std::process::exit(2);
}
