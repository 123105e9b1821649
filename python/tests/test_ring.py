"""Ring attention on 2 and 4 gloo processes against one process."""

import time

import pytest
import torch.multiprocessing as mp

import ring_worker

# Far above the ~30 s the test takes on a loaded 2-core machine: a
# deadlocked ring fails instead of hanging the suite.
DEADLINE = 600


@pytest.mark.parametrize("world", [2, 4])
def test_ring_attention_matches_one_process(world, tmp_path):
    # spawn, not fork: the Go runtime does not survive a fork.
    ctx = mp.spawn(ring_worker.run, args=(world, "file://" + str(tmp_path / "store")), nprocs=world,
                   join=False)
    start = time.monotonic()
    while not ctx.join(timeout=5):  # raises if a worker failed
        if time.monotonic() - start > DEADLINE:
            for p in ctx.processes:
                p.terminate()
            pytest.fail("ring attention on %d processes did not finish in %d s" % (world, DEADLINE))
