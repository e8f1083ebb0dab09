"""A host benchmark standing in for the target uses at most this host's cores."""

from edgedistill.bench.threads import bench_threads


def test_local_benchmarks_are_capped_at_the_hosts_cores():
    t = bench_threads(4, "local", cores=2)
    assert t.threads == 2 and t.capped and "instead of the target's 4" in t.note()


def test_local_benchmarks_keep_fewer_threads_than_cores():
    t = bench_threads(1, "local", cores=2)
    assert t.threads == 1 and not t.capped and t.note() == ""


def test_a_device_gets_the_targets_thread_count():
    assert bench_threads(4, "ssh://pi@127.0.0.1", cores=2).threads == 4
