"""One training run per work dir: a lock file that the running job holds.

Two runs in one work dir overwrite each other's checkpoints, logs and dumped config,
and a resume reads whichever checkpoint the other run wrote last; both then exit 0.
A cluster that requeues a job while it still runs, or a command started twice, does
that. :func:`work_dir_lock` makes the second run refuse, naming the holder; a lock
left by a process that died on this host is taken over, with a message. In a
distributed run the process of rank 0 holds it for the whole job (one lock per run).

The lock is an exclusive ``flock`` on the lock file, which the kernel drops when its
holder dies: of runs started together (a cluster's requeue), against a dead run's lock
or none, exactly one holds it. The file names the holder for the message. Where the
file system has no ``flock``, the file is created complete and atomically (a link),
and a dead holder's file is removed before retrying.
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


def _write(fd: int, me: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(me).encode())
    os.fsync(fd)


def _flock(path: str) -> Optional[int]:
    """An open descriptor of the lock file ``path`` holding an exclusive ``flock`` on it,
    None while another process holds it. The kernel drops the lock when its holder dies,
    so two processes never both hold it, whatever they read from the file. Raises
    OSError where the file system has no ``flock``."""
    import fcntl
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)
            raise
        try:  # still the file at ``path`` (its last holder may have removed it meanwhile)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _take_exclusive(path: str, me: dict) -> bool:
    """Without ``flock``: create ``path`` with ``me`` in it, False if it exists. Linked
    into place complete, so no reader ever sees it empty."""
    tmp = f'{path}.{me["host"]}.{me["pid"]}'
    with open(tmp, 'w') as f:
        json.dump(me, f)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.remove(tmp)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.


def _held_elsewhere(holder: Optional[dict], me: dict) -> bool:
    """The lock file names a run that may still be going: on another host (its process
    cannot be checked from here) or a live process here."""
    return holder is not None and (holder.get('host') != me['host']
                                   or _alive(int(holder['pid'])))


def _busy(work_dir: str, path: str, holder: dict, me: dict):
    from ..errors import UserError
    where = ('this host' if holder.get('host', me['host']) == me['host']
             else f'host {holder.get("host")}')
    return UserError(
        f'work dir {work_dir} is in use by another training run: process '
        f'{holder["pid"]} on {where}, started {holder.get("started", "?")} '
        f'({holder.get("command", "?")}). Two runs in one work dir overwrite each '
        f"other's checkpoints. Wait for it or stop it, or pass another "
        f'--work-dir; if that process is gone (its host was lost), delete {path}.')


def _log_takeover(work_dir: str, path: str, holder: Optional[dict]) -> None:
    from mmengine.logging import print_log
    what = ('an unreadable lock' if holder is None else
            f'the lock of process {holder["pid"]}, which has ended,')
    print_log(f'work dir {work_dir}: {what} ({path}) is taken over by this run',
              logger='current', level=logging.WARNING)


@contextlib.contextmanager
def work_dir_lock(work_dir: str, command: str = ''):
    """Hold ``work_dir``'s training lock around the block (rank 0 only; the other ranks
    pass through). Raises :class:`~mmbiformer.errors.UserError` when a live
    process holds it."""
    if int(os.environ.get('RANK', 0)) != 0:
        yield
        return
    created = not osp.isdir(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    me = dict(host=socket.gethostname(), pid=os.getpid(),
              started=time.strftime('%Y-%m-%d %H:%M:%S'),
              command=command or ' '.join(sys.argv))
    try:
        fd = _flock(path)
    except (OSError, ImportError):  # no flock here (some network file systems, Windows)
        fd = -1
    if fd is None:  # held: name the holder (a run that is starting has not written yet)
        holder = _read(path) or dict(pid='?', started='just now', command='starting')
        raise _busy(work_dir, path, holder, me)
    holder = _read(path) if fd >= 0 else None
    while fd < 0 and not _take_exclusive(path, me):
        holder = _read(path)
        if holder is None and time.time() - _mtime(path) < 5:
            time.sleep(0.2)  # being written by a run that started a moment ago
            continue
        if _held_elsewhere(holder, me):
            raise _busy(work_dir, path, holder, me)
        _log_takeover(work_dir, path, holder)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        holder = None
    if fd >= 0:
        # The file is ours; what it says is what an earlier run left. A holder on another
        # host, or a live process here, may be a run on a file system whose flock does not
        # reach this host, or an older version that did not flock: refuse, as without it.
        if _held_elsewhere(holder, me):
            os.close(fd)
            raise _busy(work_dir, path, holder, me)
        if os.fstat(fd).st_size:
            _log_takeover(work_dir, path, holder)
        _write(fd, me)
    try:
        yield
    finally:
        holder = _read(path)
        if holder is not None and holder.get('pid') == me['pid'] \
                and holder.get('host') == me['host']:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)  # while still held: a waiting run then retries
        if fd >= 0:
            os.close(fd)
        if created:  # a run that stopped before writing anything leaves no folder
            with contextlib.suppress(OSError):
                os.rmdir(work_dir)
