"""training/distributed.py: leaving the process group leaves nothing of it behind."""
import subprocess
import sys
import textwrap

from tests.helpers import REPO


def test_closing_leaves_no_gloo_threads(tmp_path):
    """A group still referenced after destroy_process_group keeps its gloo worker threads; at interpreter exit one
    of them can free its work while Python is torn down and abort a run that went well (exit -6). The vote's
    group (the default group itself on gloo) must be let go, so the threads end: counted in /proc, in a process
    of its own so that nothing else in it starts or ends threads."""
    script = textwrap.dedent(f"""
        import os
        import torch
        import torch.distributed as dist
        from training.distributed import DistInfo, close_distributed, largest_vote

        def threads():
            return len(os.listdir("/proc/self/task"))

        before = threads()
        dist.init_process_group("gloo", init_method="file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
        grown = threads()
        # world_size 2 in DistInfo takes the path of a multi-process run: the vote goes through the group.
        vote = largest_vote(3, DistInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cpu")))
        close_distributed(wait_for_all=True)
        print(before, grown, vote, threads())
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    before, grown, vote, after = map(int, result.stdout.split())
    assert vote == 3
    assert grown > before  # the group did start threads, so their absence afterwards means something
    assert after == before
