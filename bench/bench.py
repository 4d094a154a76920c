#!/usr/bin/env python3
"""Kiln against the builders users would pick instead (Buildah; Docker's BuildKit builder and a
BuildKit daemon where present), on the same machine, in one run, timed with hyperfine: cold,
no-change and one-file-changed rebuilds of each workload in bench/workloads. Prints medians,
min-max and ratios (other / Kiln) and writes BENCHMARKS.md. Run through bench/run.sh, as root."""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKLOADS = os.path.join(HERE, "workloads")
PUSH_REG = None  # 127.0.0.1:PORT of a registry of the run's own (so pushes start cold); set in main
SCENARIOS = ("cold", "no-change", "one-file")
SMOKE_OTHERS = ("steps3", "push")  # --smoke runs the other builders on these only, to stay short

# Sizes: full is the issue's; smoke keeps the runner working in seconds.
SIZES = {
    "full": {"parallel_mb": 16, "ctx_mb": 1024, "ctx_files": 50000, "cache_mb": 64, "export_mb": 500},
    "smoke": {"parallel_mb": 1, "ctx_mb": 2, "ctx_files": 200, "cache_mb": 1, "export_mb": 2},
}
# Runs per scenario (cold, no-change, one-file) by workload weight.
RUNS = {
    "full": {"light": (3, 10, 5), "heavy": (2, 3, 2)},
    "smoke": {"light": (1, 1, 1), "heavy": (1, 1, 1)},
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
    def __init__(self, name, wdir, output, weight, gen_args=(), build_args=None, what=""):
        self.name, self.dir, self.output, self.weight = name, wdir, output, weight
        self.gen_args, self.build_args, self.what = list(gen_args), build_args or {}, what

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
    ]


# ---- builders -------------------------------------------------------------------------------


class Builder:
    name = ""
    reason = None  # why it is not available, or None

    def cmd(self, w, ctx, out, scenario):
        raise NotImplementedError

    def prune(self):
        raise NotImplementedError

    def support(self, w, work):
        """Before measuring: None, or why w cannot run (a cheap probe)."""
        return None

    def check(self, w, out):
        """After a successful build: None, or why the result does not count."""
        return None


class Kiln(Builder):
    name = "kiln"

    def __init__(self, binary, work):
        self.bin, self.root = binary, os.path.join(work, "roots/kiln")
        self.cold = ("Kiln daemonless: a fresh empty --root before each run (the base image is "
                     "pulled again from the local registry; no cache, no blobs)")
        v = sh(f"{shlex.quote(binary)} --version").stdout.strip()
        commit = sh(f"git -C {REPO} rev-parse --short HEAD").stdout.strip()
        dirty = " + uncommitted changes" if sh(f"git -C {REPO} status --porcelain -- crates").stdout.strip() else ""
        self.version = f"{v} (commit {commit}{dirty})" if commit else v

    def cmd(self, w, ctx, out, scenario):
        args = " ".join(f"--build-arg {k}={v}" for k, v in w.build_args.items())
        o = {
            "image": f"type=oci,dest={out}/kiln.tar",
            "oci-gzip": f"type=oci,dest={out}/kiln.tar",
            "oci-zstd": f"type=oci,dest={out}/kiln.tar,compression=zstd",
            "push": f"type=image,name={push_name('kiln', scenario)},push=true",
        }[w.output]
        return f"{self.bin} build --root {self.root} --progress quiet -f {w.dockerfile} {args} -o {o} {ctx}"

    def prune(self):
        fresh_dir(self.root)

    def support(self, w, work):
        if w.output != "oci-zstd":
            return None
        # A one-RUN probe: is the layer Kiln makes zstd-compressed when asked?
        probe = os.path.join(work, "zstd-probe")
        os.makedirs(probe, exist_ok=True)
        open(f"{probe}/Dockerfile", "w").write("FROM localhost:5000/busybox\nRUN echo probe >/probe\n")
        root = os.path.join(work, "roots/zstd-probe")
        r = sh(f"{self.bin} build --root {root} --progress quiet -o type=oci,dest={probe}/out.tar,compression=zstd {probe}")
        fresh_dir(root)
        if r.returncode != 0:
            return f"not supported yet ({first_line(r.stderr)})"
        last = layer_types(f"{probe}/out.tar")[-1]
        if "zstd" not in last:
            return f"not supported yet (compression=zstd is accepted, but the new layer is {last})"
        return None


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
        args = " ".join(f"--build-arg {k}={v}" for k, v in w.build_args.items())
        tag = f"localhost/kiln-bench/{w.dir}:latest"
        build = (f"{self.g} build --runtime runc --isolation oci --layers --tls-verify=false -q "
                 f"-f {w.dockerfile} {args} -t {tag} {ctx} >/dev/null")
        if w.output == "oci-gzip":
            return f"{build} && rm -f {out}/buildah.tar && {self.g} push -q {tag} oci-archive:{out}/buildah.tar:latest"
        if w.output == "oci-zstd":
            return (f"{build} && rm -f {out}/buildah.tar && {self.g} push -q --compression-format zstd "
                    f"{tag} oci-archive:{out}/buildah.tar:latest")
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
        args = " ".join(f"--build-arg {k}={v}" for k, v in w.build_args.items())
        tag = f"kiln-bench/{w.dir}:latest"
        build = f"DOCKER_BUILDKIT=1 docker build -q -f {w.dockerfile} {args} -t {tag} {ctx} >/dev/null"
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
        opts = " ".join(f"--opt build-arg:{k}={v}" for k, v in w.build_args.items())
        o = {
            "image": f"type=oci,dest={out}/buildkitd.tar",
            "oci-gzip": f"type=oci,dest={out}/buildkitd.tar",
            "oci-zstd": f"type=oci,dest={out}/buildkitd.tar,compression=zstd",
            "push": f"type=image,name={push_name('buildkitd', scenario)},push=true,registry.insecure=true",
        }[w.output]
        return (f"buildctl build --frontend dockerfile.v0 --local context={ctx} "
                f"--local dockerfile={os.path.dirname(w.dockerfile)} {opts} --output {o}")

    def prune(self):
        sh("buildctl prune --all >/dev/null")


def push_name(builder, scenario):
    # Cold pushes go to a new repository each run, so no blob is there yet; the others reuse one.
    if scenario == "cold":
        return f"{PUSH_REG}/kiln-bench/{builder}-$(date +%s%N):latest"
    return f"{PUSH_REG}/kiln-bench/{builder}:latest"


def layer_types(tar_path):
    with tarfile.open(tar_path) as t:
        index = json.load(t.extractfile("index.json"))
        m = index["manifests"][0]["digest"].split(":")[1]
        return [layer["mediaType"] for layer in json.load(t.extractfile(f"blobs/sha256/{m}"))["layers"]]


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
        """Cold, no-change and one-file-changed rebuilds of w with b: {scenario: result | reason}."""
        runs = RUNS[self.args.mode][w.weight]
        if self.args.runs:
            runs = (self.args.runs,) * 3
        res = {}
        fresh = f"{self.me} _fresh {shlex.quote(b.root)}" if hasattr(b, "root") else f"{self.me} _prune {b.name}"
        why = b.support(w, self.work)
        if why:
            return {s: why for s in SCENARIOS}
        b.prune()
        cold = b.cmd(w, ctx, out, "cold")
        r = self.hyperfine(cold, runs[0], prepare=fresh)
        if r is None:
            b.prune()
            why = first_line(sh(cold).stderr)
            return {s: f"not supported yet ({why})" if b.name == "kiln" else f"failed ({why})" for s in SCENARIOS}
        bad = b.check(w, out)
        if bad:
            b.prune()
            return {s: bad for s in SCENARIOS}
        res["cold"] = r
        nochange = b.cmd(w, ctx, out, "no-change")
        res["no-change"] = self.hyperfine(nochange, runs[1], warmup=1) or "failed"
        res["rss_kb"] = self.peak_rss_kb(nochange)
        if b.name == "kiln" and w.name in ("steps3", "steps20"):
            # Without an output: the solver's part of a no-change rebuild, for the per-vertex figure.
            res["solve-only"] = self.hyperfine(nochange.split(" -o ")[0] + " " + ctx, runs[1], warmup=1)
        change = f"date +%s%N >{shlex.quote(ctx)}/changed.txt"
        res["one-file"] = self.hyperfine(b.cmd(w, ctx, out, "one-file"), runs[2], prepare=change) or "failed"
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
    dfdir = os.path.join(work, "basedf")
    os.makedirs(dfdir, exist_ok=True)
    open(os.path.join(dfdir, "Dockerfile"), "w").write("FROM localhost:5000/busybox\n")
    r = sh(f"{kiln.bin} build --root {work}/roots/base --progress quiet -o type=local,dest={bundle}/rootfs {dfdir}")
    if r.returncode == 0:
        spec = json.loads(sh(f"cd {bundle} && runc spec --rootless=false && cat config.json").stdout or "{}")
        if spec:
            spec["process"]["terminal"] = False
            spec["process"]["args"] = ["/bin/true"]
            json.dump(spec, open(os.path.join(bundle, "config.json"), "w"))
            b["runc"] = run.hyperfine(f"runc --root {work}/runc run -b {bundle} kiln-bench-runc >/dev/null",
                                      10 if run.args.mode == "full" else 1, warmup=1)
    fresh_dir(f"{work}/roots/base")
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
    global PUSH_REG
    with __import__("socket").socket() as s:  # a free port; the registry binds it right after
        s.bind(("127.0.0.1", 0))
        PUSH_REG = f"127.0.0.1:{s.getsockname()[1]}"
    d = os.path.join(work, "push-registry")
    os.makedirs(d)
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
    ap.add_argument("--builders", default="kiln,buildah,docker,buildkitd", help="comma-separated builders")
    ap.add_argument("--runs", type=int, help="runs per scenario for every workload (overrides the defaults)")
    ap.add_argument("--ctx-mb", type=int, help="context workload size in MB (full 1024, smoke 2)")
    ap.add_argument("--ctx-files", type=int, help="context workload files (full 50000, smoke 200)")
    ap.add_argument("--export-mb", type=int, help="export/push image size in MB (full 500, smoke 2)")
    ap.add_argument("--parallel-mb", type=int, help="random MB per parallel stage (full 16, smoke 1)")
    ap.add_argument("--work", help="scratch directory (default: a new one under /var/tmp, removed at the end)")
    ap.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cmd[:1] == ["_fresh"]:  # hyperfine --prepare helper
        fresh_dir(args.cmd[1])
        return
    if args.cmd[:1] == ["_prune"]:
        {"docker": DockerBuildKit, "buildkitd": BuildKitDaemon}[args.cmd[1]]().prune()
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
    for k in ("ctx_mb", "ctx_files", "export_mb", "parallel_mb"):
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
        out = os.path.join(work, "out")
        os.makedirs(out, exist_ok=True)
        print(f"\n== {w.name}: {w.what}")
        results[w.name] = {}
        for b in builders:
            if args.smoke and b is not kiln and w.name not in SMOKE_OTHERS:
                continue
            r = run.measure(b, w, ctx, out)
            results[w.name][b.name] = r
            if not isinstance(r["cold"], dict):
                print(f"  {b.name:10} {r['cold']}", flush=True)
                continue
            for s in SCENARIOS:
                line = f"  {b.name:10} {s:10} {cell(r[s])}"
                if b is not kiln:
                    line += f"   ratio {ratio(r[s], results[w.name]['kiln'][s])}"
                print(line, flush=True)
        for f in os.listdir(out):
            os.unlink(os.path.join(out, f))

    print("\n== baselines")
    base = baselines(run, work, sizes, ctx_dirs.get("context"), kiln)
    for k, v in base.items():
        print(f"  {k:10} {cell(v)}")
    elapsed = time.monotonic() - t0
    load_end = sh("uptime").stdout.strip()
    return report(args, sizes, kiln, others, ws, results, base, started, load_start, load_end, elapsed)


# ---- the report -----------------------------------------------------------------------------


def report(args, sizes, kiln, others, ws, results, base, started, load_start, load_end, elapsed):
    m = machine()
    present = [b for b in others if not b.reason]
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
    L.append("| workload | scenario | " + " | ".join(["Kiln"] + [b.name for b in present] + [f"{b.name} / Kiln" for b in present]) + " |")
    L.append("|---|---|" + "---|" * (1 + 2 * len(present)))
    for w in ws:
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
    L.append("\n## Baselines on the same machine\n")
    L.append("| what | command | median [min–max] |\n|---|---|---|")
    names = {"runc": "bare `runc run` of busybox `/bin/true`", "cp": "`cp -a` of the context workload's directory",
             "gzip": f"`gzip -6` of {sizes['export_mb']} MB export-like data, one core",
             "sha256": f"`sha256sum` of the same {sizes['export_mb']} MB", "zstd": f"`zstd -3` of the same {sizes['export_mb']} MB"}
    for key, v in base.items():
        L.append(f"| {key} | {names[key]} | {cell(v)} |")
    L.append(f"\nSizes of this run: {json.dumps(sizes)}.\n")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
