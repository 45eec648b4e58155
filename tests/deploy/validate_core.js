#!/usr/bin/env node
// Validates the core Kubernetes objects of rendered manifests (Service, Deployment, StatefulSet,
// HorizontalPodAutoscaler, PodDisruptionBudget, ServiceAccount, Role, RoleBinding, ...) against
// the Kubernetes OpenAPI definitions shipped by the npm package kubernetes-models. Custom
// resources are left to validate_crds.py; a kind known to neither is an error.
//
// Usage: node validate_core.js MANIFEST.yaml...   (exit 0 = all valid)
'use strict';

const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

// Custom resources validated elsewhere (validate_crds.py), or not at all (PodMonitor: the
// Prometheus Operator's CRD is not among the reference schemas).
const CUSTOM_GROUPS = new Set(['grove.io', 'scheduler.grove.io', 'leaderworkerset.x-k8s.io',
  'scheduling.run.ai', 'kai.scheduler', 'monitoring.coreos.com']);

function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const modulePath = group === '' ? `kubernetes-models/${version}/${kind}`
                                  : `kubernetes-models/${group}/${version}/${kind}`;
  try {
    return require(modulePath)[kind];
  } catch (e) {
    return null;
  }
}

let failures = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'));
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      failures++;
      console.error(`${file}: YAML error: ${doc.errors[0].message}`);
      continue;
    }
    const object = doc.toJS();
    if (object === null) continue;
    const where = `${path.basename(file)}: ${object.kind} ${object.metadata && object.metadata.name}`;
    const group = String(object.apiVersion).split('/').length > 1
      ? String(object.apiVersion).split('/')[0] : '';
    if (CUSTOM_GROUPS.has(group)) continue;
    const Model = modelFor(String(object.apiVersion), String(object.kind));
    if (Model === null || Model === undefined) {
      failures++;
      console.error(`${where}: unknown core kind ${object.apiVersion} ${object.kind}`);
      continue;
    }
    checked++;
    try {
      new Model(object).validate();
    } catch (e) {
      failures++;
      console.error(`${where}: ${e.message}`);
    }
  }
}
console.log(`validate_core: ${checked} core objects checked, ${failures} problems`);
process.exit(failures === 0 ? 0 : 1);
