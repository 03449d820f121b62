"""One function run in several threads at once, for the thread-safety tests (test_concurrency,
test_graph, test_cuda_gpu)."""

import threading


def run_threads(work, n):
    """Run work(i) for i in range(n), each in its own thread, all released together (a
    barrier, so that they overlap); re-raise the first error any of them met."""
    barrier = threading.Barrier(n)
    errors = []

    def target(i):
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
