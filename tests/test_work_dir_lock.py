"""One training run per work dir (mmbiformer/utils/work_dir_lock.py, tools/train.py)."""
import json
import os
import socket
import subprocess
import sys

import pytest

from mmbiformer.errors import UserError
from mmbiformer.utils.work_dir_lock import LOCK_NAME, work_dir_lock
from helpers import tool_error


def _lock(work_dir, pid, host=None):
    os.makedirs(work_dir, exist_ok=True)
    with open(os.path.join(work_dir, LOCK_NAME), 'w') as f:
        json.dump(dict(host=host or socket.gethostname(), pid=pid, started='then',
                       command='tools/train.py A'), f)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_a_second_run_is_refused_and_names_the_holder(tmp_path):
    with work_dir_lock(str(tmp_path), 'first'):
        with pytest.raises(UserError, match=f'in use by another training run: process '
                           f'{os.getpid()} on this host'):
            with work_dir_lock(str(tmp_path), 'second'):
                pass
        assert json.loads((tmp_path / LOCK_NAME).read_text())['command'] == 'first'
    assert not (tmp_path / LOCK_NAME).exists()  # released at the end
    fresh = tmp_path / 'fresh'
    with work_dir_lock(str(fresh)):
        assert (fresh / LOCK_NAME).exists()
    assert not fresh.exists()  # made for the lock, left empty: removed


def test_a_lock_on_another_host_is_not_taken(tmp_path):
    _lock(tmp_path, _dead_pid(), host='elsewhere')  # its process cannot be checked here
    with pytest.raises(UserError, match='on host elsewhere.*delete'):
        with work_dir_lock(str(tmp_path)):
            pass


def test_a_stale_or_unreadable_lock_is_taken_over_with_a_message(tmp_path, monkeypatch):
    import mmengine.logging
    logged = []
    monkeypatch.setattr(mmengine.logging, 'print_log', lambda msg, **kw: logged.append(msg))
    dead = _dead_pid()
    _lock(tmp_path, dead)
    with work_dir_lock(str(tmp_path), 'mine'):
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder['pid'] == os.getpid() and holder['command'] == 'mine'
    (tmp_path / LOCK_NAME).write_text('{not json')
    with work_dir_lock(str(tmp_path)):
        pass
    out = '\n'.join(logged)
    assert f'the lock of process {dead}, which has ended' in out
    assert 'an unreadable lock' in out


def test_only_rank_zero_holds_it(tmp_path, monkeypatch):
    monkeypatch.setenv('RANK', '1')
    _lock(tmp_path, os.getpid())
    with work_dir_lock(str(tmp_path)):  # the rank-0 process holds it: pass through
        pass


def test_train_tool_refuses_a_busy_work_dir(tmp_path):
    work = tmp_path / 'work'
    _lock(work, os.getpid())
    message = tool_error('tools/train.py', 'configs/det/retinanet_biformer_t.py',
                         '--work-dir', str(work))
    assert f'work dir {work} is in use by another training run' in message
    assert sorted(os.listdir(work)) == [LOCK_NAME]  # nothing read, nothing written


def _contend(work_dir, start, done, results):
    """One of several runs started together: try the lock, report, and hold it until
    every contender has tried."""
    start.wait()
    try:
        with work_dir_lock(work_dir):
            results.put('held')
            done.wait()
    except UserError:
        results.put('refused')
        done.wait()


@pytest.mark.parametrize('before', ['none', 'dead', 'unreadable'])
def test_runs_started_together_exactly_one_holds_it(tmp_path, before):
    """A cluster's requeue: four runs started at once (a barrier), against no lock, a dead
    process's lock or an unreadable one. Exactly one holds it, every time."""
    import multiprocessing
    ctx = multiprocessing.get_context('fork')
    dead = _dead_pid()
    for trial in range(5):
        work = tmp_path / f'trial{trial}'
        if before == 'dead':
            _lock(work, dead)
        elif before == 'unreadable':
            work.mkdir()
            (work / LOCK_NAME).write_text('')
        start, done, results = ctx.Barrier(4), ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_contend, args=(str(work), start, done, results))
                 for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        got = sorted(results.get(timeout=5) for _ in procs)
        assert got == ['held', 'refused', 'refused', 'refused'], (trial, got)
        assert not (work / LOCK_NAME).exists()  # released by the one that held it
