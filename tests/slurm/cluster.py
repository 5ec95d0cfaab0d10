"""A throw-away single-node Slurm cluster on localhost, for tests.

munged, slurmctld and slurmd (Debian's ``munge`` and ``slurm-wlm``) are started directly, in the
foreground, as children of the test process: no systemd, no files outside a temporary folder, free
ports, a private munge socket. :func:`local_slurm` yields the environment that Slurm's clients
(sbatch, squeue) need, and on exit cancels the cluster's jobs and stops the three daemons by PID.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel")


def missing_programs() -> list[str]:
    """Slurm and munge programs that are not installed."""
    return [name for name in (*DAEMONS, *CLIENTS) if not _which(name)]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


@dataclass
class LocalSlurm:
    root: Path
    env: dict[str, str]  # os.environ plus SLURM_CONF: give it to every Slurm client
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, check=check)

    def queue(self) -> list[str]:
        """Job ids still pending, running or completing."""
        return self.run("squeue", "-h", "-o", "%i").stdout.split()

    def wait_idle(self, timeout: float = 600, poll: float = 0.2) -> None:
        """Wait until no job is queued or running."""
        deadline = time.monotonic() + timeout
        while self.queue():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Slurm jobs still queued after {timeout} s:\n{self.logs()}")
            time.sleep(poll)

    def logs(self) -> str:
        """The daemons' log tails, for failure messages."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-15:]))
        return "\n".join(parts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slurm_conf(root: Path, user: str, cpus: int, memory_mb: int) -> str:
    return f"""\
ClusterName=bidssynthtest
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.sock
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@contextlib.contextmanager
def local_slurm(cpus: int = 2, memory_mb: int = 4096, start_timeout: float = 60):
    """Start munged, slurmctld and slurmd; yield a :class:`LocalSlurm`; stop them all."""
    root = Path(tempfile.mkdtemp(prefix="bids-synth-slurm-"))  # short: unix socket paths
    root.chmod(0o755)  # munged wants its socket folder reachable by everyone
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    user = getpass.getuser()
    (root / "slurm.conf").write_text(_slurm_conf(root, user, cpus, memory_mb))
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"), "LOGNAME": user}
    cluster = LocalSlurm(root=root, env=env)
    commands = {
        "munged": [
            _which("munged"), "--foreground", "--force", f"--socket={root}/munge.sock",
            f"--key-file={key}", f"--log-file={root}/munged.log",
            f"--pid-file={root}/munged.pid", f"--seed-file={root}/munged.seed",
        ],
        "slurmctld": [_which("slurmctld"), "-D", "-c"],  # -c: clean start, no saved state
        "slurmd": [_which("slurmd"), "-D", "-N", "localhost"],
    }  # fmt: skip
    try:
        for name, command in commands.items():
            with open(root / f"{name}.out", "wb") as out:
                cluster.processes[name] = subprocess.Popen(
                    command, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            if name == "munged":
                _wait_for(lambda: (root / "munge.sock").exists(), start_timeout, cluster, name)
        _wait_for(lambda: _node_idle(cluster), start_timeout, cluster, "the node to be idle")
        yield cluster
    finally:
        _stop(cluster)
        shutil.rmtree(root, ignore_errors=True)


def _node_idle(cluster: LocalSlurm) -> bool:
    result = cluster.run("sinfo", "-h", "-N", "-o", "%t", check=False)
    return result.returncode == 0 and result.stdout.strip() == "idle"


def _wait_for(condition, timeout: float, cluster: LocalSlurm, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for name, process in cluster.processes.items():
            if process.poll() is not None:
                output = (cluster.root / f"{name}.out").read_text(errors="replace")
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{output}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}:\n{cluster.logs()}")
        time.sleep(0.1)


def _stop(cluster: LocalSlurm) -> None:
    """Cancel the cluster's jobs, then stop slurmd, slurmctld and munged (in that order)."""
    if cluster.processes.get("slurmctld") and cluster.processes["slurmctld"].poll() is None:
        cluster.run("scancel", "--user", getpass.getuser(), check=False)
        with contextlib.suppress(TimeoutError, subprocess.SubprocessError):
            cluster.wait_idle(timeout=30)
    for name in reversed(DAEMONS):
        process = cluster.processes.get(name)
        if process is None or process.poll() is not None:
            continue
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
