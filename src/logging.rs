//! The binaries' logger: env_logger's usual `[time LEVEL target] message`
//! lines, with every message passed through [`escaped`], so no text a peer
//! or the store puts in a log line (an error reason, a SID, a CN) can carry
//! a terminal escape sequence or a newline that forges a line of its own,
//! whatever the call site forgets.

use std::io::Write;

use crate::escape::escaped;

/// Installs the logger on stderr; `RUST_LOG` overrides `default_filter`.
pub fn init(default_filter: &str) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .format(|buf, record| {
            let style = buf.default_level_style(record.level());
            writeln!(
                buf,
                "[{} {style}{:<5}{style:#} {}] {}",
                buf.timestamp(),
                record.level(),
                record.target(),
                escaped(record.args())
            )
        })
        .init();
}
