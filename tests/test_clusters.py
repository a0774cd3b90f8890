"""Scale-out on real engines: workers from the batch allocation, Dask over SSH (a real
sshd on 127.0.0.1, started and stopped here), and dask-jobqueue's SLURM/PBS scripts."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from conftest import kim_model_or_skip, require

from pipeline.atoms.hashing import image_hashes
from pipeline.core.dask_backend import DaskSpec
from pipeline.core.errors import ConfigError
from pipeline.core.executors import ExecutorSpec, allocated_cores
from pipeline.core.store import Store
from pipeline.models import parameters
from pipeline.models.derivatives import Derivative
from pipeline.models.potential import PotentialSpec
from pipeline.models.transforms import Transform
from pipeline.scores.training_fim import candidates, training_fims
from stages.runtime import workers_of

SW = "SW_StillingerWeber_1985_Si__MO_405512056662_005"


def test_workers_auto_reads_the_batch_allocation_then_the_affinity_mask():
    assert allocated_cores({"SLURM_CPUS_PER_TASK": "4", "SLURM_NTASKS": "16"}) == 4
    assert allocated_cores({"SLURM_NTASKS": "3"}) == 3
    assert allocated_cores({"PBS_NP": "6"}) == 6
    assert allocated_cores({"NSLOTS": "5"}) == 5
    assert allocated_cores({}) == len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match="SLURM_CPUS_PER_TASK='four'"):
        allocated_cores({"SLURM_CPUS_PER_TASK": "four"})
    assert workers_of("auto") == workers_of(0) == 0 and workers_of(3) == 3
    with pytest.raises(ConfigError, match="runtime.workers: expected auto or a count >= 1, got 'many'"):
        workers_of("many")
    if shutil.which("taskset"):  # a process pinned to one core sees one
        out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c",
                              "from pipeline.core.executors import allocated_cores; print(allocated_cores({}))"],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == "1"


@pytest.mark.parametrize("kind,lines", [
    ("slurm", ["#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G", "#SBATCH -t 01:30:00"]),
    ("pbs", ["#PBS -l select=1:ncpus=4:mem=", "#PBS -l walltime=01:30:00"]),
])
def test_jobqueue_scripts_hold_the_configured_resources(kind, lines):
    require("dask_jobqueue", "dask-jobqueue (dev extras) makes the SLURM and PBS job scripts")
    from pipeline.core.dask_backend import jobqueue_cluster

    cluster = jobqueue_cluster(kind, {"cores": 4, "memory": "8GB", "walltime": "01:30:00", "processes": 1})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in lines:
        assert line in script, script
    assert f"{sys.executable} -m distributed.cli.dask_worker" in script and "--nthreads 4" in script
    with pytest.raises(ConfigError, match="SLURMCluster refuses"):
        jobqueue_cluster("slurm", {"cores": 4, "memory": "8GB", "no_such_option": 1})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    """sshd on 127.0.0.1 with a key made here; skipped, with the reason, where it cannot start."""
    require("asyncssh", "Dask's SSHCluster needs asyncssh (dev extras)")
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).exists():
        pytest.skip("sshd not installed (Debian's openssh-server; make setup installs it)")
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    (tmp_path / "authorized_keys").write_text((tmp_path / "client.pub").read_text())
    port = free_port()
    (tmp_path / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {tmp_path / 'host'}
AuthorizedKeysFile {tmp_path / 'authorized_keys'}
PidFile {tmp_path / 'sshd.pid'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
""")
    Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(tmp_path / "sshd_config")], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"sshd cannot start here: {proc.stderr.read().strip()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.skip("sshd did not listen within 10 s")
    yield port, tmp_path / "client"
    proc.terminate()
    proc.wait(timeout=10)


def cells():
    out = []
    for seed in range(6):
        atoms = bulk("Si", "diamond", a=5.431, cubic=True)
        atoms.rattle(0.05, seed=seed)
        out.append(atoms)
    return out


def fims_with(executor, store):
    frames = cells()
    hashes = image_hashes(frames)
    cands = candidates(frames, hashes, [("forces",)] * len(frames), [None] * len(frames))
    return training_fims(frames, cands, PotentialSpec("kim", SW, ("Si",), None, "{}", 0.5),
                         parameters.parse({"A": [["default"]], "B": [["default"]]}), Transform("identity", (), (), ()),
                         Derivative("central", 1e-4, 1e-6, "{}", None), store, executor)


@pytest.mark.heavy
def test_fim_train_through_an_ssh_cluster_equals_serial(sshd, tmp_path):
    kim_model_or_skip(SW)
    port, key = sshd
    kwargs = ('{"connect_options": {"port": %d, "client_keys": ["%s"], "username": "%s"}, "remote_python": "%s"}'
              % (port, key, os.environ.get("USER", "root"), sys.executable))
    spec = ExecutorSpec("dask", 1, DaskSpec("ssh", None, ("127.0.0.1", "127.0.0.1"), 1, kwargs), 0.0)
    remote = fims_with(spec, Store(tmp_path / "ssh_store"))
    serial = fims_with(None, Store(tmp_path / "serial_store"))
    assert remote.computed == serial.computed == 6
    np.testing.assert_array_equal(remote.fims, serial.fims)


def test_an_unreachable_ssh_host_fails_fast_naming_it(tmp_path):
    require("asyncssh", "Dask's SSHCluster needs asyncssh (dev extras)")
    kim_model_or_skip(SW)
    kwargs = '{"connect_options": {"port": %d}}' % free_port()  # nothing listens there
    spec = ExecutorSpec("dask", 1, DaskSpec("ssh", None, ("127.0.0.1",), 1, kwargs), 0.0)
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"runtime.dask.hosts: cannot start Dask over SSH on \['127.0.0.1'\]"):
        fims_with(spec, Store(tmp_path / "store"))
    assert time.monotonic() - start < 30
