#!/usr/bin/env python3
"""Kiln against the builders users would pick instead (Buildah; Docker's BuildKit builder and a
BuildKit daemon where present), on the same machine, in one run, timed with hyperfine: cold,
no-change and one-file-changed rebuilds of each workload in bench/workloads, and a pull of a large
image from a local registry beside `skopeo copy`. Prints medians, min-max and ratios (other / Kiln)
and writes BENCHMARKS.md. Run through bench/run.sh, as root."""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKLOADS = os.path.join(HERE, "workloads")
# 127.0.0.1:PORT of a registry of the run's own (so pushes start cold; it also serves the pull
# workload's image), and its log (the access log tells what each pull fetched); set in main.
PUSH_REG = None
REG_LOG = None
SCENARIOS = ("cold", "no-change", "one-file")
SMOKE_OTHERS = ("steps3", "push", "pull")  # --smoke runs the other builders on these only, to stay short
PULL_REPO = "pullbench"

# Sizes: full is the issue's; smoke keeps the runner working in seconds.
SIZES = {
    "full": {"parallel_mb": 16, "ctx_mb": 1024, "ctx_files": 50000, "cache_mb": 64, "export_mb": 500,
             "pull_layers": 10, "pull_kib": 20480},
    "smoke": {"parallel_mb": 1, "ctx_mb": 2, "ctx_files": 200, "cache_mb": 1, "export_mb": 2,
              "pull_layers": 10, "pull_kib": 64},
}
# Runs per scenario (cold, no-change, one-file) by workload weight.
RUNS = {
    "full": {"light": (3, 10, 5), "heavy": (2, 3, 2), "pull": (5, 5, 0)},
    "smoke": {"light": (1, 1, 1), "heavy": (1, 1, 1), "pull": (1, 1, 0)},
}


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, text=True, capture_output=True, **kw)


def first_line(text):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "no output"
    line = line.removeprefix("error: ").replace(WORKLOADS + "/", "bench/workloads/")
    return line[:160]


def fresh_dir(path):
    """Unmount anything left under path (deepest first), remove it, make it again."""
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for m in sorted((m for m in mounts if m == path or m.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


class Workload:
    def __init__(self, name, wdir, output, weight, gen_args=(), build_args=None, what="", scenarios=SCENARIOS):
        self.name, self.dir, self.output, self.weight = name, wdir, output, weight
        self.gen_args, self.build_args, self.what = list(gen_args), build_args or {}, what
        self.scenarios = scenarios
        self.image = None  # pull: what gen.sh pushed (manifest and layer digests, image.json)

    @property
    def dockerfile(self):
        return os.path.join(WORKLOADS, self.dir, "Dockerfile")


def workloads(s):
    return [
        Workload("parallel", "parallel", "image", "light", build_args={"MB": s["parallel_mb"]},
                 what=f"3 independent stages ({s['parallel_mb']} MB random + {s['parallel_mb']} MB text, gzip -9, 2 000 files each) joined by COPY --from"),
        Workload("steps3", "steps3", "image", "light", what="the 3-step Dockerfile of bench/no-change.sh"),
        Workload("steps20", "steps20", "image", "light", what="20 steps (7 COPY, 7 RUN, 6 ENV); the change reruns steps 15-20"),
        Workload("runs10", "runs10", "image", "light", what="COPY then 10 RUNs; the change reruns all 10"),
        Workload("context", "context", "image", "heavy", gen_args=[s["ctx_mb"], s["ctx_files"]],
                 what=f"COPY . of a {s['ctx_mb']} MB, {s['ctx_files']} file context (first and incremental transfer)"),
        Workload("cachemount", "cachemount", "image", "light", build_args={"MB": s["cache_mb"]},
                 what=f"RUN --mount=type=cache keeping a {s['cache_mb']} MB dependency"),
        Workload("export-gzip", "export", "oci-gzip", "heavy", build_args={"MB": s["export_mb"]},
                 what=f"a {s['export_mb']} MB image exported as an OCI tar, gzip layers"),
        Workload("export-zstd", "export", "oci-zstd", "heavy", build_args={"MB": s["export_mb"]},
                 what=f"the same image, zstd layers"),
        Workload("push", "export", "push", "heavy", build_args={"MB": s["export_mb"]},
                 what=f"the same image pushed to a local registry (cold: a new repository each run)"),
        # Scenario "no-change" of the pull is "layers present": a second build on the same store.
        Workload("pull", "pull", "pull", "pull", gen_args=[s["pull_layers"], s["pull_kib"], PUSH_REG],
                 build_args={"REG": PUSH_REG}, scenarios=("cold", "no-change"),
                 what=f"FROM a {pull_size(s)} image of {s['pull_layers']} gzip layers (random bytes) in a local "
                      f"registry, written as an OCI tar; beside `skopeo copy` to an oci-archive"),
    ]


def pull_size(s):
    return fmt_bytes(s["pull_layers"] * s["pull_kib"] * 1024)


def fmt_bytes(n):
    return f"{n / 1048576:.0f} MiB" if n >= 1048576 else f"{n / 1024:.0f} KiB"


# ---- builders -------------------------------------------------------------------------------


class Builder:
    name = ""
    reason = None  # why it is not available, or None

    def runs(self, w):
        """Whether this builder takes part in w (the pull is Kiln's against skopeo's)."""
        return w.output != "pull"

    def cmd(self, w, ctx, out, scenario):
        """The command for one run of w in scenario, or None where the scenario means nothing."""
        raise NotImplementedError

    def prune(self):
        raise NotImplementedError

    def support(self, w, work):
        """Before measuring: None, or why w cannot run (a cheap probe)."""
        return None

    def check(self, w, out):
        """After a successful build: None, or why the result does not count."""
        return None


def build_args(w, flag="--build-arg "):
    return " ".join(f"{flag}{k}={v}" for k, v in w.build_args.items())


def buildkit_output(w, dest, builder, scenario, push_opts=""):
    """The --output of w as Kiln and buildctl both spell it (BuildKit's exporter attributes)."""
    return {
        "image": f"type=oci,dest={dest}",
        "oci-gzip": f"type=oci,dest={dest}",
        "pull": f"type=oci,dest={dest}",
        "oci-zstd": f"type=oci,dest={dest},compression=zstd",
        "push": f"type=image,name={push_name(builder, scenario)},push=true{push_opts}",
    }[w.output]


class Kiln(Builder):
    name = "kiln"

    def __init__(self, binary, work):
        self.bin, self.work, self.root = binary, work, os.path.join(work, "roots/kiln")
        self.cold = ("Kiln daemonless: a fresh empty --root before each run (the base image is "
                     "pulled again from the local registry; no cache, no blobs)")
        v = sh(f"{shlex.quote(binary)} --version").stdout.strip()
        commit = sh(f"git -C {REPO} rev-parse --short HEAD").stdout.strip()
        dirty = " + uncommitted changes" if sh(f"git -C {REPO} status --porcelain -- crates").stdout.strip() else ""
        self.version = f"{v} (commit {commit}{dirty})" if commit else v

    def runs(self, w):
        return True

    def cmd(self, w, ctx, out, scenario):
        o = buildkit_output(w, f"{out}/kiln.tar", "kiln", scenario)
        return f"{self.bin} build --root {self.root} --progress quiet -f {w.dockerfile} {build_args(w)} -o {o} {ctx}"

    def prune(self):
        fresh_dir(self.root)

    def build_once(self, name, dockerfile, output):
        """One build of a throwaway Dockerfile on a throwaway store (removed afterwards)."""
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        open(f"{d}/Dockerfile", "w").write(dockerfile)
        root = os.path.join(self.work, "roots", name)
        r = sh(f"{self.bin} build --root {root} --progress quiet -o {output.format(dir=d)} {d}")
        fresh_dir(root)
        return r

    def support(self, w, work):
        if w.output != "oci-zstd":
            return None
        # A one-RUN probe: is the layer Kiln makes zstd-compressed when asked?
        r = self.build_once("zstd-probe", "FROM localhost:5000/busybox\nRUN echo probe >/probe\n",
                            "type=oci,dest={dir}/out.tar,compression=zstd")
        if r.returncode != 0:
            return f"not supported yet ({first_line(r.stderr)})"
        last = layer_types(f"{work}/zstd-probe/out.tar")[-1]
        if "zstd" not in last:
            return f"not supported yet (compression=zstd is accepted, but the new layer is {last})"
        return None

    def check(self, w, out):
        return check_pulled(w, f"{out}/kiln.tar") if w.output == "pull" else None


class Skopeo(Builder):
    """`skopeo copy` of the pull workload's image to an oci-archive: the floor a pull could reach."""
    name = "skopeo"

    def __init__(self):
        self.version = first_line(sh("skopeo --version").stdout)
        self.cold = ("skopeo copy: no store, so every copy is cold (every blob downloaded and a new "
                     "oci-archive tar written); pull workload only")

    def runs(self, w):
        return w.output == "pull"

    def cmd(self, w, ctx, out, scenario):
        if scenario != "cold":
            return None
        # Like Kiln's output, the tar of the previous run is overwritten.
        return (f"skopeo copy -q --src-tls-verify=false docker://{PUSH_REG}/{PULL_REPO}:latest "
                f"oci-archive:{out}/skopeo.tar:latest")

    def prune(self):
        pass

    def check(self, w, out):
        return check_pulled(w, f"{out}/skopeo.tar")


class Buildah(Builder):
    name = "buildah"

    def __init__(self, work, may_install):
        self.root = os.path.join(work, "roots/buildah")
        self.cold = ("Buildah: fresh empty --root/--runroot before each run (overlay storage, "
                     "base image pulled again; builds with --layers so steps are cached)")
        if not shutil.which("buildah") and may_install:
            print("installing Debian's buildah (apt-get)", flush=True)
            r = sh("DEBIAN_FRONTEND=noninteractive apt-get install -y buildah")
            if r.returncode != 0:
                self.reason = f"not installed (apt-get install buildah failed: {first_line(r.stderr)})"
        if not shutil.which("buildah"):
            self.reason = self.reason or "not installed (the smoke pass does not install it)"
            self.version = "-"
            return
        self.version = sh("buildah --version").stdout.strip()
        self.g = f"buildah --root {self.root}/storage --runroot {self.root}/run --storage-driver overlay"

    def cmd(self, w, ctx, out, scenario):
        tag = f"localhost/kiln-bench/{w.dir}:latest"
        build = (f"{self.g} build --runtime runc --isolation oci --layers --tls-verify=false -q "
                 f"-f {w.dockerfile} {build_args(w)} -t {tag} {ctx} >/dev/null")
        if w.output in ("oci-gzip", "oci-zstd"):
            zstd = " --compression-format zstd" if w.output == "oci-zstd" else ""
            return f"{build} && rm -f {out}/buildah.tar && {self.g} push -q{zstd} {tag} oci-archive:{out}/buildah.tar:latest"
        if w.output == "push":
            return f"{build} && {self.g} push -q --tls-verify=false {tag} docker://{push_name('buildah', scenario)}"
        return build

    def prune(self):
        fresh_dir(self.root)

    def check(self, w, out):
        if w.output == "oci-zstd" and not all("zstd" in t for t in layer_types(f"{out}/buildah.tar")):
            return "zstd layers not produced"
        return None


class DockerBuildKit(Builder):
    """Docker's BuildKit builder (DOCKER_BUILDKIT=1), only where a Docker engine answers."""
    name = "docker"

    def __init__(self):
        self.cold = "Docker: `docker builder prune -af` and the bench images removed before each run"
        self.version = "-"
        if not shutil.which("docker"):
            self.reason = "no docker CLI"
            return
        r = sh("docker version --format '{{.Server.Version}}'")
        if r.returncode != 0:
            self.reason = f"no Docker engine running (docker CLI present; `docker version`: {first_line(r.stderr)})"
            self.version = first_line(sh("docker --version").stdout)
            return
        self.version = f"Docker engine {r.stdout.strip()}"

    def cmd(self, w, ctx, out, scenario):
        tag = f"kiln-bench/{w.dir}:latest"
        build = f"DOCKER_BUILDKIT=1 docker build -q -f {w.dockerfile} {build_args(w)} -t {tag} {ctx} >/dev/null"
        if w.output in ("oci-gzip", "oci-zstd"):
            return f"{build} && docker save -o {out}/docker.tar {tag}"
        if w.output == "push":
            name = push_name("docker", scenario)
            return f"{build} && docker tag {tag} {name} && docker push -q {name} >/dev/null"
        return build

    def prune(self):
        sh("docker builder prune -af >/dev/null; docker image ls -q 'kiln-bench/*' | xargs -r docker rmi -f >/dev/null")

    def check(self, w, out):
        return "docker save writes Docker's own tar format" if w.output == "oci-zstd" else None


class BuildKitDaemon(Builder):
    """A BuildKit daemon named by BUILDKIT_HOST, driven with buildctl."""
    name = "buildkitd"

    def __init__(self):
        self.cold = "BuildKit daemon: `buildctl prune --all` before each run"
        self.version = "-"
        host = os.environ.get("BUILDKIT_HOST")
        if not host:
            self.reason = "BUILDKIT_HOST is not set (no BuildKit daemon named)"
            return
        if not shutil.which("buildctl"):
            self.reason = f"BUILDKIT_HOST={host} but no buildctl on PATH"
            return
        r = sh("buildctl debug info")
        if r.returncode != 0:
            self.reason = f"buildctl cannot reach {host}: {first_line(r.stderr)}"
            return
        self.version = first_line(r.stdout) + " / " + first_line(sh("buildctl --version").stdout)

    def cmd(self, w, ctx, out, scenario):
        o = buildkit_output(w, f"{out}/buildkitd.tar", "buildkitd", scenario, push_opts=",registry.insecure=true")
        return (f"buildctl build --frontend dockerfile.v0 --local context={ctx} "
                f"--local dockerfile={os.path.dirname(w.dockerfile)} {build_args(w, '--opt build-arg:')} --output {o}")

    def prune(self):
        sh("buildctl prune --all >/dev/null")


BUILDERS = {"docker": DockerBuildKit, "buildkitd": BuildKitDaemon, "skopeo": Skopeo}  # for `_prune NAME`


def push_name(builder, scenario):
    # Cold pushes go to a new repository each run, so no blob is there yet; the others reuse one.
    if scenario == "cold":
        return f"{PUSH_REG}/kiln-bench/{builder}-$(date +%s%N):latest"
    return f"{PUSH_REG}/kiln-bench/{builder}:latest"


def oci_manifest(tar_path):
    """The image manifest of an OCI layout tar (its index's first entry), and the tar's members."""
    with tarfile.open(tar_path) as t:
        index = json.load(t.extractfile("index.json"))
        m = index["manifests"][0]["digest"].split(":")[1]
        return json.load(t.extractfile(f"blobs/sha256/{m}")), {i.name: i.size for i in t.getmembers()}


def layer_types(tar_path):
    return [layer["mediaType"] for layer in oci_manifest(tar_path)[0]["layers"]]


def check_pulled(w, tar_path):
    """None if the tar holds the pushed image's layer blobs, byte for byte (same digests and sizes:
    downloaded and written, not recompressed); else why the run does not count."""
    manifest, members = oci_manifest(tar_path)
    got = [layer["digest"] for layer in manifest["layers"]]
    if got != w.image["layers"]:
        return f"the output's layers are not the registry's ({len(got)} layers, {got[:1]}…)"
    for layer in manifest["layers"]:
        if members.get("blobs/sha256/" + layer["digest"].split(":")[1]) != layer["size"]:
            return f"layer blob {layer['digest']} missing from the output or of the wrong size"
    return None


# ---- measuring ------------------------------------------------------------------------------


class Runner:
    def __init__(self, args, work):
        self.args, self.work, self.log = args, work, open(os.path.join(work, "hyperfine.log"), "w")
        self.me = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))}"

    def hyperfine(self, cmd, runs, warmup=0, prepare=None):
        out = os.path.join(self.work, "h.json")
        argv = ["hyperfine", "--style", "basic", "--runs", str(runs), "--warmup", str(warmup),
                "--export-json", out]
        if prepare:
            argv += ["--prepare", prepare]
        r = subprocess.run(argv + [cmd], stdout=self.log, stderr=self.log)
        self.log.flush()
        if r.returncode != 0:
            return None
        res = json.load(open(out))["results"][0]
        return {k: res[k] for k in ("median", "min", "max", "mean", "user", "system")} | {"runs": len(res["times"])}

    def peak_rss_kb(self, cmd):
        p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, _, ru = os.wait4(p.pid, 0)
        return ru.ru_maxrss

    def measure(self, b, w, ctx, out):
        """Each of w's scenarios with b (cold, no-change and one-file-changed rebuilds; the pull has
        cold and layers present, its no-change): {scenario: result | reason}."""
        runs = dict(zip(SCENARIOS, RUNS[self.args.mode][w.weight]))
        if self.args.runs:
            runs = dict.fromkeys(SCENARIOS, self.args.runs)
        fresh = f"{self.me} _fresh {shlex.quote(b.root)}" if hasattr(b, "root") else f"{self.me} _prune {b.name}"
        why = b.support(w, self.work)
        if why:
            return dict.fromkeys(w.scenarios, why)
        b.prune()
        cold = b.cmd(w, ctx, out, "cold")
        r = self.hyperfine(cold, runs["cold"], prepare=fresh)
        if r is None:
            b.prune()
            why = first_line(sh(cold).stderr)
            return dict.fromkeys(w.scenarios, f"not supported yet ({why})" if b.name == "kiln" else f"failed ({why})")
        bad = b.check(w, out)
        if bad:
            b.prune()
            return dict.fromkeys(w.scenarios, bad)
        res = {"cold": r}
        if w.output == "pull":
            # Memory while the whole image streams in (an empty store again); leaves it filled.
            b.prune()
            res["rss_cold_kb"] = self.peak_rss_kb(cold)
        nochange = b.cmd(w, ctx, out, "no-change")
        if nochange is None:
            res["no-change"] = "no store: every copy is cold"
        elif "no-change" in w.scenarios:
            res["no-change"] = self.hyperfine(nochange, runs["no-change"], warmup=1) or "failed"
            res["rss_kb"] = self.peak_rss_kb(nochange)
            if b.name == "kiln" and w.name in ("steps3", "steps20"):
                # Without an output: the solver's part of a no-change rebuild, for the per-vertex figure.
                res["solve-only"] = self.hyperfine(nochange.split(" -o ")[0] + " " + ctx, runs["no-change"], warmup=1)
        if "one-file" in w.scenarios:
            change = f"date +%s%N >{shlex.quote(ctx)}/changed.txt"
            res["one-file"] = self.hyperfine(b.cmd(w, ctx, out, "one-file"), runs["one-file"], prepare=change) or "failed"
        b.prune()
        return res


def fmt_ms(sec):
    return f"{sec * 1000:.1f} ms" if sec < 1 else f"{sec:.2f} s"


def cell(r):
    if isinstance(r, dict):
        return f"{fmt_ms(r['median'])} [{fmt_ms(r['min'])}–{fmt_ms(r['max'])}]"
    return r or "-"


def ratio(other, kiln):
    if isinstance(other, dict) and isinstance(kiln, dict) and kiln["median"] > 0:
        return f"{other['median'] / kiln['median']:.2f}×"
    return "-"


def machine():
    lscpu = sh("lscpu").stdout
    keep = ("Architecture", "CPU(s):", "Model name", "Thread(s) per core", "Core(s) per socket",
            "Socket(s)", "CPU max MHz", "L2 cache", "L3 cache", "Hypervisor vendor", "Virtualization type")
    lines = [line for line in lscpu.splitlines() if line.strip().startswith(keep)]
    mem = next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1]
    fs = sh(f"df -hT {shlex.quote(os.path.dirname(HERE))} | tail -1").stdout.split()
    return {
        "lscpu": "\n".join(lines),
        "kernel": platform.release(),
        "memory": f"{int(mem) / 1048576:.1f} GiB",
        "disk": f"{fs[1]} on {fs[0]}" if len(fs) > 1 else "?",
    }


# ---- baselines: what the promises compare against -------------------------------------------


def baselines(run, work, sizes, ctx_dir, kiln):
    """runc start, plain cp of the context, gzip/sha256 of export-sized data."""
    b = {}
    bundle = os.path.join(work, "bundle")
    fresh_dir(bundle)
    r = kiln.build_once("basedf", "FROM localhost:5000/busybox\n", f"type=local,dest={bundle}/rootfs")
    if r.returncode == 0:
        spec = json.loads(sh(f"cd {bundle} && runc spec --rootless=false && cat config.json").stdout or "{}")
        if spec:
            spec["process"]["terminal"] = False
            spec["process"]["args"] = ["/bin/true"]
            json.dump(spec, open(os.path.join(bundle, "config.json"), "w"))
            b["runc"] = run.hyperfine(f"runc --root {work}/runc run -b {bundle} kiln-bench-runc >/dev/null",
                                      10 if run.args.mode == "full" else 1, warmup=1)
    if ctx_dir:
        dst = os.path.join(work, "cp-dst")
        b["cp"] = run.hyperfine(f"cp -a {ctx_dir} {dst}", 2 if run.args.mode == "full" else 1,
                                prepare=f"rm -rf {dst}")
        shutil.rmtree(dst, ignore_errors=True)
    data = os.path.join(work, "export-data")
    mb = sizes["export_mb"]
    sh(f"dd if=/dev/urandom of={data} bs=1M count={mb // 2} 2>/dev/null && "
       f"yes 'kiln bench: compressible text 0123456789 abcdefghijklmnopqrstuvwxyz' | head -c {(mb - mb // 2) * 1048576} >>{data}")
    n = 3 if run.args.mode == "full" else 1
    b["gzip"] = run.hyperfine(f"gzip -6 -c {data} >/dev/null", n)
    b["sha256"] = run.hyperfine(f"sha256sum {data} >/dev/null", n)
    if shutil.which("zstd"):
        b["zstd"] = run.hyperfine(f"zstd -3 -q -c {data} >/dev/null", n)
    os.unlink(data)
    return b


# ---- the run --------------------------------------------------------------------------------


def ensure_registries(work):
    """The base image on 127.0.0.1:5000 (as the conformance runner serves it) and an empty
    registry of this run's own on PUSH_REG. Returns the pushed registry's process."""
    sh(f"{REPO}/conformance/tools/run-cases.sh /bin/false 01-single-stage-app")
    if sh("skopeo inspect --tls-verify=false docker://localhost:5000/busybox:latest").returncode != 0:
        sys.exit("bench: no localhost:5000/busybox (conformance/tools/run-cases.sh could not start the registry)")
    global PUSH_REG, REG_LOG
    with __import__("socket").socket() as s:  # a free port; the registry binds it right after
        s.bind(("127.0.0.1", 0))
        PUSH_REG = f"127.0.0.1:{s.getsockname()[1]}"
    d = os.path.join(work, "push-registry")
    os.makedirs(d)
    REG_LOG = f"{d}/log"
    open(f"{d}/config.yml", "w").write(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\nhttp:\n  addr: {PUSH_REG}\n")
    p = subprocess.Popen(["docker-registry", "serve", f"{d}/config.yml"], stdout=open(f"{d}/log", "w"),
                         stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(100):
        if sh(f"curl -fsS http://{PUSH_REG}/v2/").returncode == 0:
            return p
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    sys.exit(f"bench: docker-registry did not start on {PUSH_REG}: {open(f'{d}/log').read()[-300:]}")


def main():
    ap = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="one iteration, tiny sizes, no installs (CI)")
    ap.add_argument("--kiln", default=os.path.join(REPO, "target/release/kiln"), help="the kiln binary")
    ap.add_argument("--out", help="where to write the report (default: BENCHMARKS.md, or WORK/BENCHMARKS.md with --smoke)")
    ap.add_argument("--only", help="comma-separated workloads (default: all)")
    ap.add_argument("--builders", default="kiln,buildah,docker,buildkitd,skopeo",
                    help="comma-separated builders (skopeo: the pull workload's comparison)")
    ap.add_argument("--runs", type=int, help="runs per scenario for every workload (overrides the defaults)")
    ap.add_argument("--ctx-mb", type=int, help="context workload size in MB (full 1024, smoke 2)")
    ap.add_argument("--ctx-files", type=int, help="context workload files (full 50000, smoke 200)")
    ap.add_argument("--export-mb", type=int, help="export/push image size in MB (full 500, smoke 2)")
    ap.add_argument("--parallel-mb", type=int, help="random MB per parallel stage (full 16, smoke 1)")
    ap.add_argument("--pull-layers", type=int, help="layers of the pull workload's image (full 10, smoke 10)")
    ap.add_argument("--pull-kib", type=int, help="KiB per layer of the pull workload's image (full 20480, smoke 64)")
    ap.add_argument("--work", help="scratch directory (default: a new one under /var/tmp, removed at the end)")
    ap.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cmd[:1] == ["_fresh"]:  # hyperfine --prepare helper
        fresh_dir(args.cmd[1])
        return
    if args.cmd[:1] == ["_prune"]:
        BUILDERS[args.cmd[1]]().prune()
        return
    args.mode = "smoke" if args.smoke else "full"
    if os.geteuid() != 0:
        sys.exit("bench: run as root (builds mount overlays and run runc)")
    for tool in ("hyperfine", "runc", "docker-registry", "skopeo", "curl"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing (Debian package: {tool})")
    kiln_bin = os.path.realpath(args.kiln)
    if not os.access(kiln_bin, os.X_OK):
        sys.exit(f"bench: no kiln binary at {args.kiln} (cargo build --release -p kiln)")

    sizes = dict(SIZES[args.mode])
    for k in ("ctx_mb", "ctx_files", "export_mb", "parallel_mb", "pull_layers", "pull_kib"):
        if getattr(args, k) is not None:
            sizes[k] = getattr(args, k)
    work = args.work or __import__("tempfile").mkdtemp(prefix="kiln-bench.", dir="/var/tmp")
    os.makedirs(work, exist_ok=True)
    out_path = args.out or (os.path.join(work, "BENCHMARKS.md") if args.smoke else os.path.join(REPO, "BENCHMARKS.md"))
    registry = None
    try:
        registry = ensure_registries(work)
        report = run_all(args, work, sizes, kiln_bin)
        open(out_path, "w").write(report)
        if args.smoke and not args.out and not args.work:
            print("\n" + report)  # the scratch directory goes away with the file
        else:
            print(f"\nwrote {out_path}")
    finally:
        if registry:
            registry.terminate()
            registry.wait()
        if not args.work:
            fresh_dir(work)
            os.rmdir(work)


def run_all(args, work, sizes, kiln_bin):
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = sh("uptime").stdout.strip()
    t0 = time.monotonic()
    run = Runner(args, work)
    wanted = args.builders.split(",")
    kiln = Kiln(kiln_bin, work)
    builders = [kiln]
    others = []
    if "buildah" in wanted:
        others.append(Buildah(work, may_install=not args.smoke))
    if "docker" in wanted:
        others.append(DockerBuildKit())
    if "buildkitd" in wanted:
        others.append(BuildKitDaemon())
    if "skopeo" in wanted:
        others.append(Skopeo())
    builders += [b for b in others if not b.reason]

    print(f"mode {args.mode}; sizes {sizes}; work {work}")
    print("builders:")
    for b in [kiln] + others:
        print(f"  {b.name:10} {b.version}" + (f"  — skipped: {b.reason}" if b.reason else ""))

    ws = workloads(sizes)
    if args.only:
        names = args.only.split(",")
        unknown = set(names) - {w.name for w in ws}
        if unknown:
            sys.exit(f"bench: unknown workloads {sorted(unknown)}; known: {[w.name for w in ws]}")
        ws = [w for w in ws if w.name in names]

    results = {}
    ctx_dirs = {}
    for w in ws:
        ctx = ctx_dirs.get(w.dir)
        if not ctx:
            ctx = os.path.join(work, "ctx", w.dir)
            t = time.monotonic()
            r = sh(" ".join([shlex.quote(os.path.join(WORKLOADS, w.dir, "gen.sh")), ctx] + [str(a) for a in w.gen_args]))
            if r.returncode != 0:
                sys.exit(f"bench: {w.dir}/gen.sh failed: {r.stderr[-400:]}")
            ctx_dirs[w.dir] = ctx
            print(f"\n[{w.dir}] context made in {time.monotonic() - t:.1f} s: {sh(f'du -sh {ctx}').stdout.split()[0]}, "
                  f"{sh(f'find {ctx} -type f | wc -l').stdout.strip()} files")
        if w.output == "pull":
            w.image = json.load(open(os.path.join(ctx, "image.json")))
        out = os.path.join(work, "out")
        os.makedirs(out, exist_ok=True)
        print(f"\n== {w.name}: {w.what}")
        results[w.name] = {}
        for b in builders:
            if not b.runs(w) or (args.smoke and b is not kiln and w.name not in SMOKE_OTHERS):
                continue
            r = run.measure(b, w, ctx, out)
            results[w.name][b.name] = r
            if not isinstance(r["cold"], dict):
                print(f"  {b.name:10} {r['cold']}", flush=True)
                continue
            for s in w.scenarios:
                line = f"  {b.name:10} {scenario_name(w, s):14} {cell(r[s])}"
                if b is not kiln:
                    line += f"   ratio {ratio(r[s], results[w.name]['kiln'][s])}"
                print(line, flush=True)
        if w.output == "pull":
            results[w.name]["wire"] = pull_wire(run, kiln, w, ctx, out)
            for k, v in results[w.name]["wire"].items():
                print(f"  {k:24} {v if isinstance(v, (str, int)) else cell(v) if 'median' in v else wire_text(v)}")
        for f in os.listdir(out):
            os.unlink(os.path.join(out, f))

    print("\n== baselines")
    base = baselines(run, work, sizes, ctx_dirs.get("context"), kiln)
    for k, v in base.items():
        print(f"  {k:10} {cell(v)}")
    elapsed = time.monotonic() - t0
    load_end = sh("uptime").stdout.strip()
    return report(args, sizes, kiln, others, ws, results, base, started, load_start, load_end, elapsed)


# ---- the pull workload: what went over the wire ---------------------------------------------


def scenario_name(w, s):
    return "layers present" if w.output == "pull" and s == "no-change" else s


def pull_wire(run, kiln, w, ctx, out):
    """One cold and one layers-present Kiln build and one skopeo copy, each with what it asked the
    registry (from the registry's log); Kiln's store after the cold pull; and the floor: curl
    downloading the layer blobs one after the other over one connection."""
    x = {}
    kiln.prune()
    x["kiln cold"] = registry_requests(kiln.cmd(w, ctx, out, "cold"), w)
    x["kiln store after cold"] = sh(f"du -sb {kiln.root}").stdout.split()[0] + " bytes"
    x["kiln layers present"] = registry_requests(kiln.cmd(w, ctx, out, "no-change"), w)
    kiln.prune()
    x["skopeo"] = registry_requests(Skopeo().cmd(w, ctx, out, "cold"), w)
    gets = " ".join(f"-o {out}/curl-{i} http://{PUSH_REG}/v2/{PULL_REPO}/blobs/{d}"
                    for i, d in enumerate(w.image["layers"]))
    x["curl"] = run.hyperfine(f"curl -fsS {gets}", RUNS[run.args.mode][w.weight][0],
                              prepare=f"rm -f {out}/curl-*") or "failed"
    return x


def registry_requests(cmd, w):
    """Runs cmd once; counts the GETs it made to the run's registry, from the registry's log:
    manifests, the image's layer blobs (and their bytes), other blobs (the config), and at most
    how many layer downloads were under way at once."""
    time.sleep(0.2)  # the registry logs a request after answering it
    before = os.path.getsize(REG_LOG)
    r = sh(cmd)
    time.sleep(0.5)
    with open(REG_LOG, errors="replace") as f:
        f.seek(before)
        lines = [line for line in f if 'msg="response completed"' in line]
    n = {"ok": r.returncode == 0, "manifests": 0, "layers": 0, "layer_bytes": 0, "other_blobs": 0}
    spans = []
    layers = set(w.image["layers"])
    for line in lines:
        kv = {k: v.strip('"') for k, v in re.findall(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S+)', line)}
        if kv.get("http.request.method") != "GET" or f"/{PULL_REPO}/" not in kv.get("http.request.uri", ""):
            continue
        uri = kv["http.request.uri"]
        if "/manifests/" in uri:
            n["manifests"] += 1
        elif uri.rsplit("/", 1)[-1] in layers:
            n["layers"] += 1
            n["layer_bytes"] += int(kv.get("http.response.written", 0))
            end = log_time(kv["time"])
            spans.append((end - go_duration(kv.get("http.response.duration", "0s")), end))
        elif "/blobs/" in uri:
            n["other_blobs"] += 1
    n["at_once"] = max_overlap(spans)
    return n


def log_time(t):
    """Seconds of a logrus timestamp (2026-11-23T11:32:49.909759215Z), for differences only."""
    m = re.match(r"(\d+-\d+-\d+T\d+:\d+:\d+)(?:\.(\d+))?", t)
    whole = datetime.datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return whole.timestamp() + (float("0." + m[2]) if m[2] else 0.0)


def go_duration(d):
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
    return sum(float(v) * units[u] for v, u in re.findall(r"([\d.]+)(ms|µs|us|ns|h|m|s)", d))


def max_overlap(spans):
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    most = cur = 0
    for _, step in events:
        cur += step
        most = max(most, cur)
    return most


def wire_text(n):
    if not n["ok"]:
        return "failed"
    layers = f"{n['layers']} layer blob GET{'s' * (n['layers'] != 1)}"
    if n["layers"]:
        layers += f" ({fmt_bytes(n['layer_bytes'])}, at most {n['at_once']} at once)"
    return (f"{n['manifests']} manifest GET{'s' * (n['manifests'] != 1)}, {layers}, "
            f"{n['other_blobs']} other blob GET{'s' * (n['other_blobs'] != 1)} (the config)")


# ---- the report -----------------------------------------------------------------------------


def report(args, sizes, kiln, others, ws, results, base, started, load_start, load_end, elapsed):
    m = machine()
    builds = [w for w in ws if w.output != "pull"]  # the pull has its own table
    present = [b for b in others if not b.reason and any(b.runs(w) for w in builds)]
    k = lambda w, s: results.get(w, {}).get("kiln", {}).get(s)  # noqa: E731
    med = lambda r: r["median"] if isinstance(r, dict) else None  # noqa: E731
    L = []
    L.append("# Benchmarks\n")
    L.append(f"Written by `bench/run.sh{' --smoke' if args.smoke else ''}` on {started:%Y-%m-%d %H:%M} UTC "
             f"({elapsed / 60:.1f} min). Run it again to refresh this file (as root, after "
             "`cargo build --release -p kiln`); `bench/run.sh --help` lists the options.\n")
    L.append("**These figures are noisy**: the machine is shared (other engineers compile on it while the "
             "benchmarks run; load below). Read medians, not single runs; hyperfine's min–max shows the spread.\n")
    L.append("## Machine\n")
    L.append("```\n" + m["lscpu"] + f"\nKernel:              {m['kernel']}\nMemory:              {m['memory']}\n"
             f"Disk:                {m['disk']}\nLoad at start:       {load_start}\nLoad at end:         {load_end}\n```\n")
    L.append("## Builders\n")
    L.append("| builder | version | cold means |\n|---|---|---|")
    L.append(f"| Kiln (daemonless `kiln build`) | {kiln.version} | {kiln.cold} |")
    L.append("| Kiln through kilnd | - | not available: kilnd does not exist yet |")
    for b in others:
        L.append(f"| {b.name} | {b.version} | {b.cold if not b.reason else 'not run: ' + b.reason} |")
    L.append("\nEvery builder builds the same Dockerfile from the same generated context; page caches are warm "
             "(the machine is shared, so caches are not dropped). Kiln writes each image as an OCI tar "
             "(`-o type=oci,dest=…`: it has no image store); Buildah commits it to its own store (`build -t`), "
             "and the export workloads add `buildah push` to an `oci-archive:` tar or a registry. Buildah runs "
             "with `--runtime runc --isolation oci --layers` on overlay storage; its default pull policy "
             "does not ask the registry again for a base it has, where Kiln resolves each FROM every build. "
             "A one-file change rewrites `changed.txt` in the context before each run. Ratio = other / Kiln "
             "(above 1: Kiln is faster).\n")
    L.append("## Speed promises (../shared/design.md, issue 3)\n")
    L.append("| promise | command | last figure (Kiln, median) | verdict |\n|---|---|---|---|")

    def verdict(v, limit):
        return "-" if v is None else ("met" if v <= limit else "**not met**")

    n20 = med(k("steps20", "no-change"))
    L.append(f"| No-change rebuild of a 20-step Dockerfile under 50 ms end to end, daemonless or via kilnd | "
             f"`bench/run.sh --only steps20` | {fmt_ms(n20) if n20 else '-'} daemonless; kilnd: not available | {verdict(n20, 0.05)} |")
    n3 = med(k("steps3", "no-change"))
    L.append(f"| (issue 3) No-change rebuild of a 3-step Dockerfile ≤ 20 ms, daemonless | "
             f"`bench/no-change.sh` (30 runs) or `bench/run.sh --only steps3` | {fmt_ms(n3) if n3 else '-'} | {verdict(n3, 0.02)} |")
    s20, s3 = med(results.get("steps20", {}).get("kiln", {}).get("solve-only")), med(results.get("steps3", {}).get("kiln", {}).get("solve-only"))
    if s20 and s3:
        per = (s20 - s3) / 17
        L.append(f"| Solver overhead per cached vertex under 100 µs | `bench/run.sh --only steps3,steps20`: "
                 f"(no-change 20-step − no-change 3-step) / 17 steps, both without an output "
                 f"({fmt_ms(s20)}, {fmt_ms(s3)}; includes the frontend and checksums of 5 more COPY sources) | "
                 f"{per * 1e6:.0f} µs | {verdict(per, 100e-6)} |")
    r1, r0, rc = med(k("runs10", "one-file")), med(k("runs10", "no-change")), med(base.get("runc"))
    if r1 and r0 and rc:
        per = (r1 - r0) / 10 - rc
        L.append(f"| Per executed RUN under 10 ms beyond the runtime's own start | `bench/run.sh --only runs10`: "
                 f"(one-file − no-change) / 10 RUNs − bare `runc run` ({fmt_ms(rc)}) (includes committing each layer) | "
                 f"{fmt_ms(per)} | {verdict(per, 0.01)} |")
    c0, cp = med(k("context", "cold")), med(base.get("cp"))
    if c0 and cp:
        mbps = sizes["ctx_mb"] / c0
        L.append(f"| Build context: first transfer near disk speed | `bench/run.sh --only context` (cold) against `cp -a` of the context | "
                 f"{fmt_ms(c0)} ({mbps:.0f} MB/s, whole cold build) vs `cp -a` {fmt_ms(cp)} ({sizes['ctx_mb'] / cp:.0f} MB/s) | "
                 f"{c0 / cp:.1f}× cp |")
    c1, cn = med(k("context", "one-file")), med(k("context", "no-change"))
    if c1 and cn:
        L.append(f"| Build context: after a one-file change, time proportional to the changed bytes | "
                 f"`bench/run.sh --only context` (one-file, no-change) | one-file {fmt_ms(c1)}, no-change {fmt_ms(cn)} "
                 f"for {sizes['ctx_mb']} MB / {sizes['ctx_files']} files | "
                 f"{'**not met**: a no-change rebuild costs ' + f'{cn / cp:.1f}' + '× a cp of the context' if cp and cn > 0.5 * cp else 'see figures'} |")
    e = k("export-gzip", "cold")
    if isinstance(e, dict):
        cpu = (e["user"] + e["system"]) / e["mean"]
        g = base.get("gzip")
        L.append(f"| Layer export: gzip on all cores; sha256 at hardware speed | `bench/run.sh --only export-gzip` (cold) | "
                 f"{fmt_ms(e['median'])} for {sizes['export_mb']} MB, CPU use {cpu:.2f} cores on average "
                 f"(single-core `gzip -6`: {cell(g)}; `sha256sum`: {cell(base.get('sha256'))}) | "
                 f"{'met' if cpu > 1.5 else '**not met**: one core'} |")
    z = k("export-zstd", "cold")
    L.append(f"| zstd available | `bench/run.sh --only export-zstd` | {cell(z)} | {'met' if isinstance(z, dict) else '**not yet**'} |")
    L.append("| kilnd idle memory under 20 MB; memory does not grow with context size | - | not available: kilnd does not "
             f"exist yet (daemonless peak RSS below, column `peak RSS`) | not measurable |\n")

    L.append(f"## Results\n")
    L.append("Median [min–max] of hyperfine runs; end to end, process start to image written.\n")
    if builds:  # (none when only the pull runs)
        L.append("| workload | scenario | " + " | ".join(["Kiln"] + [b.name for b in present] + [f"{b.name} / Kiln" for b in present]) + " |")
        L.append("|---|---|" + "---|" * (1 + 2 * len(present)))
        for w in builds:
            for s in SCENARIOS:
                rk = k(w.name, s)
                def c(r):
                    return cell(r) if s == "cold" or isinstance(r, dict) else ("〃" if r else "-")
                row = [w.name if s == "cold" else "", s, c(rk)]
                row += [c(results[w.name].get(b.name, {}).get(s)) for b in present]
                row += [ratio(results[w.name].get(b.name, {}).get(s), rk) for b in present]
                L.append("| " + " | ".join(row) + " |")
        L.append("")
    L.append("| workload | what | runs (cold, no-change, one-file) | peak RSS of a no-change build: " +
             ", ".join(["Kiln"] + [b.name for b in present]) + " |\n|---|---|---|---|")
    for w in ws:
        rss = []
        for b in [kiln] + present:
            v = results[w.name].get(b.name, {}).get("rss_kb")
            rss.append(f"{v / 1024:.0f} MB" if v else "-")
        runs = [str(results[w.name]["kiln"][s]["runs"]) if isinstance(results[w.name]["kiln"].get(s), dict) else "-" for s in SCENARIOS]
        L.append(f"| {w.name} | {w.what} | {', '.join(runs)} | {', '.join(rss)} |")
    L.append("\n- kilnd memory (idle, and after 250 builds): not available — kilnd does not exist yet.")
    L.append("- Builders not run: " + ("; ".join(f"{b.name}: {b.reason}" for b in others if b.reason) or "none") + ".")
    for w in ws:
        if w.output == "pull":
            L += pull_report(w, sizes, results[w.name])
    L.append("\n## Baselines on the same machine\n")
    L.append("| what | command | median [min–max] |\n|---|---|---|")
    names = {"runc": "bare `runc run` of busybox `/bin/true`", "cp": "`cp -a` of the context workload's directory",
             "gzip": f"`gzip -6` of {sizes['export_mb']} MB export-like data, one core",
             "sha256": f"`sha256sum` of the same {sizes['export_mb']} MB", "zstd": f"`zstd -3` of the same {sizes['export_mb']} MB"}
    for key, v in base.items():
        L.append(f"| {key} | {names[key]} | {cell(v)} |")
    L.append(f"\nSizes of this run: {json.dumps(sizes)}.\n")
    return "\n".join(L) + "\n"


def pull_report(w, sizes, res):
    k, sk, wire = res.get("kiln", {}), res.get("skopeo", {}), res.get("wire", {})
    n, layer = sizes["pull_layers"], fmt_bytes(sizes["pull_kib"] * 1024)
    L = ["\n## Pull from a registry\n"]
    L.append(f"`bench/run.sh --only pull`: a Dockerfile of only `FROM <registry>/{PULL_REPO}:latest`, an image of {n} "
             f"gzip layers of {layer} of seeded random bytes each ({pull_size(sizes)}, incompressible; made offline by "
             "bench/workloads/pull/mkimage.py and pushed with skopeo to the run's own docker-registry on 127.0.0.1, "
             "plain http), written out as an OCI tar. Kiln: `kiln build -o type=oci,dest=…`; cold = a fresh empty "
             "store (--root) before each run, layers present = more builds on the store a cold build filled. "
             "skopeo: `skopeo copy --src-tls-verify=false docker://… oci-archive:…` (no store: every copy is cold). "
             "Each tool's output was checked to hold the registry's layer blobs, same digests and sizes. "
             "Ratio = skopeo / Kiln (above 1: Kiln is faster).\n")
    L.append("| scenario | Kiln | skopeo copy | skopeo / Kiln |\n|---|---|---|---|")
    for s in w.scenarios:
        L.append(f"| {scenario_name(w, s)} | {cell(k.get(s))} | {cell(sk.get(s))} | {ratio(sk.get(s), k.get(s))} |")
    L.append("\nWhat went over the wire (the registry's log, one more run of each):\n")
    for key in ("kiln cold", "kiln layers present", "skopeo"):
        v = wire.get(key)
        L.append(f"- {key}: {wire_text(v) if isinstance(v, dict) else v or '-'}")
    store = wire.get("kiln store after cold", "").split()
    if store:
        L.append(f"- Kiln's store after a cold pull: {fmt_bytes(int(store[0]))} (the image's layer blobs are "
                 f"{fmt_bytes(w.image['bytes'])})")
    L.append(f"- Floor: `curl` downloading the {n} layer blobs to files, one after the other on one connection: "
             f"{cell(wire.get('curl'))}")
    rss = [f"{name} {v['rss_cold_kb'] / 1024:.0f} MB" for name, v in (("Kiln", k), ("skopeo", sk))
           if isinstance(v, dict) and v.get("rss_cold_kb")]
    L.append(f"- Peak RSS of a cold pull: {', '.join(rss) or '-'}")
    return L


if __name__ == "__main__":
    main()
