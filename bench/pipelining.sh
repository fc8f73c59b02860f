#!/usr/bin/env bash
# An honest student's enrollment and submission, timed unloaded and beside
# 64 connections each pipelining 100 OCSP POSTs (issue 19): the end-to-end
# test tests/pipelining.rs prints both figures. Release build unless
# PROFILE=debug.
set -euo pipefail
cd "$(dirname "$0")/.."
release=--release
if [ "${PROFILE:-release}" = debug ]; then
  release=
fi
cargo test -q $release --test pipelining -- --nocapture 2>&1 | grep -E '^honest enrollment'
