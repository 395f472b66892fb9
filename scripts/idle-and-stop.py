#!/usr/bin/env python3
"""idle-and-stop.py: idle wake-ups and SIGTERM-to-exit time of nvidia-device-plugin.

Runs the plugin on the fake 8x A100 node (fake NVML, kubelet stand-in, no PodResources, no MPS),
lets the stand-in register it and admit one container, then
  1. sums the third field of /proc/<pid>/task/*/schedstat (times each thread was put on a CPU,
     i.e. wake-ups of a mostly idle thread) over IDLE seconds, per thread and in total;
  2. RUNS times: starts it afresh, waits PRE seconds after registration, sends SIGTERM and times
     the exit (blocking waitpid; Popen.wait with a timeout polls in up to 50 ms steps).
Usage: scripts/idle-and-stop.py [--build DIR] [--idle S] [--runs N] [--pre S]
"""
import argparse
import glob
import os
import signal
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--build", default=os.path.join(ROOT, "build"))
ap.add_argument("--idle", type=float, default=10)
ap.add_argument("--runs", type=int, default=9)
ap.add_argument("--pre", type=float, default=1.0)
args = ap.parse_args()
nodes = os.path.join(ROOT, "tests/fakes/nvml/nodes")


def start(tmp):
    env = dict(os.environ,
               FAKE_NVML_NODE=nodes + "/a100-sxm4-40gb-x8.json",
               FAKE_NVML_EVENTS=tmp + "/events",
               NVDP_SYSFS_ROOT=nodes + "/a100-sysfs")
    os.makedirs(tmp + "/dp")
    kubelet = subprocess.Popen([args.build + "/bin/nvdp-kubelet-standin", "--dir", tmp + "/dp",
                                "--timeout", "30"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    with open(tmp + "/plugin.log", "w") as log:
        plugin = subprocess.Popen(
            [args.build + "/bin/nvidia-device-plugin", "--kubelet-socket=" + tmp + "/dp/kubelet.sock",
             "--nvml-library=" + args.build + "/lib/fake-nvml/libnvidia-ml.so.1",
             "--pod-resources-socket=", "--mps-root="], env=env, stdout=log, stderr=log)
    if kubelet.wait(timeout=30) != 0:
        raise SystemExit("the kubelet stand-in saw no registration; see " + tmp + "/plugin.log")
    return plugin


def schedstat(pid):
    per_thread = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            count = int(open(task + "/schedstat").read().split()[2])
            name = open(task + "/comm").read().strip()
        except OSError:
            continue
        per_thread[f"{name} ({os.path.basename(task)})"] = count
    return per_thread


with tempfile.TemporaryDirectory() as tmp:
    plugin = start(tmp)
    time.sleep(2)
    before = schedstat(plugin.pid)
    time.sleep(args.idle)
    after = schedstat(plugin.pid)
    total = sum(after.values()) - sum(before.get(k, 0) for k in after)
    print(f"idle wake-ups over {args.idle:g} s: {total} ({total / args.idle:.2f}/s)")
    for name in sorted(after):
        if after[name] - before.get(name, 0):
            print(f"  {name}: {after[name] - before.get(name, 0)}")
    plugin.send_signal(signal.SIGTERM)
    plugin.wait()

times = []
for _ in range(args.runs):
    with tempfile.TemporaryDirectory() as tmp:
        plugin = start(tmp)
        time.sleep(args.pre)
        t0 = time.monotonic()
        plugin.send_signal(signal.SIGTERM)
        status = plugin.wait()
        times.append((time.monotonic() - t0) * 1000)
        if status != 0:
            print(f"exit status {status}")
if times:
    print(f"SIGTERM -> exit, {args.pre:g} s after registering (ms): " +
          " ".join(f"{t:.1f}" for t in times) + f"; median {statistics.median(times):.1f}")
