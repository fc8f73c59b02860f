//! Assignments and their deadlines (issue 20): when a submission to one is
//! taken, on time or late, or refused; one student's extension; and how
//! the times are read from the instructor (RFC 3339, any offset) and shown
//! to people (the course's IANA zone, set by `server course set
//! --timezone`; stored and sent in UTC).
//!
//! The rules, for an assignment with `opens`, `due`, `late-until`:
//!
//! - before `opens`: refused, saying when it opens;
//! - from `opens` to before `due`: on time;
//! - from `due` to before `late-until`: taken, marked late by `now - due`;
//! - from `late-until` on (from `due` on when there is no `late-until`),
//!   or once the instructor closed it (`assignment close`): refused,
//!   saying when it closed, in the course's zone.
//!
//! An extension gives one student her own due time (never earlier than
//! the assignment's: a later `assignment edit` that moves the due time
//! past it wins); her late period keeps its length after it
//! (`late-until - due`), so a late period the course allows is not lost
//! by an extension. `assignment close` ends extensions too.
//!
//! Pure decisions over what the store says ([`SubmissionView`], read per
//! submission), so the sessions ask one question and the rules are tested
//! without a socket.

use std::fmt;
use std::str::FromStr;

use crate::course::{Closed, Window};
use crate::store::{Assignment, Storage, StoreError, SubmissionView};

/// Longest assignment id.
pub const MAX_ID_LEN: usize = 32;

/// Why an assignment id is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadId(pub String);

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "assignment id {:?}: 1 to {MAX_ID_LEN} characters of a-z, 0-9, '_' and '-', \
             starting with a letter or digit",
            crate::escape::escaped(&self.0)
        )
    }
}

impl std::error::Error for BadId {}

/// Checks an assignment id: short, lower-case ASCII, safe as a file name
/// and in a CSV header.
pub fn validate_id(id: &str) -> Result<(), BadId> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(BadId(id.to_string()))
    }
}

/// A time or zone the instructor typed that does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadInput {
    /// Not an RFC 3339 time with an offset.
    Time {
        /// What was typed.
        text: String,
        /// jiff's reason.
        why: String,
    },
    /// Not an IANA time zone name this build knows.
    Zone {
        /// What was typed.
        text: String,
        /// jiff's reason.
        why: String,
    },
}

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadInput::Time { text, why } => write!(
                f,
                "{:?} is not an RFC 3339 time with an offset (e.g. 2026-03-01T23:59:00+08:00 \
                 or 2026-03-01T15:59:00Z): {why}",
                crate::escape::escaped(text)
            ),
            BadInput::Zone { text, why } => write!(
                f,
                "{:?} is not an IANA time zone name (e.g. Asia/Hong_Kong, UTC): {why}",
                crate::escape::escaped(text)
            ),
        }
    }
}

impl std::error::Error for BadInput {}

/// Unix seconds of an RFC 3339 time with any offset (`Z`, `+08:00`, ...).
pub fn parse_time(text: &str) -> Result<i64, BadInput> {
    let t = jiff::Timestamp::from_str(text.trim())
        .map(|t| t.as_second())
        .map_err(|e| BadInput::Time {
            text: text.to_string(),
            why: e.to_string(),
        })?;
    // jiff reads more than RFC 3339 (offsets up to 25:59, minutes without
    // seconds): what it takes beyond the standard is refused, not guessed.
    // A zone after the offset (`+08:00[Asia/Hong_Kong]`, as times are
    // shown here) is RFC 9557's suffix: the offset decides, as for jiff.
    let trimmed = text.trim();
    let bare = match (trimmed.find('['), trimmed.ends_with(']')) {
        (Some(at), true) => &trimmed[..at],
        _ => trimmed,
    };
    crate::time::parse_rfc3339(bare).map_err(|_| BadInput::Time {
        text: text.to_string(),
        why: "RFC 3339 gives seconds and an offset from -23:59 to +23:59".to_string(),
    })?;
    Ok(t)
}

/// Checks an IANA zone name against the bundled tz database.
pub fn validate_zone(name: &str) -> Result<(), BadInput> {
    canonical_zone(name).map(|_| ())
}

/// The zone's name as the tz database spells it (`asia/hong_kong` →
/// `Asia/Hong_Kong`): the lookup ignores case, a listing should not.
pub fn canonical_zone(name: &str) -> Result<String, BadInput> {
    let tz = jiff::tz::TimeZone::get(name).map_err(|e| BadInput::Zone {
        text: name.to_string(),
        why: e.to_string(),
    })?;
    Ok(tz.iana_name().unwrap_or(name).to_string())
}

/// A time for people: in the course's zone when one is set (RFC 3339 with
/// its offset and the zone's name, `2026-03-01T23:59:00+08:00[Asia/Hong_Kong]`),
/// else RFC 3339 UTC.
pub fn show_time(t: i64, zone: Option<&str>) -> String {
    let zoned = zone.and_then(|z| {
        let tz = jiff::tz::TimeZone::get(z).ok()?;
        Some(jiff::Timestamp::from_second(t).ok()?.to_zoned(tz))
    });
    match zoned {
        Some(z) => z.to_string(),
        None => crate::time::rfc3339(t),
    }
}

/// A duration for people: `2d 3h`, `5h 20m`, `4m 10s`, `7s`.
pub fn show_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// When a submission came, relative to her due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Before her due time.
    OnTime,
    /// After her due time, within the late period.
    Late {
        /// Seconds after her due time.
        by: i64,
    },
}

impl Timing {
    /// Seconds late, as stored (`None`: on time).
    pub fn late_by(self) -> Option<i64> {
        match self {
            Timing::OnTime => None,
            Timing::Late { by } => Some(by),
        }
    }
}

/// Why a submission to an assignment is refused now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No assignment of that id.
    Unknown {
        /// The id asked for.
        id: String,
    },
    /// Before it opens.
    NotYetOpen {
        /// The assignment.
        id: String,
        /// When it opens, Unix seconds.
        at: i64,
        /// The course's zone, for the message.
        zone: Option<String>,
    },
    /// Its due time (and late period) passed, or the instructor closed it.
    Closed {
        /// The assignment.
        id: String,
        /// When it closed for her, Unix seconds.
        at: i64,
        /// The course's zone, for the message.
        zone: Option<String>,
        /// Closed by the instructor (`assignment close`), which no
        /// extension moves, rather than by its times.
        by_instructor: bool,
    },
    /// The restart flags' window (no `lab` assignment in the store).
    Window(Closed),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Unknown { id } => write!(f, "no assignment {id:?} in this course"),
            // "submissions open/closed at" as the restart window's words,
            // which scripts and version 2 users already look for.
            Refused::NotYetOpen { id, at, zone } => write!(
                f,
                "assignment {id}: submissions open at {}; nothing was recorded",
                show_time(*at, zone.as_deref())
            ),
            Refused::Closed {
                id,
                at,
                zone,
                by_instructor: false,
            } => write!(
                f,
                "assignment {id}: submissions closed at {}; nothing was recorded (ask the \
                 instructor for an extension)",
                show_time(*at, zone.as_deref())
            ),
            Refused::Closed {
                id,
                at,
                zone,
                by_instructor: true,
            } => write!(
                f,
                "assignment {id}: submissions closed at {} (closed by the instructor, \
                 extensions included); nothing was recorded",
                show_time(*at, zone.as_deref())
            ),
            Refused::Window(c) => write!(f, "{c}"),
        }
    }
}

impl std::error::Error for Refused {}

/// Her effective due time and close time: the assignment's, or her
/// extension's (see the module's header).
pub fn her_deadlines(a: &Assignment, extension: Option<i64>) -> (Option<i64>, Option<i64>) {
    let Some(due) = a.due else {
        return (None, a.closed_at);
    };
    let her_due = extension.map_or(due, |e| e.max(due));
    let shift = her_due - due;
    let close = a.late_until.map_or(her_due, |l| l.saturating_add(shift));
    let close = a.closed_at.map_or(close, |c| c.min(close));
    (Some(her_due), Some(close))
}

/// Decides a submission to `a` at `now` for a student with `extension`.
pub fn decide(
    a: &Assignment,
    extension: Option<i64>,
    zone: Option<&str>,
    now: i64,
) -> Result<Timing, Refused> {
    let zone = zone.map(str::to_string);
    if let Some(at) = a.opens {
        if now < at {
            return Err(Refused::NotYetOpen {
                id: a.id.clone(),
                at,
                zone,
            });
        }
    }
    let (due, close) = her_deadlines(a, extension);
    if let Some(at) = close {
        if now >= at {
            return Err(Refused::Closed {
                id: a.id.clone(),
                at,
                zone,
                by_instructor: a.closed_at.is_some_and(|c| c <= now),
            });
        }
    }
    Ok(match due {
        Some(due) if now >= due => Timing::Late { by: now - due },
        _ => Timing::OnTime,
    })
}

/// Why a submission could not be decided or was refused.
#[derive(Debug)]
pub enum AdmitError {
    /// The rules refused it.
    Refused(Refused),
    /// The store could not say.
    Store(StoreError),
}

/// Decides a submission by `sid` to assignment `id` at `now`, reading the
/// assignment, her extension and the zone from the store (one read). The
/// default assignment without a row (a store no server start has filled:
/// the test fixtures) falls back to `fallback`, the restart flags' window.
pub fn admit(
    store: &mut dyn Storage,
    fallback: &Window,
    sid: &str,
    id: &str,
    now: i64,
) -> Result<Timing, AdmitError> {
    let view = store.submission_view(sid, id).map_err(AdmitError::Store)?;
    decide_view(&view, fallback, id, now).map_err(AdmitError::Refused)
}

/// [`admit`] over a view already read.
pub fn decide_view(
    view: &SubmissionView,
    fallback: &Window,
    id: &str,
    now: i64,
) -> Result<Timing, Refused> {
    match &view.assignment {
        Some(a) => decide(a, view.extension, view.timezone.as_deref(), now),
        None if id == crate::store::DEFAULT_ASSIGNMENT => fallback
            .check(now)
            .map(|()| Timing::OnTime)
            .map_err(Refused::Window),
        None => Err(Refused::Unknown { id: id.to_string() }),
    }
}

/// At server start: the restart flags `--submissions-open/close`, when
/// given, become the default assignment's window, opening and due time
/// with no late period (its title kept), and the log says when that
/// changes the stored times; without them the stored `lab` stays as the
/// instructor last set it (`assignment edit lab`), and one is made, always
/// open, if there is none.
pub fn lab_at_start(store: &mut dyn Storage, flags: &Window) -> Result<Assignment, StoreError> {
    let id = crate::store::DEFAULT_ASSIGNMENT;
    let stored = store.assignments()?.into_iter().find(|a| a.id == id);
    let given = flags.open.is_some() || flags.close.is_some();
    let lab = match stored {
        Some(a) if !given => return Ok(a),
        Some(a) => {
            // The flags are the lab card's window: open to close, nothing
            // taken late (as `--submissions-close` says). Times set live
            // with `assignment edit lab` give way to them, said so.
            let lab = Assignment {
                opens: flags.open,
                due: flags.close,
                late_until: None,
                ..a.clone()
            };
            if (a.opens, a.due, a.late_until) != (lab.opens, lab.due, lab.late_until) {
                let zone = store.course_setting(crate::store::TIMEZONE_SETTING)?;
                let zone = zone.as_deref();
                log::warn!(
                    "--submissions-open/--submissions-close change the lab's stored times \
                     (were: {}; now: {}); to keep times set with `server assignment edit \
                     lab`, start without the flags",
                    describe(&a, zone),
                    describe(&lab, zone)
                );
            }
            lab
        }
        None => Assignment {
            id: id.to_string(),
            title: "Lab".to_string(),
            opens: flags.open,
            due: flags.close,
            late_until: None,
            closed_at: None,
        },
    };
    store.put_assignment(&lab)?;
    Ok(lab)
}

/// The default assignment's window for the startup log.
pub fn describe(a: &Assignment, zone: Option<&str>) -> String {
    let t = |t: i64| show_time(t, zone);
    let mut parts = vec![format!("assignment {}", a.id)];
    if let Some(o) = a.opens {
        parts.push(format!("opens {}", t(o)));
    }
    match a.due {
        Some(d) => parts.push(format!("due {}", t(d))),
        None => parts.push("no due time".into()),
    }
    if let Some(l) = a.late_until {
        parts.push(format!("late until {}", t(l)));
    }
    if let Some(c) = a.closed_at {
        parts.push(format!("closed {}", t(c)));
    }
    parts.join(", ")
}

/// Why an assignment's times are refused by `assignment add/edit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadTimes {
    /// `opens` is not before `due`.
    OpensAfterDue,
    /// `late-until` is before `due`.
    LateBeforeDue,
    /// `late-until` without a due time.
    LateWithoutDue,
    /// The due time is past (and `--force` was not given).
    DueInPast {
        /// The due time, shown in the course's zone.
        due: String,
    },
}

impl fmt::Display for BadTimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadTimes::OpensAfterDue => write!(f, "--opens must be before --due"),
            BadTimes::LateBeforeDue => write!(f, "--late-until must not be before --due"),
            BadTimes::LateWithoutDue => write!(f, "--late-until needs a --due time"),
            BadTimes::DueInPast { due } => write!(
                f,
                "the due time {due} is in the past (give --force if that is meant, e.g. to \
                 record an assignment already closed)"
            ),
        }
    }
}

impl std::error::Error for BadTimes {}

/// Checks an assignment's times: `opens < due <= late-until`, and a due
/// time not in the past unless `force`.
pub fn check_times(
    a: &Assignment,
    now: i64,
    force: bool,
    zone: Option<&str>,
) -> Result<(), BadTimes> {
    match (a.opens, a.due, a.late_until) {
        (Some(o), Some(d), _) if o >= d => return Err(BadTimes::OpensAfterDue),
        (_, Some(d), Some(l)) if l < d => return Err(BadTimes::LateBeforeDue),
        (_, None, Some(_)) => return Err(BadTimes::LateWithoutDue),
        _ => {}
    }
    match a.due {
        Some(d) if d <= now && !force => Err(BadTimes::DueInPast {
            due: show_time(d, zone),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_flags_give_the_lab_their_window_and_nothing_late(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut store = crate::store::SqliteStore::in_memory()?;
        let flags = Window {
            open: None,
            close: Some(2_000_000_000),
        };
        let lab = lab_at_start(&mut store, &flags)?;
        assert_eq!((lab.due, lab.late_until), (Some(2_000_000_000), None));
        // Times set live (a late period past the close) give way at the
        // next start with the flags, and stay at a start without them.
        for (at_start, late_after) in [(flags, None), (Window::default(), Some(2_000_086_400))] {
            let live = Assignment {
                late_until: Some(2_000_086_400),
                ..lab.clone()
            };
            store.put_assignment(&live)?;
            let after = lab_at_start(&mut store, &at_start)?;
            assert_eq!(
                (after.due, after.late_until),
                (Some(2_000_000_000), late_after)
            );
        }
        Ok(())
    }

    fn hw(opens: Option<i64>, due: i64, late_until: Option<i64>) -> Assignment {
        Assignment {
            id: "hw1".into(),
            title: "Homework 1".into(),
            opens,
            due: Some(due),
            late_until,
            closed_at: None,
        }
    }

    #[test]
    fn on_time_late_and_refused_after_late_until() {
        let a = hw(Some(100), 200, Some(300));
        assert!(matches!(
            decide(&a, None, None, 99),
            Err(Refused::NotYetOpen { at: 100, .. })
        ));
        assert_eq!(decide(&a, None, None, 100), Ok(Timing::OnTime));
        assert_eq!(decide(&a, None, None, 199), Ok(Timing::OnTime));
        assert_eq!(decide(&a, None, None, 200), Ok(Timing::Late { by: 0 }));
        assert_eq!(decide(&a, None, None, 299), Ok(Timing::Late { by: 99 }));
        assert!(matches!(
            decide(&a, None, None, 300),
            Err(Refused::Closed { at: 300, .. })
        ));
        // No late period: the due time closes it.
        let strict = hw(None, 200, None);
        assert_eq!(decide(&strict, None, None, 0), Ok(Timing::OnTime));
        assert!(matches!(
            decide(&strict, None, None, 200),
            Err(Refused::Closed { at: 200, .. })
        ));
    }

    #[test]
    fn an_extension_moves_her_due_time_and_keeps_the_late_period() {
        let a = hw(None, 200, Some(300));
        // Her due is 1000: on time at 999, late until 1100.
        assert_eq!(decide(&a, Some(1000), None, 999), Ok(Timing::OnTime));
        assert_eq!(
            decide(&a, Some(1000), None, 1050),
            Ok(Timing::Late { by: 50 })
        );
        assert!(matches!(
            decide(&a, Some(1000), None, 1100),
            Err(Refused::Closed { at: 1100, .. })
        ));
        // An extension earlier than the due time changes nothing.
        assert_eq!(her_deadlines(&a, Some(50)), (Some(200), Some(300)));
        // Closing the assignment ends extensions too.
        let closed = Assignment {
            closed_at: Some(150),
            ..a.clone()
        };
        let refused = decide(&closed, Some(1000), None, 160);
        assert!(matches!(
            refused,
            Err(Refused::Closed {
                at: 150,
                by_instructor: true,
                ..
            })
        ));
        let said = refused.err().map(|r| r.to_string()).unwrap_or_default();
        assert!(
            said.contains("closed by the instructor") && !said.contains("ask the instructor"),
            "{said}"
        );
        assert!(matches!(
            decide(&a, Some(1000), None, 1100),
            Err(Refused::Closed {
                by_instructor: false,
                ..
            })
        ));
        assert_eq!(decide(&closed, Some(1000), None, 149), Ok(Timing::OnTime));
    }

    #[test]
    fn refusals_show_the_course_zone() {
        let a = hw(Some(1_764_597_600), 1_764_600_000, None);
        let e = decide(&a, None, Some("Asia/Hong_Kong"), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "assignment hw1: submissions open at 2025-12-01T22:00:00+08:00[Asia/Hong_Kong]; \
             nothing was recorded"
        );
        let e = decide(&a, None, None, 1_764_600_000).unwrap_err();
        assert!(
            e.to_string()
                .contains("submissions closed at 2025-12-01T14:40:00Z"),
            "{e}"
        );
    }

    #[test]
    fn the_lab_without_a_row_follows_the_restart_window() {
        let view = SubmissionView::default();
        let w = Window {
            open: None,
            close: Some(10),
        };
        assert_eq!(decide_view(&view, &w, "lab", 9), Ok(Timing::OnTime));
        assert!(matches!(
            decide_view(&view, &w, "lab", 10),
            Err(Refused::Window(Closed::Closed { at: 10 }))
        ));
        assert!(matches!(
            decide_view(&view, &w, "hw9", 0),
            Err(Refused::Unknown { .. })
        ));
    }

    #[test]
    fn times_ids_and_zones_are_checked() {
        assert_eq!(parse_time("2025-12-01T22:00:00+08:00"), Ok(1_764_597_600));
        assert_eq!(parse_time("2025-12-01T14:00:00Z"), Ok(1_764_597_600));
        assert!(parse_time("2025-12-01 22:00").is_err());
        assert!(parse_time("2025-12-01T22:00:00").is_err(), "no offset");
        for beyond in [
            "2025-12-01T22:00:00+25:00",
            "2025-12-01T22:00:00-24:00",
            "2025-12-01T22:00Z",
        ] {
            let e = parse_time(beyond)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("RFC 3339") && !e.contains("Escaped"),
                "{beyond}: {e}"
            );
        }
        // A time as this server shows it reads back.
        assert_eq!(
            parse_time(&show_time(1_764_597_600, Some("Asia/Hong_Kong"))),
            Ok(1_764_597_600)
        );
        assert!(validate_zone("Asia/Hong_Kong").is_ok());
        assert!(validate_zone("Mars/Olympus").is_err());
        assert_eq!(
            canonical_zone("asia/hong_kong").ok().as_deref(),
            Some("Asia/Hong_Kong")
        );
        for good in ["lab", "hw1", "final-project", "a_b"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", "HW1", "../x", "a b", "-x", "a\n", &"x".repeat(33)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        let now = 1000;
        assert!(check_times(&hw(Some(5), 2000, Some(3000)), now, false, None).is_ok());
        assert_eq!(
            check_times(&hw(Some(2000), 2000, None), now, false, None),
            Err(BadTimes::OpensAfterDue)
        );
        assert_eq!(
            check_times(&hw(None, 2000, Some(1999)), now, false, None),
            Err(BadTimes::LateBeforeDue)
        );
        assert!(matches!(
            check_times(&hw(None, 999, None), now, false, None),
            Err(BadTimes::DueInPast { .. })
        ));
        assert!(check_times(&hw(None, 999, None), now, true, None).is_ok());
        assert_eq!(show_duration(7), "7s");
        assert_eq!(show_duration(3 * 3600 + 125), "3h 2m");
        assert_eq!(show_duration(2 * 86_400 + 3 * 3600), "2d 3h");
    }
}
