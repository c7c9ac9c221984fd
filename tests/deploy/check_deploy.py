#!/usr/bin/env python3
"""Checks the deployment artefacts in deploy/ for consistency and safety.

Usage: check_deploy.py [--fix] [--exporter PATH]

--fix regenerates deploy/kubernetes/prometheusrule.yaml from deploy/prometheus/alerts.yml.
--exporter runs PATH check-config on every manifest's config and environment (each shard
ordinal of a StatefulSet). With kubectl on PATH, the kustomizations are rendered too.
Exits 1 listing every problem found. Needs PyYAML and promtool.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
problems = []


def problem(where, what):
    problems.append(f"{os.path.relpath(where, ROOT)}: {what}")


def load_all_yaml():
    docs = {}
    for base, _, files in os.walk(DEPLOY):
        for name in sorted(files):
            path = os.path.join(base, name)
            if name.endswith((".yml", ".yaml")):
                try:
                    with open(path) as f:
                        docs[path] = [d for d in yaml.safe_load_all(f) if d is not None]
                except yaml.YAMLError as e:
                    problem(path, f"invalid YAML: {e}")
            elif name.endswith(".json"):
                try:
                    with open(path) as f:
                        json.load(f)
                except ValueError as e:
                    problem(path, f"invalid JSON: {e}")
    return docs


PROMETHEUSRULE_HEADER = """# Generated from deploy/prometheus/alerts.yml by tests/deploy/check_deploy.py --fix;
# a test fails when the two differ. Edit alerts.yml, then regenerate.
"""


def prometheusrule_for(groups):
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "healthimaging-exporter", "labels": {"app.kubernetes.io/name": "healthimaging-exporter"}},
        "spec": {"groups": groups},
    }


def check_rules(docs, fix):
    alerts_path = os.path.join(DEPLOY, "prometheus", "alerts.yml")
    groups = docs[alerts_path][0]["groups"]
    rule_path = os.path.join(DEPLOY, "kubernetes", "prometheusrule.yaml")
    wanted = prometheusrule_for(groups)
    if fix:
        with open(rule_path, "w") as f:
            f.write(PROMETHEUSRULE_HEADER)
            yaml.safe_dump(wanted, f, sort_keys=False, width=1000)
        docs[rule_path] = [wanted]
    if docs.get(rule_path, [None])[0] != wanted:
        problem(rule_path, "differs from deploy/prometheus/alerts.yml (run tests/deploy/check_deploy.py --fix)")

    runbook = open(os.path.join(DEPLOY, "RUNBOOK.md")).read()
    anchors = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-")) for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
    tests = docs[os.path.join(DEPLOY, "prometheus", "alerts_test.yml")][0]["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        name = rule["alert"]
        if not re.fullmatch(r"HealthImaging[A-Z][A-Za-z]+", name):
            problem(alerts_path, f"{name}: not a CamelCase HealthImaging* name")
        if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problem(alerts_path, f"{name}: severity label missing or not critical/warning/info")
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                problem(alerts_path, f"{name}: annotation {key} missing")
        anchor = ann.get("runbook_url", "").rpartition("#")[2]
        if anchor not in anchors:
            problem(alerts_path, f"{name}: runbook_url anchor #{anchor} is no heading of deploy/RUNBOOK.md")
        mine = [c for c in cases if c["alertname"] == name]
        if not any(c.get("exp_alerts") for c in mine):
            problem(alerts_path, f"{name}: no promtool test where it fires")
        if not any(not c.get("exp_alerts") for c in mine):
            problem(alerts_path, f"{name}: no promtool test where it stays silent")


def containers(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec, spec.get("initContainers", []) + spec.get("containers", [])


# The base set (kubectl apply -k deploy/kubernetes) and the sharded overlay built on it.
KDIRS = [os.path.join(DEPLOY, "kubernetes"), os.path.join(DEPLOY, "kubernetes-sharded")]
WORKLOADS = ("Deployment", "StatefulSet")
SHARD_ENV = "HEALTHIMAGING_EXPORTER_SHARDING__SHARD"
TOTAL_ENV = "HEALTHIMAGING_EXPORTER_SHARDING__TOTAL_SHARDS"
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"


def kubernetes_docs(docs):
    return [(path, doc) for path, items in docs.items() if any(path.startswith(k + os.sep) for k in KDIRS) for doc in items]


def exporter_workloads(docs):
    """(path, workload, pod spec, exporter container) for every manifest running the exporter."""
    for path, doc in kubernetes_docs(docs):
        if doc.get("kind") not in WORKLOADS:
            continue
        pod, all_containers = containers(doc)
        for c in all_containers:
            if "healthimaging-exporter" in c.get("image", ""):
                yield path, doc, pod, c


def check_kubernetes(docs):
    kdocs = kubernetes_docs(docs)
    for path, doc in kdocs:
        for key in ("apiVersion", "kind") if doc.get("kind") == "Kustomization" else ("apiVersion", "kind", "metadata"):
            if key not in doc:
                problem(path, f"{key} missing")
        kind = doc.get("kind")
        if kind == "Kustomization":
            here = os.path.dirname(path)
            for res in doc.get("resources", []):
                if not os.path.exists(os.path.join(here, res)):
                    problem(path, f"resource {res} does not exist")
            for patch in doc.get("patches", []):
                if "path" in patch and not os.path.exists(os.path.join(here, patch["path"])):
                    problem(path, f"patch {patch['path']} does not exist")
        if kind == "Service":
            if not any(p.get("name") == "metrics" for p in doc["spec"].get("ports", [])):
                problem(path, "Service has no port named metrics")
        if kind in WORKLOADS and containers(doc)[0].get("securityContext", {}).get("runAsNonRoot") is not True:
            problem(path, "pod securityContext.runAsNonRoot is not true")

    found = {}
    for path, doc, pod, c in exporter_workloads(docs):
        found[(os.path.relpath(path, DEPLOY), doc["kind"])] = True
        where = f"container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            problem(path, f"{where}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problem(path, f"{where}: allowPrivilegeEscalation is not false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problem(path, f"{where}: capabilities are not dropped")
        if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            problem(path, f"{where}: livenessProbe is not /healthz")
        if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            problem(path, f"{where}: readinessProbe is not /readyz")
        if not any(p.get("name") == "metrics" and p.get("containerPort") == 9712 for p in c.get("ports", [])):
            problem(path, f"{where}: no port metrics/9712")
        if c in pod.get("initContainers", []) and c.get("restartPolicy") != "Always":
            problem(path, f"{where}: a native sidecar needs restartPolicy: Always")
        if doc["kind"] == "StatefulSet":
            check_sharded(path, doc, c, kdocs)
    for want in [("kubernetes/deployment.yaml", "Deployment"), ("kubernetes/sidecar-example.yaml", "Deployment"),
                 ("kubernetes-sharded/statefulset-sharded.yaml", "StatefulSet")]:
        if want not in found:
            problem(os.path.join(DEPLOY, want[0]), f"expected the exporter in a {want[1]}")

    # The ServiceMonitor must reach each exporter pod through exactly one Service, or every
    # pod is scraped twice (duplicate series, doubled sums, confused shard alerts).
    services = [(p, d) for p, d in kdocs if d.get("kind") == "Service"]
    for path, mon in ((p, d) for p, d in kdocs if d.get("kind") == "ServiceMonitor"):
        want = mon["spec"]["selector"].get("matchLabels", {})
        picked = [d["metadata"]["name"] for _, d in services if want.items() <= d["metadata"].get("labels", {}).items()]
        if len(picked) != 1:
            problem(path, f"selects Services {picked}; exactly one must match, or pods are scraped twice")


def check_sharded(path, sts, c, kdocs):
    env = {e["name"]: e for e in c.get("env", [])}
    replicas = sts["spec"].get("replicas")
    if sts["spec"].get("podManagementPolicy") != "Parallel":
        problem(path, "StatefulSet podManagementPolicy is not Parallel")
    shard = env.get(SHARD_ENV, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if shard != POD_INDEX:
        problem(path, f"{SHARD_ENV} does not come from fieldRef {POD_INDEX}")
    if env.get(TOTAL_ENV, {}).get("value") != str(replicas):
        problem(path, f"{TOTAL_ENV} is {env.get(TOTAL_ENV, {}).get('value')!r}, replicas {replicas}: they must be equal")
    governing = [d for _, d in kdocs if d.get("kind") == "Service" and d["metadata"]["name"] == sts["spec"].get("serviceName")]
    if not governing or governing[0]["spec"].get("clusterIP") != "None":
        problem(path, f"serviceName {sts['spec'].get('serviceName')!r} is no headless Service of deploy/")


def config_of(path, pod, c, docs):
    """The config file the container reads: the ConfigMap of its volume, the workload's own
    directory (an overlay's patch) winning over the base."""
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    for v in pod.get("volumes", []):
        if "configMap" in v and mounts.get(v["name"]) == "/etc/healthimaging-exporter":
            name = v["configMap"]["name"]
            for kdir in [os.path.dirname(path)] + KDIRS:
                for p, d in kubernetes_docs(docs):
                    if os.path.dirname(p) == kdir and d.get("kind") == "ConfigMap" and d["metadata"]["name"] == name:
                        return p, d["data"]["config.toml"]
    return None, None


def check_with_exporter(docs, exporter):
    """Every manifest's config and environment pass the exporter's own check-config, for every
    shard ordinal of a StatefulSet."""
    for path, doc, pod, c in exporter_workloads(docs):
        config_path, config = config_of(path, pod, c, docs)
        if config is None:
            problem(path, "no ConfigMap mounted at /etc/healthimaging-exporter found in deploy/")
            continue
        literal = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
        ordinals = [None]
        if any(e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == POD_INDEX for e in c.get("env", [])):
            ordinals = [str(i) for i in range(doc["spec"].get("replicas", 1))]
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(config)
        for ordinal in ordinals:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **literal}
            if ordinal is not None:
                env[SHARD_ENV] = ordinal
            out = subprocess.run([exporter, "check-config", "--config", f.name], env=env, capture_output=True, text=True)
            if out.returncode != 0:
                shard = f" (pod ordinal {ordinal})" if ordinal is not None else ""
                why = (out.stderr.strip() or out.stdout.strip()).replace(f.name, os.path.relpath(config_path, ROOT))
                problem(path, f"container {c['name']}{shard}: check-config fails: {why}")
        os.unlink(f.name)


def check_kustomize():
    """Renders the kustomizations when kubectl is there (it is optional: CI does not install it)."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return "kustomize builds not checked (no kubectl)"
    kinds = {}
    for kdir in KDIRS:
        out = subprocess.run([kubectl, "kustomize", kdir], capture_output=True, text=True)
        if out.returncode != 0:
            problem(kdir, f"kubectl kustomize fails: {out.stderr.strip()}")
            continue
        rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
        kinds[kdir] = sorted(d["kind"] for d in rendered if d["kind"] in WORKLOADS)
        cm = [d for d in rendered if d["kind"] == "ConfigMap"]
        if kdir.endswith("sharded") and not (cm and "[[discovery]]" in cm[0]["data"]["config.toml"]):
            problem(kdir, "rendered ConfigMap lacks the sharded overlay's [[discovery]] config")
    want = {KDIRS[0]: ["Deployment"], KDIRS[1]: ["StatefulSet"]}
    for kdir, got in kinds.items():
        if got != want[kdir]:
            problem(kdir, f"kustomize renders workloads {got}, expected {want[kdir]}")
    return "kustomize builds checked"


# What the exporter calls: GetImageSet for polling, the rest for [[discovery]].
IAM_NEEDED = {
    "medical-imaging:GetImageSet",
    "medical-imaging:SearchImageSets",
    "medical-imaging:ListImageSetVersions",
    "medical-imaging:GetDatastore",
    "medical-imaging:ListDatastores",
}
# Actions that have no resource scope and so may (must) be granted on "*".
IAM_UNSCOPED = {"medical-imaging:ListDatastores"}


def check_iam():
    path = os.path.join(DEPLOY, "iam", "policy.json")
    policy = json.load(open(path))
    forbidden = {"medical-imaging:GetImageSetMetadata", "medical-imaging:GetImageFrame"}
    denied, allowed = set(), set()
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if st["Effect"] == "Deny":
            denied.update(actions)
            continue
        allowed.update(actions)
        for a in actions:
            if "*" in a:
                problem(path, f"wildcard action {a}")
            elif a in forbidden:
                problem(path, f"{a} must never be allowed (PHI, moves data back to the frequent tier)")
            elif not re.fullmatch(r"medical-imaging:(Get|List|Search)[A-Za-z]+", a):
                problem(path, f"{a} is not a read-only medical-imaging action")
        if "*" in resources and not set(actions) <= IAM_UNSCOPED:
            problem(path, f"statement {st.get('Sid', '?')} grants {sorted(set(actions) - IAM_UNSCOPED)} on every resource; scope them to datastore ARNs")
    for a in sorted(IAM_NEEDED - allowed):
        problem(path, f"{a} is not allowed, but the exporter calls it")
    for a in sorted(allowed - IAM_NEEDED):
        problem(path, f"{a} is allowed, but the exporter never calls it (least privilege)")
    if not forbidden <= denied:
        problem(path, "GetImageSetMetadata and GetImageFrame should be denied explicitly")


def check_dashboard():
    path = os.path.join(DEPLOY, "grafana", "dashboard.json")
    dash = json.load(open(path))
    names = {v["name"] for v in dash["templating"]["list"]}
    for want in ("datasource", "job", "datastore", "image_set"):
        if want not in names:
            problem(path, f"template variable {want} missing")
    readme = open(os.path.join(ROOT, "README.md")).read()
    exprs = []
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problem(path, f"panel {p['title']!r} does not use the datasource variable")
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"]))
    for title, expr in exprs:
        for metric in re.findall(r"\b(healthimaging_[a-z_]+)", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            if base not in readme:
                problem(path, f"panel {title!r} uses {metric}, which README does not document")
    substituted = [
        e.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$datastore", ".*").replace("$image_set", ".*")
        for _, e in exprs
    ]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(substituted)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
    out = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    if out.returncode != 0:
        problem(path, f"a panel query is not valid PromQL:\n{out.stdout}{out.stderr}")


def check_dockerfile():
    path = os.path.join(ROOT, "Dockerfile")
    text = open(path).read()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for src in line.split()[:-1]:
            if not os.path.exists(os.path.join(ROOT, src)):
                problem(path, f"COPY source {src} does not exist")
    cargo = open(os.path.join(ROOT, "Cargo.toml")).read()
    need = tuple(int(x) for x in re.search(r'rust-version = "([0-9.]+)"', cargo).group(1).split("."))
    have = re.search(r"^FROM rust:([0-9.]+)", text, re.M)
    if not have or tuple(int(x) for x in have.group(1).split(".")) < need[:2]:
        problem(path, f"builder image must be Rust >= {'.'.join(map(str, need))}")
    for needle, why in [
        ("cargo build --release --locked", "the release build command CI mirrors"),
        ("USER nonroot", "a non-root runtime user"),
        ("EXPOSE 9712", "the metrics port"),
        ('ENTRYPOINT ["/usr/local/bin/healthimaging-exporter"]', "the binary as entrypoint"),
    ]:
        if needle not in text:
            problem(path, f"lacks {why} ({needle})")
    if re.search(r"^HEALTHCHECK", text, re.M):
        problem(path, "has a HEALTHCHECK; Kubernetes probes use /healthz and /readyz")
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    if "cargo build --release --locked" not in ci:
        problem(os.path.join(ROOT, ".ci", "run"), "does not run the Dockerfile's build command")


def main():
    args = sys.argv[1:]
    fix = "--fix" in args
    exporter = args[args.index("--exporter") + 1] if "--exporter" in args else None
    docs = load_all_yaml()
    notes = []
    if not problems:
        check_rules(docs, fix)
        check_kubernetes(docs)
        if exporter:
            check_with_exporter(docs, exporter)
        else:
            notes.append("configs not checked with the exporter (no --exporter)")
        notes.append(check_kustomize())
        check_iam()
        check_dashboard()
        check_dockerfile()
    if problems:
        print("deploy/ check failed:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print(f"deploy/ ok: {len(docs)} YAML files; alerts, manifests, IAM policy, dashboard and Dockerfile consistent; {'; '.join(notes)}")


if __name__ == "__main__":
    main()
