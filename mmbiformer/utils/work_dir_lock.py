"""One training run per work dir: a lock file that the running job holds.

Two runs in one work dir overwrite each other's checkpoints, logs and dumped config,
and a resume reads whichever checkpoint the other run wrote last; both then exit 0.
A cluster that requeues a job while it still runs, or a command started twice, does
that. :func:`work_dir_lock` makes the second run refuse, naming the holder; a lock
left by a process that died on this host is taken over, with a message. In a
distributed run the process of rank 0 holds it for the whole job (one lock per run).
"""
import contextlib
import json
import logging
import os
import os.path as osp
import socket
import sys
import time
from typing import Optional

LOCK_NAME = '.mmbiformer_train.lock'


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _read(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) and 'pid' in holder else None
    except (OSError, ValueError):
        return None


def _take(path: str, me: dict) -> bool:
    """Create the lock file with ``me`` in it; False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, 'w') as f:
        json.dump(me, f)
    return True


@contextlib.contextmanager
def work_dir_lock(work_dir: str, command: str = ''):
    """Hold ``work_dir``'s training lock around the block (rank 0 only; the other ranks
    pass through). Raises :class:`~mmbiformer.errors.UserError` when a live
    process holds it."""
    from mmengine.logging import print_log

    from ..errors import UserError
    if int(os.environ.get('RANK', 0)) != 0:
        yield
        return
    created = not osp.isdir(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    me = dict(host=socket.gethostname(), pid=os.getpid(),
              started=time.strftime('%Y-%m-%d %H:%M:%S'),
              command=command or ' '.join(sys.argv))
    while not _take(path, me):
        holder = _read(path)
        if holder is not None and (holder.get('host') != me['host']
                                   or _alive(int(holder['pid']))):
            where = ('this host' if holder.get('host') == me['host']
                     else f'host {holder.get("host")}')
            raise UserError(
                f'work dir {work_dir} is in use by another training run: process '
                f'{holder["pid"]} on {where}, started {holder.get("started", "?")} '
                f'({holder.get("command", "?")}). Two runs in one work dir overwrite each '
                f"other's checkpoints. Wait for it or stop it, or pass another "
                f'--work-dir; if that process is gone (its host was lost), delete {path}.')
        what = ('an unreadable lock' if holder is None else
                f'the lock of process {holder["pid"]}, which has ended,')
        print_log(f'work dir {work_dir}: {what} ({path}) is taken over by this run',
                  logger='current', level=logging.WARNING)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    try:
        yield
    finally:
        holder = _read(path)
        if holder is not None and holder.get('pid') == me['pid'] \
                and holder.get('host') == me['host']:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        if created:  # a run that stopped before writing anything leaves no folder
            with contextlib.suppress(OSError):
                os.rmdir(work_dir)
