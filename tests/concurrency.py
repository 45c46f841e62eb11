"""Run calls at the same moment, each in its own thread and database connection."""

import threading
from collections.abc import Callable

from django.db import connections


def run_at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Start ``calls`` together behind a barrier; return each one's result or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = []

    def run(call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results.append(call())
        except Exception as exc:  # the caller asserts on it
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def errors_of(results: list[object]) -> list[BaseException]:
    return [result for result in results if isinstance(result, BaseException)]
