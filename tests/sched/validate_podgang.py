#!/usr/bin/env python3
"""Validates PodGang documents against the Grove PodGang CRD's openAPIV3Schema, made strict:
objects that list `properties` refuse any other field (as `kubectl apply --validate=strict`).

Usage: validate_podgang.py CRD.yaml PODGANG.yaml...   (exit 0 = all valid)
"""
import sys

import jsonschema
import yaml


def strict(schema):
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = strict(value)
        elif key.startswith("x-kubernetes-") or key in ("description", "format", "nullable"):
            continue
        else:
            out[key] = value
    if "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        crd = yaml.safe_load(f)
    version = crd["spec"]["versions"][0]
    schema = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    failed = 0
    for path in argv[2:]:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                expected = "%s/%s" % (crd["spec"]["group"], version["name"])
                if doc.get("apiVersion") != expected or doc.get("kind") != "PodGang":
                    print("%s: expected apiVersion %s, kind PodGang" % (path, expected))
                    failed += 1
                    continue
                errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
                for error in errors:
                    where = "/".join(str(p) for p in error.absolute_path)
                    print("%s: %s: %s" % (path, where or "(root)", error.message))
                failed += len(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
