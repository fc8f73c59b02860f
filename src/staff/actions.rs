//! The POST side: login, logout and the staff actions. Each action goes
//! through the admin command's own function (so it does exactly what
//! `server revoke`, `server extend`, ... do), under an audit entry written
//! before it ([`super::audited`]): none happens unaudited.

use std::path::Path;

use super::forms::{self, Form, Multipart};
use super::{auth, pages, see_other, Cx, StaffError, COOKIE};
use crate::admin::{self, RevokeReason, RevokeTarget, Unverified};
use crate::ops::http::{Request, Response};
use crate::store::{LoginAttempt, LoginVerdict, StaffSession};

/// A POST's fields, from an urlencoded or a multipart body.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    form: Form,
    multipart: Option<Multipart>,
}

impl Fields {
    pub(crate) fn read(req: &Request) -> Result<Fields, StaffError> {
        match req.content_type.as_deref().and_then(forms::boundary) {
            Some(b) => {
                let m = forms::multipart(&req.body, &b)?;
                Ok(Fields {
                    form: m.fields.clone(),
                    multipart: Some(m),
                })
            }
            None => Ok(Fields {
                form: Form::parse(&req.body)?,
                multipart: None,
            }),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.form.get(name)
    }

    fn need(&self, name: &str) -> Result<&str, StaffError> {
        self.get(name)
            .filter(|v| !v.trim().is_empty())
            .map(str::trim)
            .ok_or_else(|| StaffError::BadRequest(format!("the form has no {name}")))
    }
}

/// `POST /login`.
pub(crate) fn login(cx: &mut Cx<'_>, req: &Request) -> Result<Response, StaffError> {
    let form = Form::parse(&req.body)?;
    let name = form.get("username").unwrap_or("").trim().to_string();
    let password = form.get("password").unwrap_or("");
    if name.is_empty() || auth::check_name(&name).is_err() {
        return pages::login_page(401, Some("wrong name or password"));
    }
    let attempt = LoginAttempt {
        name: name.clone(),
        source: crate::course::guess_source(cx.source),
        at: cx.now,
        limits: cx.config.login_limits,
    };
    if let LoginVerdict::Throttled { retry_at } = cx.store.count_login_attempt(&attempt)? {
        log::warn!(
            "staff {}: login as {name} throttled until {}",
            cx.source,
            crate::time::rfc3339(retry_at)
        );
        return pages::login_page(
            429,
            Some(&format!(
                "too many attempts from this address: try again after {}",
                crate::time::rfc3339(retry_at)
            )),
        );
    }
    let phc = cx.store.staff_password(&name)?;
    let ok = match &phc {
        Some(phc) => auth::verify_password(password, phc),
        None => {
            // The same cost as a wrong password: the time tells nothing.
            let _ = auth::verify_password(password, auth::decoy_hash());
            false
        }
    };
    if !ok {
        cx.audit(&name, "login-failed", "", &cx.source.to_string());
        return pages::login_page(401, Some("wrong name or password"));
    }
    let token = auth::new_token().map_err(|e| StaffError::BadRequest(e.to_string()))?;
    let lifetime = i64::try_from(cx.config.session_lifetime.as_secs()).unwrap_or(i64::MAX);
    let session = StaffSession {
        token_hash: auth::token_hash(&token),
        name: name.clone(),
        csrf: auth::new_token().map_err(|e| StaffError::BadRequest(e.to_string()))?,
        created_at: cx.now,
        expires_at: cx.now.saturating_add(lifetime),
    };
    let from = cx.source.to_string();
    cx.audited(&name, "login", "", &from, |store| {
        store.forget_login_attempts(&name, &attempt.source)?;
        store.start_staff_session(&session)?;
        Ok(((), String::new()))
    })?;
    let secure = if cx.config.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    Ok(see_other("/").header(
        "Set-Cookie",
        format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={lifetime}{secure}"),
    ))
}

/// `POST /logout`.
pub(crate) fn logout(cx: &mut Cx<'_>, s: &StaffSession) -> Result<Response, StaffError> {
    cx.audited(&s.name, "logout", "", "", |store| {
        store.end_staff_session(&s.token_hash)?;
        Ok(((), String::new()))
    })?;
    let secure = if cx.config.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    Ok(see_other("/login").header(
        "Set-Cookie",
        format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    ))
}

/// The reasons the revoke form offers.
const REASONS: [RevokeReason; 6] = [
    RevokeReason::Unspecified,
    RevokeReason::KeyCompromise,
    RevokeReason::AffiliationChanged,
    RevokeReason::Superseded,
    RevokeReason::CessationOfOperation,
    RevokeReason::PrivilegeWithdrawn,
];

/// The reason names for the form.
pub(crate) fn reason_names() -> Vec<&'static str> {
    REASONS.iter().map(|r| r.name()).collect()
}

/// `POST /students/SID/revoke`: without `confirm=yes` a confirmation page;
/// with it, the revocation (`server revoke --serial`).
pub(crate) fn revoke(
    cx: &mut Cx<'_>,
    s: &StaffSession,
    sid: &str,
    f: &Fields,
) -> Result<Response, StaffError> {
    let serial = admin::parse_serial(f.need("serial")?)?;
    let reason_name = f.get("reason").unwrap_or("unspecified");
    let reason = REASONS
        .iter()
        .copied()
        .find(|r| r.name() == reason_name)
        .ok_or_else(|| StaffError::BadRequest(format!("no revocation reason {reason_name:?}")))?;
    // The serial must be hers: a form for one student never revokes
    // another's certificate.
    let cert = cx
        .store
        .certs()?
        .into_iter()
        .find(|c| c.serial == serial && c.sid == sid)
        .ok_or_else(|| StaffError::NotFound(format!("certificate {serial} of SID {sid}")))?;
    if f.get("confirm") != Some("yes") {
        return pages::confirm_revoke(s, sid, &cert, reason.name());
    }
    let particulars = format!("serial {serial} reason {}", reason.name());
    cx.audited(&s.name, "revoke", sid, &particulars, |store| {
        let n = admin::revoke(store, &RevokeTarget::Serial(serial.to_string()), reason)?;
        Ok(((), format!("{n} newly revoked")))
    })?;
    Ok(see_other(&format!("/students/{sid}")))
}

/// `POST /students/SID/code`: a new code, shown once.
pub(crate) fn reissue_code(
    cx: &mut Cx<'_>,
    s: &StaffSession,
    sid: &str,
) -> Result<Response, StaffError> {
    let code = cx.audited(
        &s.name,
        "code",
        sid,
        "reissue the enrollment code",
        |store| Ok((admin::reissue_code(store, sid)?, String::new())),
    )?;
    pages::new_code(s, sid, &code)
}

/// A time from a form: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` (what an
/// `<input type="datetime-local">` sends) in the course's zone (UTC
/// without one).
pub(crate) fn form_time(text: &str, zone: Option<&str>) -> Result<i64, StaffError> {
    match crate::assignment::parse_time(text) {
        Ok(t) => return Ok(t),
        // A time with an offset that RFC 3339 refuses is said so, never
        // read again without its offset in the course's zone.
        Err(e) if text.trim().parse::<jiff::Timestamp>().is_ok() => {
            return Err(StaffError::BadRequest(e.to_string()))
        }
        Err(_) => {}
    }
    let civil: jiff::civil::DateTime = text
        .trim()
        .parse()
        .map_err(|e| StaffError::BadRequest(format!("time {text:?}: {e}")))?;
    let tz = match zone {
        Some(z) => jiff::tz::TimeZone::get(z)
            .map_err(|e| StaffError::BadRequest(format!("course zone {z}: {e}")))?,
        None => jiff::tz::TimeZone::UTC,
    };
    civil
        .to_zoned(tz)
        .map(|z| z.timestamp().as_second())
        .map_err(|e| StaffError::BadRequest(format!("time {text:?}: {e}")))
}

/// `POST /students/SID/extension` (`server extend`).
pub(crate) fn extension(
    cx: &mut Cx<'_>,
    s: &StaffSession,
    sid: &str,
    f: &Fields,
) -> Result<Response, StaffError> {
    let assignment = f.need("assignment")?;
    let zone = admin::timezone(&mut *cx.store)?;
    let until = form_time(f.need("until")?, zone.as_deref())?;
    let particulars = format!(
        "assignment {assignment} until {}",
        crate::time::rfc3339(until)
    );
    cx.audited(&s.name, "extension", sid, &particulars, |store| {
        admin::extend(store, sid, assignment, until)?;
        Ok(((), String::new()))
    })?;
    Ok(see_other(&format!("/students/{sid}")))
}

/// `POST /students/SID/drop` (`server roster remove`).
pub(crate) fn drop_student(
    cx: &mut Cx<'_>,
    s: &StaffSession,
    sid: &str,
) -> Result<Response, StaffError> {
    cx.audited(&s.name, "drop", sid, "remove from the roster", |store| {
        admin::remove_student(store, sid)?;
        Ok(((), String::new()))
    })?;
    Ok(see_other(&format!("/students/{sid}")))
}

/// `POST /assignments/ID/due` (`server assignment edit ID --due`).
pub(crate) fn move_due(
    cx: &mut Cx<'_>,
    s: &StaffSession,
    id: &str,
    f: &Fields,
) -> Result<Response, StaffError> {
    let zone = admin::timezone(&mut *cx.store)?;
    let due = form_time(f.need("due")?, zone.as_deref())?;
    let particulars = format!("due {}", crate::time::rfc3339(due));
    cx.audited(&s.name, "due", id, &particulars, |store| {
        // The form moves the due time alone: a late period the new due
        // time passes is dropped (the page shows the times after), and
        // the audit log says so, as it says a reopening.
        let passed = store
            .assignments()?
            .into_iter()
            .find(|a| a.id == id)
            .and_then(|a| a.late_until)
            .filter(|l| *l < due);
        let spec = admin::AssignmentSpec {
            due: Some(due),
            no_late_until: passed.is_some(),
            ..admin::AssignmentSpec::default()
        };
        let edited = admin::edit_assignment(store, id, &spec)?;
        let mut said = Vec::new();
        if let Some(l) = passed {
            said.push(format!(
                "its late period, to {}, ended before the new due time and was dropped",
                crate::time::rfc3339(l)
            ));
        }
        if edited.reopened {
            said.push("it was closed and is open again".to_string());
        }
        Ok(((), said.join("; ")))
    })?;
    Ok(see_other(&format!("/assignments/{id}")))
}

/// `POST /roster/import` (`server roster import`), the file from a
/// multipart upload; `unverified` = `ask` (default), `revoke` or `keep`.
pub(crate) fn import(
    cx: &mut Cx<'_>,
    s: &StaffSession,
    f: &Fields,
) -> Result<Response, StaffError> {
    let file = f
        .multipart
        .as_ref()
        .and_then(|m| m.file("roster"))
        .ok_or_else(|| StaffError::BadRequest("no roster file in the upload".into()))?;
    let text = std::str::from_utf8(&file.data)
        .map_err(|_| StaffError::BadRequest("the roster is not UTF-8 text".into()))?;
    let (decision, asked) = match f.get("unverified").unwrap_or("ask") {
        "revoke" => (Unverified::Revoke, "revoke"),
        "keep" => (Unverified::Keep, "keep"),
        _ => (Unverified::Ask, "ask"),
    };
    let shown = file.file_name.clone().unwrap_or_else(|| "upload".into());
    let particulars = format!("import, unverified certificates: {asked}");
    let summary = cx.audited(&s.name, "import", &shown, &particulars, |store| {
        let done = admin::import_roster_text(store, text, Path::new(&shown), decision)?;
        let summary = format!(
        "{} student(s): {} added, {} renamed, {} with a new e-mail address, {} unchanged; {} open-enrollment certificate(s) revoked, {} kept",
        done.students,
        done.change.added,
        done.change.renamed,
        done.change.new_email,
        done.change.unchanged,
        done.revoked,
        done.unverified.len()
    );
        Ok((summary.clone(), summary))
    })?;
    pages::import_result(s, &summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_in_rfc3339_or_the_course_zone() -> Result<(), StaffError> {
        assert_eq!(form_time("2026-03-01T00:00:00Z", None)?, 1_772_323_200);
        assert_eq!(form_time("2026-03-01T00:00", None)?, 1_772_323_200);
        assert_eq!(
            form_time("2026-03-01T08:00", Some("Asia/Hong_Kong"))?,
            1_772_323_200
        );
        assert!(form_time("tomorrow", None).is_err());
        // An offset RFC 3339 does not allow is refused, not dropped.
        for off in ["2026-03-01T23:59+08:00", "2026-03-01T23:59:00+25:00"] {
            assert!(form_time(off, None).is_err(), "{off}");
        }
        assert_eq!(
            form_time("2026-03-01T08:00:00+08:00[Asia/Hong_Kong]", None)?,
            1_772_323_200
        );
        Ok(())
    }
}
