#!/usr/bin/env python3
"""Validates rendered manifests against the real CustomResourceDefinition schemas.

Each document whose apiVersion/kind matches a CRD in CRD_DIR is checked against that CRD's
openAPIV3Schema, made strict: objects that list `properties` (and do not preserve unknown fields)
refuse any other field, as the API server does with `kubectl apply --validate=strict`. The pod
templates of core Deployments and StatefulSets are checked the same way against the PodTemplateSpec
schema embedded in the LeaderWorkerSet CRD, so unknown pod fields are caught there too. A few of
the CRDs' CEL rules (x-kubernetes-validations) are checked by hand.

Usage: validate_crds.py CRD_DIR MANIFEST.yaml...   (exit 0 = all valid)
"""
import copy
import glob
import os
import sys

import jsonschema
import yaml


def strict(schema):
    """Converts an OpenAPI v3 structural schema into a strict JSON Schema (draft 7)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = strict(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict(sub) for sub in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "description", "format"):
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if ("properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in schema):
        out["additionalProperties"] = False
    return out


def load_crds(crd_dir):
    schemas = {}
    for path in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                kind = crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    schema["properties"]["metadata"] = METADATA
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


# The API server checks metadata itself; this is the part renderers write.
METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def cel_checks(doc):
    """Hand-written equivalents of the CEL rules and webhook checks that matter for rendering."""
    errors = []

    def pack(constraint, where):
        if constraint is None:
            return
        p = constraint.get("pack")
        if p is None or not ("required" in p or "preferred" in p):
            errors.append(f"{where}.topologyConstraint: pack must specify required or preferred")

    if doc.get("kind") == "PodCliqueSet":
        template = doc["spec"]["template"]
        names = [c["name"] for c in template["cliques"]]
        if len(set(names)) != len(names):
            errors.append("cliques: duplicate clique names")
        pack(template.get("topologyConstraint"), "template")
        grouped = []
        for clique in template["cliques"]:
            spec = clique["spec"]
            pack(clique.get("topologyConstraint"), f"cliques[{clique['name']}]")
            for dep in spec.get("startsAfter", []):
                if dep not in names:
                    errors.append(f"cliques[{clique['name']}].startsAfter: unknown clique {dep}")
            if spec.get("minAvailable", 0) > spec["replicas"]:
                errors.append(f"cliques[{clique['name']}]: minAvailable > replicas")
            if spec.get("startsAfter") and template.get("cliqueStartupType") != \
                    "CliqueStartupTypeExplicit":
                errors.append("startsAfter needs cliqueStartupType CliqueStartupTypeExplicit")
        for group in template.get("podCliqueScalingGroups", []):
            pack(group.get("topologyConstraint"), f"podCliqueScalingGroups[{group['name']}]")
            for name in group["cliqueNames"]:
                if name not in names:
                    errors.append(f"podCliqueScalingGroups[{group['name']}]: unknown clique {name}")
                grouped.append(name)
            if group.get("minAvailable", 1) > group.get("replicas", 1):
                errors.append(f"podCliqueScalingGroups[{group['name']}]: minAvailable > replicas")
        if len(set(grouped)) != len(grouped):
            errors.append("a clique is in two podCliqueScalingGroups")
    return errors


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    schemas = load_crds(sys.argv[1])
    lws = schemas[("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")]
    pod_template = copy.deepcopy(
        lws["properties"]["spec"]["properties"]["leaderWorkerTemplate"]["properties"]
        ["workerTemplate"])
    pod_template["properties"]["metadata"] = {
        "type": "object", "additionalProperties": False,
        "properties": {k: METADATA["properties"][k] for k in ("labels", "annotations")}}
    failures = 0
    checked = 0
    for path in sys.argv[2:]:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            where = f"{path}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            targets = []
            if key in schemas:
                targets.append((schemas[key], doc, ""))
            if key in (("apps/v1", "Deployment"), ("apps/v1", "StatefulSet")):
                targets.append((pod_template, doc["spec"]["template"], "spec.template."))
            for schema, instance, prefix in targets:
                checked += 1
                validator = jsonschema.Draft7Validator(schema)
                for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.path)):
                    failures += 1
                    field = prefix + ".".join(str(p) for p in error.absolute_path)
                    print(f"{where}: {field}: {error.message}", file=sys.stderr)
            for message in cel_checks(doc):
                failures += 1
                print(f"{where}: {message}", file=sys.stderr)
    print(f"validate_crds: {checked} objects checked against CRD schemas, {failures} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
