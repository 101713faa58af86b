#!/usr/bin/env python3
"""Derive Skiff's vendored OpenAPI schema data from the `kubernetes-validate` wheel on PyPI.

The wheel (Apache-2.0) carries Kubernetes' JSON schemas per version; its
`kubernetes_validate/kubernetes-json-schema/<version>-local/_definitions.json` holds every definition
under `$defs` (keyed like `io.k8s.api.core.v1.Pod`) with descriptions, `x-kubernetes-group-version-kind`
and the patch / list extensions. This script downloads the wheel with pip, normalises the definitions
into OpenAPI v3 form (the form `/openapi/v3/<gv>` documents use) and writes:

  crates/api/data/openapi/definitions.json.gz   {"source": ..., "definitions": {name: schema}}
  crates/api/data/openapi/LICENSE-NOTICE.md

Normalisation:
  - `"type": ["object", "null"]` becomes `"type": "object"` (upstream OpenAPI has no null types);
  - `{"$ref": "#/$defs/X", ...}` becomes `{"allOf": [{"$ref": "#/components/schemas/X"}], ...}`;
  - the `enum` that the JSON-schema conversion put on `apiVersion` / `kind` is dropped;
  - IntOrString and Quantity keep a `oneOf` of their types (without null) and get upstream's description,
    as upstream v3 documents publish them (v2 documents write them as `type: string`);
  - descriptions, `required`, `format`, `items`, `properties`, `additionalProperties` and every
    `x-kubernetes-*` extension are kept; keys are sorted. The output is deterministic (gzip mtime 0).

Usage: scripts/gen-openapi-data.py [--wheel PATH]   (Python standard library and pip only)
"""

import argparse
import glob
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "kubernetes-validate"
PACKAGE_VERSION = "1.37.0"
SCHEMA_VERSION = "v1.33.0-local"
MEMBER = f"kubernetes_validate/kubernetes-json-schema/{SCHEMA_VERSION}/_definitions.json"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO_ROOT, "crates", "api", "data", "openapi")
REF_PREFIX = "#/$defs/"
V3_PREFIX = "#/components/schemas/"

# Kept keywords of a schema object (anything else, such as `enum` or `$schema`, is dropped).
KEEP = {
    "description", "type", "format", "required", "items", "properties", "additionalProperties",
}

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
SPECIAL = {
    INT_OR_STRING: {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
        "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, "
        "for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
    QUANTITY: {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
        "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.\n\n"
        "The serialization format is:\n\n``` <quantity>        ::= <signedNumber><suffix>\n\n"
        "\t(Note that <suffix> may be empty, from the \"\" case in <decimalSI>.)\n\n"
        "<digit>           ::= 0 | 1 | ... | 9 <digits>          ::= <digit> | <digit><digits> "
        "<number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits> <sign>            ::= "
        "\"+\" | \"-\" <signedNumber>    ::= <number> | <sign><number> <suffix>          ::= <binarySI> | "
        "<decimalExponent> | <decimalSI> <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei\n\n"
        "\t(International System of units; See: http://physics.nist.gov/cuu/Units/binary.html)\n\n"
        "<decimalSI>       ::= m | \"\" | k | M | G | T | P | E\n\n"
        "\t(Note that 1024 = 1Ki but 1000 = 1k; I didn't choose the capitalization.)\n\n"
        "<decimalExponent> ::= \"e\" <signedNumber> | \"E\" <signedNumber> ```\n\n"
        "No matter which of the three exponent forms is used, no quantity may represent a number greater "
        "than 2^63-1 in magnitude, nor may it have more than 3 decimal places. Numbers larger or more "
        "precise will be capped or rounded up. (E.g.: 0.1m will rounded up to 1m.) This may be extended in "
        "the future if we require larger or smaller quantities.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
}


def fail(msg):
    print(f"gen-openapi-data: {msg}", file=sys.stderr)
    sys.exit(1)


def download_wheel(dest):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{PACKAGE}=={PACKAGE_VERSION}", "-d", dest]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wheels = glob.glob(os.path.join(dest, "*.whl"))
    if len(wheels) != 1:
        fail(f"expected one wheel in {dest}, found {wheels}")
    return wheels[0]


def norm_type(t, where):
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"]
        if len(non_null) != 1:
            fail(f"unexpected type list {t} at {where}")
        return non_null[0]
    return t


def norm_ref(ref, where, names):
    if not ref.startswith(REF_PREFIX):
        fail(f"unexpected $ref {ref!r} at {where}")
    name = ref[len(REF_PREFIX):]
    if name not in names:
        fail(f"dangling $ref {ref!r} at {where}")
    return V3_PREFIX + name


def norm_schema(s, where, names):
    """Normalises one (sub)schema; `where` names it in error messages."""
    if not isinstance(s, dict):
        fail(f"schema at {where} is not an object")
    out = {}
    for k, v in s.items():
        if k == "$ref":
            out["allOf"] = [{"$ref": norm_ref(v, where, names)}]
        elif k.startswith("x-kubernetes-"):
            out[k] = v
        elif k not in KEEP:
            continue
        elif k == "type":
            out[k] = norm_type(v, where)
        elif k == "properties":
            out[k] = {p: norm_schema(ps, f"{where}.{p}", names) for p, ps in v.items()}
        elif k in ("items", "additionalProperties"):
            out[k] = norm_schema(v, f"{where}[{k}]", names) if isinstance(v, dict) else v
        else:
            out[k] = v
    return out


def normalise(defs):
    names = set(defs)
    out = {}
    for name in sorted(defs):
        if name in SPECIAL:
            out[name] = SPECIAL[name]
            continue
        schema = defs[name]
        if "oneOf" in schema:
            fail(f"unhandled oneOf in {name}")
        out[name] = norm_schema(schema, name, names)
    return out


NOTICE = f"""# Licence notice for `definitions.json.gz`

`definitions.json.gz` is derived by `scripts/gen-openapi-data.py` from the file
`kubernetes_validate/kubernetes-json-schema/{SCHEMA_VERSION}/_definitions.json` in the Python package
**{PACKAGE} {PACKAGE_VERSION}** (PyPI, <https://github.com/willthames/kubernetes-validate>),
Copyright (C) 2018 Will Thames, licensed under the Apache License, Version 2.0.

The schemas themselves are the OpenAPI definitions of the Kubernetes API (Kubernetes {SCHEMA_VERSION.split('-')[0]}),
Copyright The Kubernetes Authors, licensed under the Apache License, Version 2.0
(<https://github.com/kubernetes/kubernetes>). Descriptions are Kubernetes' API documentation.

Changes made: definitions were converted to OpenAPI v3 form (`$ref` wrapped in `allOf` and pointed at
`#/components/schemas/`, nullable type lists reduced to a single type, the `enum` on `apiVersion`/`kind`
removed, upstream descriptions added to IntOrString and Quantity), re-serialised with
sorted keys and gzipped.

You may obtain a copy of the License at <https://www.apache.org/licenses/LICENSE-2.0>. Unless required by
applicable law or agreed to in writing, software distributed under the License is distributed on an
"AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", help="use this already downloaded wheel instead of running pip")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(tmp)
        with zipfile.ZipFile(wheel) as z:
            raw = json.loads(z.read(MEMBER))
    defs = raw.get("$defs")
    if not isinstance(defs, dict) or not defs:
        fail("no $defs in the definitions file")
    doc = {
        "source": f"{PACKAGE} {PACKAGE_VERSION} {MEMBER}",
        "definitions": normalise(defs),
    }
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    os.makedirs(OUT_DIR, exist_ok=True)
    out = os.path.join(OUT_DIR, "definitions.json.gz")
    with open(out, "wb") as f:
        f.write(gzip.compress(data, compresslevel=9, mtime=0))
    with open(os.path.join(OUT_DIR, "LICENSE-NOTICE.md"), "w") as f:
        f.write(NOTICE)
    print(f"wrote {out}: {len(doc['definitions'])} definitions, {len(data)} bytes JSON, "
          f"{os.path.getsize(out)} bytes gzipped")


if __name__ == "__main__":
    main()
