#!/usr/bin/env python3
"""Checks deployments/ against the binaries: kustomize renders every overlay; every flag, env var,
subcommand and path the containers use is one the binaries know (from their --help) or a fixed
contract (config-manager's env, the container toolkit's); ConfigMap contents pass
`nvidia-device-plugin validate`; the Helm templates agree with the static manifests.

Usage: check_deployments.py REPO PLUGIN MPSD [CONFIG_MANAGER]
Exit 0 ok, 1 failure, 77 skipped (no kubectl or no python3-yaml)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("SKIP: python3-yaml is missing (scripts/setup.sh installs it)")
    sys.exit(77)

OVERLAYS = ["whole-gpus", "time-slicing", "per-container-mps"]
# config-manager's environment (upstream's names); its binary may not be built.
CONFIG_MANAGER_ENV = {
    "ONESHOT", "NODE_NAME", "NODE_LABEL", "CONFIG_FILE_SRCDIR", "CONFIG_FILE_DST",
    "DEFAULT_CONFIG", "FALLBACK_STRATEGIES", "SEND_SIGNAL", "SIGNAL", "PROCESS_TO_SIGNAL"}
TOOLKIT_ENV = {"NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"}
NODE_LABEL = "nvidia.com/device-plugin.config"
# Helm values that map to upstream flags: they must default to null (set only when the user does).
HELM_FLAG_VALUES = ["migStrategy", "failOnInitError", "deviceListStrategy", "deviceIDStrategy",
                    "passDeviceSpecs", "nvidiaDriverRoot"]

# `{{ .Values.a.b }}`, optionally `| quote` or `| default "x"`: replaced by the default value.
VALUES_REF = r"\{\{-? \.Values\.([\w.]+)(?: \| quote| \| default \"([^\"]*)\")? -?\}\}"

errors = []


def fail(msg):
    errors.append(msg)


class Binary:
    """What a binary's --help documents: flags (with aliases), env vars, subcommands, defaults."""

    def __init__(self, name, path):
        self.name, self.path = name, path
        self.help = subprocess.run([path, "--help"], capture_output=True, text=True,
                                   check=True).stdout
        self.flags, self.env, self.subcommands, self.defaults = set(), set(), set(), {}
        in_sub = False
        flag = None  # the flag a wrapped description line belongs to
        for line in self.help.splitlines():
            if line.startswith("Subcommands:"):
                in_sub = True
                continue
            m = re.match(r"\s+(?:-\w,)?(--[\w-]+)", line)
            if in_sub and (m := re.match(r"\s+([\w-]+)\s", line)):
                self.subcommands.add(m.group(1))
            elif m:
                flag = m.group(1)
                self.flags.add(flag)
            elif not line.startswith(" "):
                flag = None
            if flag and (d := re.search(r"\(default ([^;)\s]+)", line)):
                self.defaults.setdefault(flag, d.group(1))
            if m := re.search(r"\[alias ([^\]]+)\]", line):
                self.flags.update(a.strip() for a in m.group(1).split(","))
            for m in re.finditer(r"\[env ([^\]]+)\]|\(Env:(\w+)\)", line):
                self.env.update(e.strip() for e in (m.group(1) or m.group(2)).split(","))
        if not self.flags or not self.env:
            fail(f"{name}: could not read flags/env from --help")

    def default(self, flag):
        if flag not in self.defaults:
            fail(f"{self.name}: no {flag} with a default in --help")
        return self.defaults.get(flag, f"<no default for {flag}>")


def kubectl():
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path:
        print("SKIP: kubectl not found (scripts/setup.sh installs Debian's kubernetes-client)")
        sys.exit(77)
    return path


def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}


def value(c, name):
    return env_of(c).get(name, {}).get("value")


def check_container(where, c, bins, init):
    cmd = c.get("command", []) + c.get("args", [])
    binary = cmd[0] if cmd else None
    if binary not in ("nvidia-device-plugin", "mps-control-daemon", "config-manager"):
        return fail(f"{where}: command {cmd} is not one of our binaries")
    b = bins.get(binary)
    for arg in cmd[1:]:
        if arg.startswith("--"):
            if b and arg.split("=")[0] not in b.flags:
                fail(f"{where}: flag {arg} is not in `{binary} --help`")
        elif b and arg not in b.subcommands:
            fail(f"{where}: subcommand {arg} is not in `{binary} --help`")
    for name, e in env_of(c).items():
        known = CONFIG_MANAGER_ENV if binary == "config-manager" else b.env
        if name in known or name in TOOLKIT_ENV:
            continue
        fail(f"{where}: env {name} is not documented by {binary}")
    gpu_facing = binary != "config-manager" and "mount-shm" not in cmd
    if gpu_facing and (value(c, "NVIDIA_VISIBLE_DEVICES") != "all"
                       or value(c, "NVIDIA_DRIVER_CAPABILITIES") != "compute,utility"):
        fail(f"{where}: needs NVIDIA_VISIBLE_DEVICES=all, NVIDIA_DRIVER_CAPABILITIES=compute,utility")
    if binary == "config-manager":
        missing = CONFIG_MANAGER_ENV - set(env_of(c))
        if missing:
            fail(f"{where}: config-manager without {sorted(missing)}")
        if value(c, "ONESHOT") != ("true" if init else "false"):
            fail(f"{where}: ONESHOT must be {'true' if init else 'false'}")
        if value(c, "SEND_SIGNAL") != ("false" if init else "true"):
            fail(f"{where}: SEND_SIGNAL must be {'false' if init else 'true'}")
        if value(c, "NODE_LABEL") != NODE_LABEL:
            fail(f"{where}: NODE_LABEL must be {NODE_LABEL}")
        ref = env_of(c).get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {})
        if ref.get("fieldPath") != "spec.nodeName":
            fail(f"{where}: NODE_NAME must come from spec.nodeName")
    return binary


def mps_root(c, bins, binary):
    return value(c, "MPS_ROOT") or bins[binary].default("--mps-root")


def check_pod(where, pod, bins, configmaps):
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    inits = pod.get("initContainers", [])
    mains = [(c, check_container(f"{where}/{c['name']}", c, bins, False))
             for c in pod["containers"]]
    for c in inits:
        check_container(f"{where}/{c['name']}", c, bins, True)
    daemons = {b: c for c, b in mains if b != "config-manager"}
    if len(daemons) != 1:
        return fail(f"{where}: expected one plugin or MPS daemon container, got {list(daemons)}")
    (daemon, dc), = daemons.items()
    plugin = bins["nvidia-device-plugin"]
    # hostPaths: mounted where the binaries expect them.
    for c in inits + pod["containers"]:
        cw = f"{where}/{c['name']}"
        for m in c.get("volumeMounts", []):
            v = vols.get(m["name"])
            if v is None:
                fail(f"{cw}: mounts unknown volume {m['name']}")
            elif "hostPath" in v:
                host, ctr = v["hostPath"]["path"], m["mountPath"]
                if ctr == plugin.default("--driver-root-ctr-path"):
                    ok = host == (value(c, "NVIDIA_DRIVER_ROOT") or plugin.default("--driver-root"))
                elif ctr == "/dev/shm":
                    ok = host == mps_root(dc, bins, daemon) + "/shm"
                else:
                    ok = host == ctr
                if not ok:
                    fail(f"{cw}: hostPath {host} mounted at {ctr}")
    mounts = {m["mountPath"]: vols.get(m["name"], {}) for m in dc.get("volumeMounts", [])}
    sock_dir = os.path.dirname(plugin.default("--kubelet-socket"))
    root = mps_root(dc, bins, daemon)
    if daemon == "nvidia-device-plugin" and "hostPath" not in mounts.get(sock_dir, {}):
        fail(f"{where}: the plugin must mount hostPath {sock_dir}")
    pod_resources_dir = os.path.dirname(plugin.default("--pod-resources-socket"))
    if daemon == "nvidia-device-plugin" and "hostPath" not in mounts.get(pod_resources_dir, {}):
        fail(f"{where}: the plugin must mount hostPath {pod_resources_dir} (capacity shaping)")
    if daemon == "mps-control-daemon":
        if "hostPath" not in mounts.get(root, {}) or "hostPath" not in mounts.get("/dev/shm", {}):
            fail(f"{where}: the MPS daemon must mount hostPath {root} and {root}/shm at /dev/shm")
        shm = [c for c in inits if "mount-shm" in c.get("command", [])]
        if not shm or not any(m["mountPath"] == mps_root(shm[0], bins, "mps-control-daemon")
                              and m.get("mountPropagation") == "Bidirectional"
                              for m in shm[0].get("volumeMounts", [])):
            fail(f"{where}: needs a mount-shm init container with {root} mounted Bidirectional")
        if not pod.get("hostPID"):
            fail(f"{where}: the MPS daemon needs hostPID")
    # The config-manager pattern: init + sidecar feed CONFIG_FILE through a shared emptyDir.
    managers = [c for c in inits + pod["containers"] if c["command"][0] == "config-manager"]
    if len(managers) != 2:
        fail(f"{where}: needs a config-manager init container and sidecar")
    if pod.get("shareProcessNamespace") == pod.get("hostPID", False):
        fail(f"{where}: exactly one of shareProcessNamespace, hostPID (the sidecar signals)")
    for cm in managers:
        cw = f"{where}/{cm['name']}"
        if value(cm, "PROCESS_TO_SIGNAL") != daemon:
            fail(f"{cw}: PROCESS_TO_SIGNAL must be {daemon}")
        if value(cm, "CONFIG_FILE_DST") != value(dc, "CONFIG_FILE"):
            fail(f"{cw}: CONFIG_FILE_DST differs from the {daemon}'s CONFIG_FILE")
        cmounts = {m["mountPath"]: m["name"] for m in cm.get("volumeMounts", [])}
        dst_dir = os.path.dirname(value(cm, "CONFIG_FILE_DST") or "")
        shared = cmounts.get(dst_dir)
        if not shared or "emptyDir" not in vols.get(shared, {}) or mounts.get(dst_dir) != vols[shared]:
            fail(f"{cw}: {dst_dir} must be an emptyDir shared with {daemon}")
        src = vols.get(cmounts.get(value(cm, "CONFIG_FILE_SRCDIR")), {}).get("configMap", {})
        data = configmaps.get(src.get("name"))
        if data is None:
            fail(f"{cw}: CONFIG_FILE_SRCDIR is not a mounted ConfigMap of this output")
        elif value(cm, "DEFAULT_CONFIG") not in data:
            fail(f"{cw}: DEFAULT_CONFIG {value(cm, 'DEFAULT_CONFIG')} is not in the ConfigMap")
    return daemon, dc


def validate_configs(where, data, plugin, env):
    env = {k: v for k, v in env.items() if k != "CONFIG_FILE"}
    for name, text in data.items():
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(text)
            f.flush()
            r = subprocess.run([plugin.path, "validate", f"--config-file={f.name}"],
                               capture_output=True, text=True, env={**os.environ, **env})
            if r.returncode != 0:
                fail(f"{where}: config {name} is invalid:\n{r.stdout}{r.stderr}")


def check_overlay(repo, kc, name, bins):
    path = os.path.join(repo, "deployments/static/overlays", name)
    r = subprocess.run([kc, "kustomize", path], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"kubectl kustomize {path}: {r.stderr}")
        return []
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    daemons = {}
    for d in docs:
        if d["kind"] == "DaemonSet":
            where = f"{name}/{d['metadata']['name']}"
            got = check_pod(where, d["spec"]["template"]["spec"], bins, configmaps)
            if got:
                daemons[got[0]] = got[1]
    plugin = daemons.get("nvidia-device-plugin")
    if plugin is None:
        return fail(f"{name}: no plugin DaemonSet") or docs
    for cm, data in configmaps.items():
        validate_configs(f"{name}/{cm}", data, bins["nvidia-device-plugin"],
                         {k: e["value"] for k, e in env_of(plugin).items() if "value" in e})
        uses_mps = any((yaml.safe_load(t) or {}).get("sharing", {}).get("mps") for t in data.values())
        if uses_mps != ("mps-control-daemon" in daemons):
            fail(f"{name}: an MPS config needs the MPS DaemonSet (and only then)")
        root = mps_root(plugin, bins, "nvidia-device-plugin")
        if uses_mps and root not in {m["mountPath"] for m in plugin.get("volumeMounts", [])}:
            fail(f"{name}: the plugin must mount the MPS root {root} under MPS")
    return docs


def static_sets(docs):
    """Env names, literal env values, mount paths and host paths of the rendered manifests."""
    envs, values, paths = set(), {}, set()
    for d in docs:
        if d["kind"] != "DaemonSet":
            continue
        pod = d["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            for e in c.get("env", []):
                envs.add(e["name"])
                if "value" in e:
                    values.setdefault(e["name"], set()).add(e["value"])
            paths.update(m["mountPath"] for m in c.get("volumeMounts", []))
        paths.update(v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v)
    return envs, values, paths


def check_helm(repo, bins, static_docs):
    chart = os.path.join(repo, "deployments/helm/nvdp")
    values = yaml.safe_load(open(os.path.join(chart, "values.yaml")))
    for key in HELM_FLAG_VALUES:
        if values.get(key) is not None:
            fail(f"helm values.yaml: {key} must default to null (it would override the config file)")

    def lookup(m):  # `{{ .Values.a.b [| quote | default "x"] }}` -> its default; text only
        v = values
        for part in m.group(1).split("."):
            v = v.get(part) if isinstance(v, dict) else None
        v = v if v is not None else m.group(2)
        return str(v) if v is not None else m.group(0)

    known_env = CONFIG_MANAGER_ENV | TOOLKIT_ENV | set().union(*(b.env for b in bins.values()))
    known_flags = set().union(*(b.flags for b in bins.values()))
    s_envs, s_values, s_paths = static_sets(static_docs)
    h_envs, h_paths = set(), set()
    tdir = os.path.join(chart, "templates")
    for fname in sorted(os.listdir(tdir)):
        lines = open(os.path.join(tdir, fname)).read().splitlines()
        for i, line in enumerate(lines):
            where = f"helm {fname}:{i + 1}"
            text = re.sub(VALUES_REF, lookup, line)
            if m := re.match(r"\s*- name: ([A-Z][A-Z0-9_]*)\s*$", line):
                name = m.group(1)
                h_envs.add(name)
                if name not in known_env:
                    fail(f"{where}: env {name} is not documented by any binary")
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                if vm := re.search(r"\.Values\.(\w+)", nxt):
                    if vm.group(1) in HELM_FLAG_VALUES + ["gdrcopyEnabled", "gdsEnabled",
                                                          "mofedEnabled", "deviceDiscoveryStrategy"]:
                        if f".Values.{vm.group(1)})" not in lines[i - 1] or "if" not in lines[i - 1]:
                            fail(f"{where}: {name} must be set only `if` .Values.{vm.group(1)} is")
                elif lit := re.match(r"\s*value: \"?([^\"{]*)\"?\s*$", nxt):
                    if name in s_values and lit.group(1) not in s_values[name]:
                        fail(f"{where}: {name}={lit.group(1)}, the static manifests say "
                             f"{sorted(s_values[name])}")
            for flag in re.findall(r"[\"\s](--[a-z][\w-]*)", line):
                if flag not in known_flags:
                    fail(f"{where}: flag {flag} is not in any binary's --help")
            if m := re.search(r"command: \[(.*)\]", line):
                cmd = [a.strip().strip('"') for a in m.group(1).split(",")]
                b = bins.get(cmd[0])
                if cmd[0] != "config-manager" and (b is None or not set(cmd[1:]) <= b.subcommands):
                    fail(f"{where}: command {cmd} is not a binary and its subcommands")
            if m := re.match(r"\s*(?:mountPath|path): (\S+)\s*$", text):
                if "{{" not in m.group(1):
                    h_paths.add(m.group(1))
    for name in sorted(s_envs - h_envs):
        fail(f"helm: env {name} of the static manifests is missing from the templates")
    for p in sorted(s_paths ^ h_paths):
        fail(f"helm: path {p} is in only one of the chart ({p in h_paths}) and the static manifests")


def main():
    repo, plugin, mpsd = sys.argv[1:4]
    bins = {"nvidia-device-plugin": Binary("nvidia-device-plugin", plugin),
            "mps-control-daemon": Binary("mps-control-daemon", mpsd)}
    if len(sys.argv) > 4 and os.access(sys.argv[4], os.X_OK):
        cm_help = subprocess.run([sys.argv[4], "--help"], capture_output=True, text=True)
        for name in sorted(CONFIG_MANAGER_ENV):
            if not re.search(rf"\b{name}\b", cm_help.stdout + cm_help.stderr):
                fail(f"config-manager --help does not mention {name}")
    else:
        print("note: no config-manager binary; its env is checked against upstream's names only")
    kc = kubectl()
    docs = {o: check_overlay(repo, kc, o, bins) for o in OVERLAYS}
    check_helm(repo, bins, docs["per-container-mps"])
    for e in dict.fromkeys(errors):
        print("FAIL:", e)
    print(f"{len(errors)} problem(s); checked overlays {', '.join(OVERLAYS)} and the Helm chart")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
