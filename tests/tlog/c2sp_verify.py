#!/usr/bin/env python3
"""An independent verifier of certboard's transparency log, written from
the C2SP specifications (signed-note, tlog-checkpoint, tlog-proof,
tlog-tiles) and RFC 6962/9162 alone: it shares no code with certboard.

  c2sp_verify.py proof  --vkey VKEY --origin O --leaf FILE --proof FILE
  c2sp_verify.py tiles  --vkey VKEY --origin O --url URL [--old CHECKPOINT]
  c2sp_verify.py cosig  --vkey VKEY --origin O --witness WVKEY --note FILE

`proof` checks a tlog-proof for one entry (the entry's raw bytes in
--leaf). `tiles` fetches <URL>/checkpoint, verifies it, fetches every
entry bundle and hash tile the checkpoint's size needs, recomputes the
root from the entries and checks each tile against the entries; with
--old, also that an older checkpoint's tree is a prefix of it. `cosig`
checks a checkpoint note's log signature and the C2SP tlog-cosignature
(cosignature/v1, Ed25519) of the witness whose vkey is --witness. Prints what
it checked and exits 0, or prints why not and exits 1.
"""
import argparse
import base64
import hashlib
import sys
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.exceptions import InvalidSignature


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def b64(s):
    try:
        return base64.b64decode(s, validate=True)
    except Exception:
        fail("not base64: %r" % s)


def parse_vkey(vkey):
    name, keyid, key = vkey.strip().split("+", 2)
    raw = b64(key)
    if raw[0] != 1 or len(raw) != 33:
        fail("verifier key is not Ed25519")
    want = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if want.hex() != keyid:
        fail("verifier key id does not match")
    return name, want, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_note(note, vkey):
    name, keyid, pub = parse_vkey(vkey)
    cut = note.rfind("\n\n")
    if cut < 0:
        fail("note has no blank line")
    text, sigs = note[: cut + 1], note[cut + 2 :]
    ok = False
    for line in sigs.rstrip("\n").split("\n"):
        if not line.startswith("\u2014 "):
            fail("bad signature line %r" % line)
        sname, sig = line[2:].split(" ", 1)
        blob = b64(sig)
        if sname != name or blob[:4] != keyid:
            continue
        try:
            pub.verify(blob[4:], text.encode())
        except InvalidSignature:
            fail("signature by %s does not verify" % name)
        ok = True
    if not ok:
        fail("no signature by %s" % name)
    return text


def parse_checkpoint(note, vkey, origin):
    text = open_note(note, vkey)
    lines = text.split("\n")
    if lines[0] != origin:
        fail("origin %r, expected %r" % (lines[0], origin))
    size = int(lines[1])
    if str(size) != lines[1]:
        fail("size not canonical")
    root = b64(lines[2])
    if len(root) != 32:
        fail("root is not 32 bytes")
    return size, root


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def mth(hashes):
    """RFC 6962 MTH over leaf hashes, iteratively by levels (not by the
    recursive split): the last odd node is carried up unchanged."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    level = list(hashes)
    while len(level) > 1:
        nxt = [node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def verify_inclusion(leaf, index, size, path, root):
    # RFC 9162 2.1.3.2
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def cmd_proof(a):
    text = open(a.proof, encoding="utf-8").read()
    lines = text.split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1":
        fail("not a tlog-proof")
    i = 1
    if lines[i].startswith("extra "):
        i += 1
    if not lines[i].startswith("index "):
        fail("no index line")
    index = int(lines[i][6:])
    i += 1
    path = []
    while lines[i] != "":
        path.append(b64(lines[i]))
        i += 1
    checkpoint = "\n".join(lines[i + 1 :])
    size, root = parse_checkpoint(checkpoint, a.vkey, a.origin)
    leaf = open(a.leaf, "rb").read()
    if not verify_inclusion(leaf_hash(leaf), index, size, path, root):
        fail("entry %d is not included in the checkpoint of size %d" % (index, size))
    print("OK entry %d included in %s at size %d" % (index, a.origin, size))


def tile_path(n):
    parts = ["%03d" % (n % 1000)]
    n //= 1000
    while n:
        parts.append("x%03d" % (n % 1000))
        n //= 1000
    return "/".join(reversed(parts))


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def cmd_tiles(a):
    note = get(a.url + "/checkpoint").decode()
    size, root = parse_checkpoint(note, a.vkey, a.origin)
    entries = []
    for n in range((size + 255) // 256):
        w = min(256, size - n * 256)
        suffix = "" if w == 256 else ".p/%d" % w
        bundle = get(a.url + "/tile/entries/" + tile_path(n) + suffix)
        got = []
        while bundle:
            ln = int.from_bytes(bundle[:2], "big")
            got.append(bundle[2 : 2 + ln])
            if len(bundle) < 2 + ln:
                fail("truncated entry bundle %d" % n)
            bundle = bundle[2 + ln :]
        if len(got) != w:
            fail("entry bundle %d holds %d entries, expected %d" % (n, len(got), w))
        entries.extend(got)
    hashes = [leaf_hash(e) for e in entries]
    if mth(hashes) != root:
        fail("the entries do not hash to the checkpoint's root")
    # Every hash tile the size needs agrees with the entries.
    level, nodes = 0, hashes
    while len(nodes) >= 1 and (level == 0 or len(nodes) > 0):
        count = len(nodes)
        for n in range((count + 255) // 256):
            w = min(256, count - n * 256)
            suffix = "" if w == 256 else ".p/%d" % w
            tile = get(a.url + "/tile/%d/" % level + tile_path(n) + suffix)
            if tile != b"".join(nodes[n * 256 : n * 256 + w]):
                fail("tile %d/%d does not match the entries" % (level, n))
        full = count // 256
        nodes = [mth(nodes[i * 256 : (i + 1) * 256]) for i in range(full)]
        level += 1
        if not nodes:
            break
    if a.old:
        old_size, old_root = parse_checkpoint(open(a.old).read(), a.vkey, a.origin)
        if old_size > size or mth(hashes[:old_size]) != old_root:
            fail("the log at size %d does not extend the old checkpoint of size %d" % (size, old_size))
    print("OK %s: %d entries recompute the checkpoint's root; every tile matches" % (a.origin, size))


def cmd_cosig(a):
    note = open(a.note).read()
    size, _ = parse_checkpoint(note, a.vkey, a.origin)
    name, keyid, key = a.witness.strip().split("+", 2)
    raw = b64(key)
    if raw[0] != 4 or len(raw) != 33:
        fail("the witness key is not a cosignature/v1 (type 0x04) Ed25519 key")
    want = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if want.hex() != keyid:
        fail("witness key id does not match")
    pub = Ed25519PublicKey.from_public_bytes(raw[1:])
    cut = note.rfind("\n\n")
    text, sigs = note[: cut + 1], note[cut + 2 :]
    for line in sigs.rstrip("\n").split("\n"):
        sname, sig = line[2:].split(" ", 1)
        blob = b64(sig)
        if sname != name or blob[:4] != want:
            continue
        if len(blob) != 4 + 8 + 64:
            fail("cosignature by %s is not key id, timestamp, signature" % name)
        ts = int.from_bytes(blob[4:12], "big")
        msg = ("cosignature/v1\ntime %d\n" % ts).encode() + text.encode()
        try:
            pub.verify(blob[12:], msg)
        except InvalidSignature:
            fail("cosignature by %s does not verify" % name)
        print("OK %s: checkpoint of %d entries cosigned by %s at %d" % (a.origin, size, name, ts))
        return
    fail("no cosignature by %s" % name)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("proof", "tiles", "cosig"):
        s = sub.add_parser(name)
        s.add_argument("--vkey", required=True)
        s.add_argument("--origin", required=True)
        if name == "proof":
            s.add_argument("--leaf", required=True)
            s.add_argument("--proof", required=True)
        elif name == "cosig":
            s.add_argument("--witness", required=True)
            s.add_argument("--note", required=True)
        else:
            s.add_argument("--url", required=True)
            s.add_argument("--old")
    a = p.parse_args()
    {"proof": cmd_proof, "tiles": cmd_tiles, "cosig": cmd_cosig}[a.cmd](a)


if __name__ == "__main__":
    main()
