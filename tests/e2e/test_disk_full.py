"""A full disk while training: one line that says so, names the file and what is intact; no half-written file left;
and once there is room again, `resume=latest` ends bitwise where an uninterrupted run ends.

The small disk is a tmpfs of 900 KiB mounted inside a user and mount namespace (`unshare --user
--map-root-user --mount`), which needs no root privileges where the kernel allows unprivileged user namespaces: the
first checkpoint (step 5, ~0.6 MiB with the run's other files) fits, the second (step 10) does not. The filesystem
is then made larger (a remount) and the run resumed, inside the same namespace.
"""
import os
import shutil
import subprocess

import pytest

from tests.e2e.test_never_lose_a_run import (FINAL, PY, REPO, assert_user_error, base_run, data,  # noqa: F401
                                             message_lines, same_final_state, train_cmd)

SCRIPT = """
mount -t tmpfs -o size=900k tmpfs "$DISK" || exit 90
"$@" checkpoint_path="$DISK/run" > "$OUT/first.out" 2> "$OUT/first.err"
echo $? > "$OUT/first.status"
ls -a "$DISK/run" > "$OUT/after_failure.txt"
mount -o remount,size=64m tmpfs "$DISK" || exit 91
"$@" checkpoint_path="$DISK/run" resume=latest > "$OUT/second.out" 2> "$OUT/second.err"
echo $? > "$OUT/second.status"
cp -r "$DISK/run" "$OUT/run"
"""


def can_make_a_namespace() -> bool:
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
def test_disk_full_is_one_line_and_the_run_resumes_bitwise(data, base_run, tmp_path):  # noqa: F811
    if shutil.which("unshare") is None or not can_make_a_namespace():
        message = "unshare --user --mount is not allowed here: no small filesystem to fill"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    command = train_cmd(data, None, {"checkpoint_interval": 5})
    env = {**os.environ, "DISK": str(disk), "OUT": str(out), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", SCRIPT, "sh",
                             *map(str, command)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    status = int((out / "first.status").read_text())
    stderr = (out / "first.err").read_text()
    assert status == 2 and "Traceback" not in stderr, stderr[-3000:]
    (line,) = message_lines(stderr)
    assert line.startswith("error: ") and "no space left on device" in line, line
    assert f"{disk}/run/step_10" in line, line  # the file that could not be written
    assert f"{disk}/run/step_5, is intact" in line, line  # and what is left to resume from
    left = (out / "after_failure.txt").read_text().split()
    assert not [name for name in left if ".tmp" in name], left  # no half-written file
    assert not [name for name in left if name.startswith("step_10")], left  # nor an incomplete checkpoint
    assert {"step_5", "step_5.state", "step_5.rank0"} <= set(left), left

    assert int((out / "second.status").read_text()) == 0, (out / "second.err").read_text()[-3000:]
    assert "resumed from" in (out / "second.out").read_text()
    same_final_state(base_run, out / "run", FINAL)
