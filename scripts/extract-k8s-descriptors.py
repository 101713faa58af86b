#!/usr/bin/env python3
"""Extract Kubernetes' protobuf FileDescriptorSet from the k8s-rs-pb crate's generated sources.

The crate `k8s-rs-pb` (crates.io, Apache-2.0) embeds in each generated module the complete serialized
`FileDescriptorProto` of one Kubernetes `generated.proto` file as a Rust byte-string literal
(`static file_descriptor_proto_data: &'static [u8] = b"..."`). This script fetches the crate through
cargo (a throwaway crate in a temporary directory, `cargo fetch`), decodes those literals, orders the
files so that dependencies come first, and writes one gzipped `google.protobuf.FileDescriptorSet` to
`crates/api/data/protobuf/k8s-descriptors.pb.gz` plus `LICENSE-NOTICE.md` next to it.

Usage: scripts/extract-k8s-descriptors.py [--k8s-version v1_35]
Only the Python standard library and cargo are needed. The output is deterministic (gzip mtime 0).
"""

import argparse
import glob
import gzip
import hashlib
import os
import re
import subprocess
import sys
import tempfile

CRATE = "k8s-rs-pb"
CRATE_VERSION = "0.5.0"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO_ROOT, "crates", "api", "data", "protobuf")

MARKER = re.compile(rb"static file_descriptor_proto_data: &'static \[u8\] = b\"")


def literal_bodies(text: bytes):
    """Yield the raw (still escaped) bodies of every descriptor byte-string literal in `text`."""
    for m in MARKER.finditer(text):
        start = i = m.end()
        while text[i] != 0x22:  # closing quote; escapes are always two or more bytes
            i += 2 if text[i] == 0x5C else 1
        yield text[start:i]


def unescape_rust_bytes(src: bytes) -> bytes:
    """Decode the body of a Rust byte-string literal `b"..."`."""
    out = bytearray()
    i, n = 0, len(src)
    simple = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("\\"): 92, ord("0"): 0,
              ord("'"): 39, ord('"'): 34}
    while i < n:
        c = src[i]
        if c != 0x5C:  # backslash
            if c == 0x0D and i + 1 < n and src[i + 1] == 0x0A:
                i += 1  # CRLF inside a literal is LF
                continue
            out.append(c)
            i += 1
            continue
        e = src[i + 1]
        if e == 0x0A or e == 0x0D:  # line continuation: skip newline and leading whitespace
            i += 2
            while i < n and src[i] in b" \t\r\n":
                i += 1
            continue
        if e == ord("x"):
            out.append(int(src[i + 2:i + 4], 16))
            i += 4
            continue
        if e in simple:
            out.append(simple[e])
            i += 2
            continue
        raise ValueError(f"unsupported escape \\{chr(e)} at offset {i}")
    return bytes(out)


def read_varint(buf: bytes, pos: int):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def top_level_strings(buf: bytes, wanted):
    """Return {field_number: [utf8 strings]} for length-delimited top-level fields in `wanted`."""
    found = {f: [] for f in wanted}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = read_varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            ln, pos = read_varint(buf, pos)
            if field in found:
                found[field].append(buf[pos:pos + ln].decode("utf-8"))
            pos += ln
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return found


def fetch_crate_source() -> str:
    with tempfile.TemporaryDirectory(prefix="k8s-rs-pb-fetch-") as tmp:
        os.makedirs(os.path.join(tmp, "src"))
        with open(os.path.join(tmp, "Cargo.toml"), "w") as f:
            f.write('[package]\nname = "k8s-rs-pb-fetch"\nversion = "0.0.0"\nedition = "2021"\n'
                    f'[dependencies]\n{CRATE} = "={CRATE_VERSION}"\n')
        open(os.path.join(tmp, "src", "lib.rs"), "w").close()
        subprocess.run(["cargo", "fetch", "--quiet"], cwd=tmp, check=True)
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    candidates = glob.glob(os.path.join(cargo_home, "registry", "src", "*", f"{CRATE}-{CRATE_VERSION}"))
    if not candidates:
        sys.exit(f"{CRATE}-{CRATE_VERSION} not found under {cargo_home}/registry/src after cargo fetch")
    return candidates[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k8s-version", default="v1_35", help="k8s-rs-pb module (v1_30 .. v1_35)")
    ap.add_argument("--crate-src", help="use this unpacked crate directory instead of cargo fetch")
    args = ap.parse_args()

    src = args.crate_src or fetch_crate_source()
    root = os.path.join(src, "src", args.k8s_version)
    files = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.rs"), recursive=True)):
        with open(path, "rb") as f:
            text = f.read()
        for body in literal_bodies(text):
            data = unescape_rust_bytes(body)
            fields = top_level_strings(data, (1, 2, 3))
            name = fields[1][0]
            if name in files and files[name][0] != data:
                sys.exit(f"conflicting descriptors for {name}")
            files[name] = (data, fields[3], fields[2][0] if fields[2] else "")
    if not files:
        sys.exit(f"no descriptors found under {root}")

    # Dependencies first; all dependencies must be present.
    ordered, done = [], set()

    def visit(name, stack=()):
        if name in done:
            return
        if name not in files:
            sys.exit(f"missing dependency {name} (needed by {stack[-1] if stack else '?'})")
        if name in stack:
            sys.exit(f"dependency cycle at {name}")
        for dep in files[name][1]:
            visit(dep, stack + (name,))
        done.add(name)
        ordered.append(name)

    for name in sorted(files):
        visit(name)

    fds = bytearray()
    for name in ordered:
        data = files[name][0]
        fds += b"\x0a" + encode_varint(len(data)) + data

    os.makedirs(OUT_DIR, exist_ok=True)
    out = os.path.join(OUT_DIR, "k8s-descriptors.pb.gz")
    gz = gzip.compress(bytes(fds), compresslevel=9, mtime=0)
    with open(out, "wb") as f:
        f.write(gz)

    packages = sorted({files[n][2] for n in ordered})
    notice = f"""# Kubernetes protobuf descriptors — provenance and licence

`k8s-descriptors.pb.gz` is a gzipped `google.protobuf.FileDescriptorSet` describing Kubernetes' API
types (the `generated.proto` files of `k8s.io/api`, `k8s.io/apimachinery`,
`k8s.io/apiextensions-apiserver`, `k8s.io/kube-aggregator` and `k8s.io/metrics`).

- Source: the Rust crate `{CRATE}` version {CRATE_VERSION} from crates.io
  (<https://github.com/DMoscicki/k8s-rs-pb>), licence **Apache-2.0**. Its generated sources embed each
  file's serialized `FileDescriptorProto` (`static file_descriptor_proto_data`); module `{args.k8s_version}`
  was used.
- The descriptors describe Kubernetes' API types, which are Copyright The Kubernetes Authors and
  licensed under the Apache License, Version 2.0 (<https://www.apache.org/licenses/LICENSE-2.0>).
- Produced by `scripts/extract-k8s-descriptors.py --k8s-version {args.k8s_version}`; the bytes are
  unchanged, only collected into one set in dependency order. Package names keep the crate's prefix
  (`api.core.v1`, `apimachinery.pkg.apis.meta.v1`, …) instead of upstream's `k8s.io.api.core.v1`.
- {len(ordered)} files, {len(fds)} bytes uncompressed, {len(gz)} bytes gzipped,
  sha256 of the uncompressed set `{hashlib.sha256(bytes(fds)).hexdigest()}`.

Packages: {", ".join(f"`{p}`" for p in packages)}.
"""
    with open(os.path.join(OUT_DIR, "LICENSE-NOTICE.md"), "w") as f:
        f.write(notice)
    print(f"wrote {out}: {len(ordered)} files, {len(fds)} bytes, {len(gz)} gzipped")


if __name__ == "__main__":
    main()
