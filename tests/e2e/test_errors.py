"""Issue 2, point 5: task errors, dependents of erred tasks, retries, client.retry."""

import os
import traceback

import dask
import pytest

from .helpers import add, div, inc, unique


class CustomError(Exception):
    pass


def raise_custom(x):
    raise CustomError(f"custom failure for {x}")


def fail_first_n(counter_path, n):
    """Fail the first ``n`` calls (counted in a file), then return the call number."""
    count = int(open(counter_path).read()) + 1 if os.path.exists(counter_path) else 1
    with open(counter_path, "w") as f:
        f.write(str(count))
    if count <= n:
        raise RuntimeError(f"flaky failure {count}")
    return count


def fail_unless_exists(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"not there yet: {path}")
    return "fixed"


def test_exception_type_message_and_traceback(client):
    f = client.submit(div, 1, 0, key=unique("div"))
    with pytest.raises(ZeroDivisionError, match="division by zero") as info:
        f.result(timeout=30)
    assert f.status == "error"
    assert isinstance(f.exception(timeout=30), ZeroDivisionError)
    tb = f.traceback(timeout=30)
    assert tb is not None
    text = "".join(traceback.format_tb(tb))
    assert "div" in text and "return x / y" in text
    # the traceback raised to the user also shows the remote frame
    assert "div" in "".join(traceback.format_tb(info.value.__traceback__))


def test_custom_exception_type(client):
    f = client.submit(raise_custom, 3)
    with pytest.raises(CustomError, match="custom failure for 3"):
        f.result(timeout=30)


def test_dependents_of_erred_task_err(client):
    bad = client.submit(div, 1, 0, key=unique("bad"))
    child = client.submit(inc, bad)
    grandchild = client.submit(inc, child)
    for f in (child, grandchild):
        with pytest.raises(ZeroDivisionError):
            f.result(timeout=30)
        assert f.status == "error"
    # the same through a collection graph
    graph = dask.delayed(inc)(dask.delayed(div)(1, 0))
    with pytest.raises(ZeroDivisionError):
        graph.compute()
    # siblings that do not depend on it are fine
    assert client.submit(inc, 1).result(timeout=30) == 2


def test_retries(client, tmp_path):
    ok = client.submit(fail_first_n, str(tmp_path / "ok"), 2, retries=2, pure=False)
    assert ok.result(timeout=60) == 3  # two failures, one success

    not_enough = client.submit(fail_first_n, str(tmp_path / "short"), 3, retries=1, pure=False)
    with pytest.raises(RuntimeError, match="flaky failure 2"):
        not_enough.result(timeout=60)
    assert (tmp_path / "short").read_text() == "2"  # ran exactly 1 + retries times


def test_client_retry(client, tmp_path):
    flag = str(tmp_path / "flag")
    f = client.submit(fail_unless_exists, flag, key=unique("retry"))
    g = client.submit(str.upper, f, key=unique("retry-dep"))
    with pytest.raises(FileNotFoundError):
        f.result(timeout=30)
    with pytest.raises(FileNotFoundError):
        g.result(timeout=30)

    open(flag, "w").close()  # fix the cause
    client.retry([f])
    assert f.result(timeout=30) == "fixed"
    g.retry()
    assert g.result(timeout=30) == "FIXED"


def test_client_retry_of_dependent_reruns_erred_dependency(client, tmp_path):
    flag = str(tmp_path / "flag")
    f = client.submit(fail_unless_exists, flag, key=unique("root"))
    g = client.submit(str.upper, f, key=unique("dep"))
    with pytest.raises(FileNotFoundError):
        g.result(timeout=30)
    open(flag, "w").close()
    client.retry([g])  # only the dependent: the scheduler retries the erred root too
    assert g.result(timeout=30) == "FIXED"
    assert f.result(timeout=30) == "fixed"


def test_recreate_error_locally_runs_the_blamed_task_here(client):
    """`client.recreate_error_locally` asks the scheduler which task is to blame
    (`get_error_cause`) and for its run_spec (`get_runspec`), then runs it in
    this process with its inputs gathered."""
    x = client.submit(inc, 1, key=unique("x"))
    zero = client.submit(lambda v: v - v, x, key=unique("zero"))
    bad = client.submit(div, x, zero, key=unique("bad"))
    child = client.submit(inc, bad, key=unique("child"))
    with pytest.raises(ZeroDivisionError):
        child.result(timeout=30)
    # blamed: `bad`, not the child that erred through it
    assert client.sync(client._get_errored_future, child) == bad.key
    with pytest.raises(ZeroDivisionError, match="division by zero") as info:
        client.recreate_error_locally(child)
    # it ran here: the innermost frame is the helper's own line
    assert traceback.extract_tb(info.value.__traceback__)[-1].line == "return x / y"


def test_recreate_task_locally_returns_the_result(client):
    a = client.submit(inc, 10, key=unique("a"))
    b = client.submit(add, a, 5, key=unique("b"))
    assert b.result(timeout=30) == 16
    assert client.recreate_task_locally(b) == 16
    assert client.recreate_task_locally(a) == 11


def test_recreate_error_locally_without_errors_and_unknown_keys(client):
    ok = client.submit(inc, 1, key=unique("ok"))
    ok.result(timeout=30)
    with pytest.raises(ValueError, match="No errored futures passed"):
        client.recreate_error_locally(ok)
    # a key the scheduler never heard of: Python's KeyError
    with pytest.raises(KeyError):
        client.recreate_task_locally(unique("never-submitted"))
