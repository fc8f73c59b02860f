#!/usr/bin/env bash
# Installs the independent tools that tests/interop.rs checks certboard's
# output with, when they are missing:
#   openssl   (OpenSSL CLI: verify, req, crl, s_server, s_client)  Debian: openssl
#   certtool  (GnuTLS)                                             Debian: gnutls-bin
#   pkilint   (DigiCert's RFC 5280 linter: lint_pkix_cert, ...)    PyPI:   pkilint
#   prometheus_client (Python; its text parser reads /metrics)      PyPI:   prometheus_client
#   curl      (the OCSP GET form and the CRL in tests/http.rs)     Debian: curl
#   chromium, chromedriver (headless browser the staff interface's
#             tests drive over WebDriver, tests/staff_browser.rs)  Debian: chromium, chromium-driver
#   nginx     (the TLS proxy of deploy/nginx-staff.conf, run as a
#             throwaway instance by tests/staff_proxy.rs)          Debian: nginx
# and PostgreSQL (initdb, pg_ctl, psql), which tests/postgres.rs runs as a
# throwaway cluster (scripts/pg-test-cluster.sh)                  Debian: postgresql
#
# Run as root on Debian 12 (as CI does: `bash scripts/install-test-tools.sh`).
# Idempotent: when everything is present it installs nothing, touches no
# network, and returns at once. Non-interactive (no standard input needed).
set -euo pipefail

# pkilint releases add checks: move to a new minor version on purpose, after
# running `cargo test --test interop` against it (docs/conformance.md).
PKILINT_SPEC='pkilint~=0.13.3'
# The Prometheus project's Python client: src/ops/metrics.rs's tests feed our
# exposition through its parser (prometheus_client.parser).
PROMETHEUS_CLIENT_SPEC='prometheus_client>=0.20,<1'

log() { printf 'install-test-tools: %s\n' "$*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

# pkilint: its console scripts on PATH are what the tests run.
pkilint_ok() { have lint_pkix_cert && have lint_crl && have lint_pkix_signer_signee_cert_chain; }
prometheus_client_ok() { python3 -c 'import prometheus_client.parser' >/dev/null 2>&1; }

# What pip must install.
pip_missing=()
pkilint_ok || pip_missing+=("$PKILINT_SPEC")
prometheus_client_ok || pip_missing+=("$PROMETHEUS_CLIENT_SPEC")

# Debian packages whose command is missing (pip too, if pkilint must be
# installed and python3 has no pip).
apt_missing=()
have openssl || apt_missing+=(openssl)
have certtool || apt_missing+=(gnutls-bin)
have curl || apt_missing+=(curl)
# The tests run these exact paths (Debian's), so check the paths rather than
# PATH: a Chromium from elsewhere might not match its driver's version.
[[ -x /usr/bin/chromium ]] || apt_missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || apt_missing+=(chromium-driver)
# Debian puts nginx in /usr/sbin, which is not on every user's PATH.
[[ -x /usr/sbin/nginx ]] || apt_missing+=(nginx)
if ((${#pip_missing[@]} > 0)) && ! python3 -m pip --version >/dev/null 2>&1; then
    apt_missing+=(python3-pip)
fi

if ((${#apt_missing[@]} > 0)); then
    if ! have apt-get; then
        log "missing ${apt_missing[*]} and no apt-get here: install them with your package manager"
        exit 1
    fi
    sudo=()
    if ((EUID != 0)); then
        if have sudo; then sudo=(sudo -n); else
            log "missing ${apt_missing[*]}: run this script as root"
            exit 1
        fi
    fi
    log "apt-get install ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq </dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" </dev/null >/dev/null
fi

if ((${#pip_missing[@]} > 0)); then
    python=python3
    log "pip install ${pip_missing[*]} (with $(command -v "$python"))"
    # Debian's own python3 refuses system-wide pip installs (PEP 668);
    # --break-system-packages is the documented override for a throwaway
    # CI machine, and older pips that do not know it do not need it.
    pip_flags=(--quiet --disable-pip-version-check)
    pip_help=$("$python" -m pip install --help 2>/dev/null || true)
    for flag in --break-system-packages --root-user-action=ignore; do
        if grep -q -- "${flag%%=*}" <<<"$pip_help"; then pip_flags+=("$flag"); fi
    done
    "$python" -m pip install "${pip_flags[@]}" "${pip_missing[@]}" </dev/null
    # pyenv only exposes new console scripts once its shims are rebuilt.
    if have pyenv; then pyenv rehash || true; fi
    hash -r
    if ! pkilint_ok; then
        bin_dir=$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
        log "pkilint installed but lint_pkix_cert is not on PATH; add $bin_dir to PATH"
        exit 1
    fi
fi

# PostgreSQL: the cluster script knows where Debian puts it.
bash "$(dirname "${BASH_SOURCE[0]}")/pg-test-cluster.sh" install

# Every tool answers, or the run stops here with the reason.
openssl version >/dev/null
certtool --version >/dev/null
# (Debian 12's launcher prints a harmless shell error from /etc/chromium.d/dev-shm.)
/usr/bin/chromium --version >/dev/null 2>&1
/usr/bin/chromedriver --version >/dev/null
/usr/sbin/nginx -v 2>/dev/null
lint_pkix_cert --help >/dev/null
if ! prometheus_client_ok; then
    log "prometheus_client installed but python3 cannot import it"
    exit 1
fi
pkilint_version=$(python3 -c 'import importlib.metadata as m; print(m.version("pkilint"))' 2>/dev/null || echo '?')
prometheus_client_version=$(python3 -c 'import importlib.metadata as m; print(m.version("prometheus_client"))' 2>/dev/null || echo '?')
log "ok: $(openssl version | cut -d' ' -f1-2), $(certtool --version | head -n1), $(/usr/bin/chromium --version 2>/dev/null), $(/usr/sbin/nginx -v 2>&1 | cut -d' ' -f3), pkilint $pkilint_version, prometheus_client $prometheus_client_version"
