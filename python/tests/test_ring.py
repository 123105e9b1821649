"""Ring attention on 2 and 4 gloo processes against one process."""

import pytest
import torch.multiprocessing as mp

import ring_worker


@pytest.mark.parametrize("world", [2, 4])
def test_ring_attention_matches_one_process(world, tmp_path):
    # spawn, not fork: the Go runtime does not survive a fork.
    mp.spawn(ring_worker.run, args=(world, "file://" + str(tmp_path / "store")), nprocs=world,
             join=True)
