"""A real Slurm cluster on localhost for the tests of slurm/ (Debian's slurmctld + slurmd, no munge).

`SlurmCluster(tmp)` writes a slurm.conf into `tmp`, starts slurmctld and slurmd in the foreground mode as background
processes, waits until the node is idle, and exposes `env` (with SLURM_CONF) for client commands; `stop()` kills them.
`SlurmCluster(tmp, nodes=2)` simulates two nodes, `node1` and `node2`: one slurmd each (`slurmd -N nodeK`, own port,
spool and log), both at 127.0.0.1, the machine's cores and memory shared between them.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")


def ensure_slurm() -> str | None:
    """Install Debian's Slurm if it is missing and we may; return a reason string if it is not usable."""
    if all(shutil.which(d) for d in DAEMONS):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "Slurm is not installed and cannot be installed here (needs root and apt-get)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurmctld", "slurmd", "slurm-client"]):
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            return f"`{' '.join(cmd)}` failed: Slurm cannot be installed here"
    return None if all(shutil.which(d) for d in DAEMONS) else "Slurm binaries missing after install"


class SlurmCluster:
    def __init__(self, root: Path, cpus: int | None = None, nodes: int = 1):
        self.root = Path(root)
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.nodes = ["localhost"] if nodes == 1 else [f"node{k}" for k in range(1, nodes + 1)]
        cpus = cpus or max(1, (os.cpu_count() or 2) // nodes)
        mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9 / nodes)
        r = self.root
        if nodes == 1:
            node_lines = [f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN"]
        else:
            node_lines = [f"NodeName={n} NodeHostname=localhost NodeAddr=127.0.0.1 Port={_free_port()} CPUs={cpus} "
                          f"RealMemory={mem_mb} State=UNKNOWN" for n in self.nodes]
        self.conf = r / "slurm.conf"
        self.conf.write_text("\n".join([
            "ClusterName=test",
            "SlurmctldHost=localhost(127.0.0.1)",
            "AuthType=auth/none", "CredType=cred/none",
            "SlurmUser=root", "SlurmdUser=root",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "ReturnToService=2", "SchedulerParameters=batch_sched_delay=0",
            "MpiDefault=none", "JobRequeue=1",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool/%n",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd-%n.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log", f"SlurmdLogFile={r}/log/slurmd-%n.log",
            "SlurmctldTimeout=30", "SlurmdTimeout=30", "MinJobAge=600",
            *node_lines,
            f"PartitionName=debug Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
            "",
        ]))
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.procs: list[subprocess.Popen] = []

    def start(self, timeout: float = 30.0) -> "SlurmCluster":
        for cmd in [["slurmctld", "-D", "-i"]] + [["slurmd", "-D", "-N", n] for n in self.nodes]:
            log = open(self.root / "log" / f"{cmd[0]}-{cmd[-1]}.out", "wb")
            self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))
            time.sleep(0.5)
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=self.env, capture_output=True,
                                 text=True).stdout.split()
            if len(out) == len(self.nodes) and all(s in ("idle", "mix", "alloc") for s in out):
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Slurm node never became idle; logs in {self.root / 'log'}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.procs.clear()

    def run(self, *cmd: str, check: bool = True) -> str:
        res = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
        return res.stdout

    def sbatch(self, *args: str, env: dict | None = None) -> int:
        res = subprocess.run(["sbatch", "--parsable", *args], env={**self.env, **(env or {})},
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed: {res.stderr.strip()}")
        return int(res.stdout.strip().split(";")[0])

    def job(self, job_id: int | str) -> list[dict]:
        """`scontrol show job` parsed into one dict per (array) task."""
        out = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]

    def warn_and_wait_requeued(self, job_id: int | str, log: Path, timeout: float = 600) -> dict:
        """Send the time-limit warning (USR1 to the batch script, what --signal=B:USR1@300 sends) and wait until the
        job completed after one requeue; its `scontrol` record. A failed job fails the caller with the job's log."""
        self.run("scancel", "--batch", "--signal=USR1", str(job_id))
        deadline = time.time() + timeout
        while True:
            info = self.job(job_id)[0]
            if info["JobState"] == "COMPLETED" and info.get("Restarts") == "1":
                return info
            assert info["JobState"] not in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"), log.read_text()
            assert time.time() < deadline, (info, log.read_text())
            time.sleep(1)

    def wait(self, job_id: int | str, timeout: float, until=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                             "NODE_FAIL", "OUT_OF_MEMORY")) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            tasks = self.job(job_id)
            if tasks and all(t.get("JobState") in until for t in tasks):
                return tasks
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} not finished after {timeout}s: {self.job(job_id)}")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
