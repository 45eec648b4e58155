#!/usr/bin/env python3
"""Checks that docs/deploy-spec.schema.json agrees with the spec parser on examples.

Every SPEC given must validate; every spec under tests/deploy/bad-schema/ (structural mistakes
the schema can see) must be refused, so the schema cannot silently accept everything.

Usage: validate_spec_schema.py SCHEMA.json SPEC.yaml...
"""
import glob
import json
import os
import sys

import jsonschema
import yaml


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)
    problems = 0
    for path in sys.argv[2:]:
        with open(path) as f:
            spec = yaml.safe_load(f)
        for error in validator.iter_errors(spec):
            problems += 1
            field = ".".join(str(p) for p in error.absolute_path)
            print(f"{path}: {field}: {error.message}", file=sys.stderr)
    bad_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bad-schema")
    bad = sorted(glob.glob(os.path.join(bad_dir, "*.yaml")))
    for path in bad:
        with open(path) as f:
            spec = yaml.safe_load(f)
        if validator.is_valid(spec):
            problems += 1
            print(f"{path}: accepted by the schema but must be refused", file=sys.stderr)
    print(f"validate_spec_schema: {len(sys.argv) - 2} specs valid, {len(bad)} bad specs refused, "
          f"{problems} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
