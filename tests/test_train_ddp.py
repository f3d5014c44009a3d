"""Two processes with torchrun and gloo on CPU: DDP end to end (about 10 s), without torch's
warnings that are not the user's concern."""
import json
import os
import signal
import subprocess
import sys

from tests.train_helpers import tiny_spec


def test_torchrun_two_processes_gloo(tmp_path):
    doc = tiny_spec()
    doc["input"] = [1, 8, 8]   # a 1-channel conv: DDP warned of its gradient's strides (4 lines per process)
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(doc))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "netspec", "train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]
    # its own session, so a hang kills torchrun and both workers, not only torchrun
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 3
    assert summary["test_acc"] > 0.5
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # global batch 16 = 2 x 8: both processes together see 96 // 16 * 16 images per epoch
    assert rows[-1]["step"] == 3 * 6
    assert stdout.count("test accuracy") == 1  # only rank 0 reports
    assert "Warning" not in stderr and "strides" not in stderr, stderr
