"""training/distributed.py: leaving the process group leaves nothing of it behind."""
import os
import socket
import subprocess
import sys
import textwrap

from tests.helpers import REPO

# One rank of a two-process group, as a training run uses it: the group from torchrun's environment, then the first
# optimizer (which imports torch._dynamo), a vote, a normal end. Prints the thread counts and the vote.
RANK = textwrap.dedent("""
    import os
    import torch
    from training.distributed import close_distributed, init_distributed, largest_vote

    def threads():
        return len(os.listdir("/proc/self/task"))

    before = threads()
    info = init_distributed("cpu")
    grown = threads()
    torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    vote = largest_vote(3 + info.rank, info)
    close_distributed(wait_for_all=True)
    print(before, grown, vote, threads())
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closing_leaves_no_gloo_threads():
    """A group still referenced after destroy_process_group keeps its gloo worker threads; at interpreter exit one
    of them can free its work while Python is torn down and abort a run that went well (exit -6, about one
    two-process run in ten under load). Nothing may hold the group after close_distributed: neither the vote's
    group nor modules imported after the group was made. The threads are counted in /proc, in processes of
    their own so that nothing else in them starts or ends threads."""
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, "-c", RANK], cwd=REPO, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    for rank in ranks:
        out, err = rank.communicate(timeout=120)
        assert rank.returncode == 0, err
        before, grown, vote, after = map(int, out.split())
        assert vote == 4  # the larger of 3 and 4: the vote went through the group
        assert grown > before  # the group did start threads, so their absence afterwards means something
        assert after == before
