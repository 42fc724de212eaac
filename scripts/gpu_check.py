"""`make gpu-check` (scripts/gpu_check.sh): measure the GPU path on a machine with one NVIDIA GPU, in one run.

Needs Linux, Python 3.11-3.13 and a CUDA build of torch 2.11.0 already installed (as on the offline H100 machines,
../shared/notes/ENVIRONMENT.md). Every step is a command of the repository, run with a time limit, its output kept in
`{out}/logs/`; `{out}/report.md` and `{out}/report.json` are rewritten after each step (GPU, driver, versions, every
figure with the command that produced it), so a step that fails or a run that is stopped keeps what was measured.

Order: the training benchmark first (`python -m trainer.bench` imports only torch, torchaudio, tqdm and yaml), then
the install of what is missing into `{out}/site` (from the package registry, or with `--wheels DIR` only from that
folder: no network; a DALI wheel split into `*.whl.part*` files is joined first), then a small synthetic corpus, the
GPU test tier (`pytest -m gpu`), the loader benchmark (DALI on the GPU vs DALI on the CPU) and a short training on
the shards vs on random tensors (data wait).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


class Check:
    def __init__(self, out: Path):
        self.out = out
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self.site = out / "site"
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(self.site)]))
        self.report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "steps": [],
                             "figures": []}

    def run(self, name: str, cmd: list[str], timeout: int) -> bool:
        """One step: `cmd` from the repository root, output in logs/{name}.log; recorded in the report."""
        print(f"gpu-check: {name}: {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        log = self.out / "logs" / f"{name}.log"
        with open(log, "w") as fh:
            try:
                rc = subprocess.run(cmd, cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                    timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        seconds = round(time.perf_counter() - t0, 1)
        tail = log.read_text(errors="replace").splitlines()[-3:]
        self.report["steps"].append({"step": name, "command": " ".join(cmd), "rc": rc, "seconds": seconds,
                                     "log": str(log.relative_to(self.out)), "tail": tail})
        print(f"gpu-check: {name}: rc {rc} in {seconds} s", flush=True)
        self.write()
        return rc == 0

    def figure(self, what: str, value, unit: str, command: str) -> None:
        self.report["figures"].append({"what": what, "value": value, "unit": unit, "command": command})
        self.write()

    def write(self) -> None:
        (self.out / "report.json").write_text(json.dumps(self.report, indent=2) + "\n")
        m = self.report["machine"]
        lines = [f"# GPU check, {self.report['started']}", "",
                 f"{m['gpu']} (driver {m['driver']}), Python {m['python']}, torch {m['torch']} (CUDA {m['cuda']}), "
                 f"commit {m['commit']}", "", "| figure | value | command |", "|---|---|---|"]
        lines += [f"| {f['what']} | {f['value']} {f['unit']} | `{f['command']}` |" for f in self.report["figures"]]
        lines += ["", "| step | exit | seconds | log |", "|---|---|---|---|"]
        lines += [f"| {s['step']} | {s['rc']} | {s['seconds']} | {s['log']} |" for s in self.report["steps"]]
        (self.out / "report.md").write_text("\n".join(lines) + "\n")


def machine() -> dict:
    import torch
    gpu = driver = "none"
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
        gpu, driver = [x.strip() for x in q[0].split(",")]
    except (OSError, IndexError, ValueError, subprocess.TimeoutExpired):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return {"gpu": gpu, "driver": driver, "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cpus": os.cpu_count(), "commit": commit}


def pins() -> list[str]:
    """The project's pins: dependencies, the gpu extra and pytest."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]
    return project["dependencies"] + extra["gpu"] + [p for p in extra["test"] if p.startswith("pytest")]


def installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def install(check: Check, wheels: Path | None) -> bool:
    """Install the pinned distributions this interpreter lacks, and their dependencies it lacks, into `site`
    (--no-deps: nothing already installed, torch above all, is replaced or shadowed)."""
    missing = [p for p in pins() if not installed(re.split(r"[=<>\[ ]", p)[0])]
    check.report["missing_before_install"] = missing
    if not missing:
        return True
    folder = check.out / "wheels"
    if wheels is not None:
        folder = wheels
        for whole in {folder / p.name.split(".part")[0] for p in folder.glob("*.whl.part*")}:
            if not whole.exists():     # `split -b 60m X.whl X.whl.part` made X.whl.partaa, .partab, ...
                with open(whole, "wb") as fh:
                    for part in sorted(folder.glob(whole.name + ".part*")):
                        fh.write(part.read_bytes())
    elif not check.run("download", [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d",
                                    str(folder), *missing], timeout=900):
        return False
    files = [w for w in sorted(folder.glob("*.whl")) if not installed(_name(w.name.split("-")[0]))]
    check.report["installed_wheels"] = [w.name for w in files]
    return check.run("install", [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--target",
                                 str(check.site), *map(str, files)], timeout=600)


PREINSTALLED = {"torch", "torchaudio", "torchvision", "accelerate"}   # CUDA builds the GPU machine has; not fetched


def download(dest: Path, python_version: str) -> int:
    """`make gpu-wheels`: the wheels of every pin but the torch family and accelerate, with their dependencies,
    for Linux x86_64 and `python_version`, into `dest`; wheels over 60 MiB split into `.part*` files of 60 MiB
    (one transfer each where a transfer limit applies; `--wheels` joins them)."""
    wanted = [p for p in pins() if _name(re.split(r"[=<>\[ ]", p)[0]) not in PREINSTALLED]
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", python_version,
           "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64", "--platform",
           "manylinux_2_17_x86_64", "-d", str(dest), *wanted]
    if subprocess.run(cmd).returncode:
        return 1
    for whl in dest.glob("*.whl"):
        if whl.name.split("-")[0].replace("_", "-").lower() in PREINSTALLED:
            whl.unlink()
        elif whl.stat().st_size > 60 * 2**20:
            subprocess.run(["split", "-b", "60m", str(whl), f"{whl}.part"], check=True)
            whl.unlink()
    total = sum(f.stat().st_size for f in dest.iterdir()) / 2**20
    print(f"gpu-wheels: {len(list(dest.iterdir()))} files, {total:.0f} MiB in {dest}")
    return 0


def trainer_bench(check: Check) -> None:
    py = sys.executable
    for batch in (32, 256):
        for compiled in (True, False):
            tag = f"train_b{batch}_{'compiled' if compiled else 'eager'}"
            dest = check.out / f"{tag}.json"
            cmd = [py, "-m", "trainer.bench", "--batch", str(batch), "--precision", "bf16", "--channels-last",
                   "--steps", "20", "--json", str(dest)] + (["--compile"] if compiled else ["--no-baseline"])
            if check.run(tag, cmd, timeout=600):
                rows = json.loads(dest.read_text())
                shown = " ".join(cmd).replace(str(check.out), "gpu-check")
                check.figure(f"SSL-SaN training step, batch {batch}, bf16 + channels_last"
                             f"{' + compile' if compiled else ', eager'}", round(rows[0]["samples_per_s"], 1),
                             "samples/s", shown)
                if compiled:
                    check.figure(f"SSL-TIE-style loop (fp32, eager), batch {batch}",
                                 round(rows[1]["samples_per_s"], 1), "samples/s", shown)
                    check.figure(f"speed-up over the fp32 eager loop, batch {batch}",
                                 round(rows[0]["samples_per_s"] / rows[1]["samples_per_s"], 2), "x", shown)


def corpus(check: Check) -> bool:
    py, data = sys.executable, check.out / "data"
    return (check.run("synth", [py, "-m", "pipeline.synth", "--out", str(data / "corpus"), "--clips", "768",
                                "--seconds", "10", "--workers", str(os.cpu_count())], timeout=900)
            and check.run("shard", [py, "-m", "pipeline.shard", "--src", str(data / "corpus"), "--out",
                                    str(data / "shards"), "--workers", str(os.cpu_count())], timeout=900))


def loader_bench(check: Check) -> None:
    dest = check.out / "load"
    cmd = [sys.executable, "-m", "pipeline.bench", "load", "--shards", str(check.out / "data" / "shards"), "--out",
           str(dest), "--epochs", "3", "loaders=[dali:cuda,dali:cpu]", "loader.device=cuda",
           "loader.batch_size=256", f"loader.workers={os.cpu_count()}"]
    if check.run("bench_load", cmd, timeout=900):
        res = json.loads((dest / "load.json").read_text())["results"]
        shown = " ".join(cmd).replace(str(check.out), "gpu-check")
        gpu, cpu = res["dali:cuda"]["median_samples_per_s"], res["dali:cpu"]["median_samples_per_s"]
        check.figure("DALI loader on the GPU (full graph), training augmentation, batch 256", gpu, "samples/s", shown)
        check.figure("DALI loader on the CPU (decode graph), same settings", cpu, "samples/s", shown)
        check.figure("GPU loader / CPU loader", round(gpu / cpu, 2), "x", shown)


def training_on_shards(check: Check) -> None:
    """The same short compiled training on the shards (DALI GPU loader) and on random tensors: samples/s and the
    data wait per step of the last log interval."""
    rates = {}
    for source in ("shards", "random"):
        cmd = [sys.executable, "trainer/train.py", "--resume", "none", f"output_root={check.out / 'runs'}",
               f"name={source}", f"data.source={source}", f"data.shard_dir={check.out / 'data' / 'shards'}",
               "data.loader.device=cuda", "optim.batch_size=256", "precision=bf16", "channels_last=true",
               "compile=true", "max_steps=40", "log_every=10", "val_every=0", "ckpt_every=0", "val_batches=1",
               "data.random_batches=40", "data.random_image_size=224", "data.random_frames=670",
               f"data.loader.workers={os.cpu_count()}", "epochs=100"]
        if check.run(f"train_{source}", cmd, timeout=900):
            logs = [json.loads(x) for x in (check.out / "runs" / source / "log.jsonl").read_text().splitlines()]
            last = [x for x in logs if "train/loss" in x][-1]
            rates[source] = last["samples_per_s"]
            shown = " ".join(cmd).replace(str(check.out), "gpu-check")
            check.figure(f"training on {source}, batch 256 (last 10 steps)", round(last["samples_per_s"], 1),
                         "samples/s", shown)
            if source == "shards":
                check.figure("data wait / step time on shards", round(last["data_wait_s"] / last["step_s"], 3),
                             "", shown)
    if len(rates) == 2:
        check.figure("training on shards / on random tensors", round(rates["shards"] / rates["random"], 3), "x",
                     "the two commands above")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu-check")
    p.add_argument("--wheels", help="install only from this folder of wheels (no network)")
    p.add_argument("--download", metavar="DIR", help="only fetch the wheels an offline GPU machine needs into DIR")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python, with --download")
    args = p.parse_args()
    if args.download:
        return download(Path(args.download), args.python_version)
    import torch
    if not torch.cuda.is_available():
        print("error: gpu-check: no CUDA device is visible to torch", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out / "logs", ignore_errors=True)
    check = Check(out)
    trainer_bench(check)
    if install(check, Path(args.wheels).resolve() if args.wheels else None) and corpus(check):
        check.run("pytest_gpu", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"],
                  timeout=900)
        loader_bench(check)
        training_on_shards(check)
    failed = [s["step"] for s in check.report["steps"] if s["rc"] != 0]
    print(f"gpu-check: report in {out / 'report.md'}" + (f"; failed steps: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
