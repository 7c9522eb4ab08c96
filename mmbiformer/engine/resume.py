"""Which checkpoint a training run resumes from, decided before anything runs, so that
no run trains from scratch over checkpoints it should have continued, and none
overwrites a checkpoint it did not write.

mmengine trusts ``work_dir/last_checkpoint`` alone: an absolute path, stale once the
work dir is moved or copied (a copy then resumes from the original's files), and empty
when a crash interrupts its rewrite (mmengine truncates it before writing). Here the
work dir's own checkpoints are read instead: the newest is the complete one with the
furthest recorded progress (``meta.iter``), damaged files are named and skipped, and
``last_checkpoint`` only adds a file inside the work dir that the scan would not find.
"""
import os
import os.path as osp
import re
import shutil
import time
from typing import Dict, List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.logging import print_log

from ..errors import UserError
from ..weights.checkpoint import load_weights_only
from ..weights.checkpoint_refs import check_resume_checkpoint, checkpoint_file

# The names mmengine's CheckpointHook gives (filename_tmpl 'epoch_{}.pth' / 'iter_{}.pth').
CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def _warn(message: str) -> None:
    print_log(message, logger='current', level=30)


def progress(path: str) -> Tuple[int, int]:
    """(iteration, epoch) recorded in a training checkpoint; raises on a damaged file
    or one without them. Tensors are memory-mapped, not read: only the record is."""
    try:
        ckpt = load_weights_only(path, mmap=True)
    except Exception as e:  # noqa: BLE001 - any failure to load means damaged
        raise ValueError(f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
                         ) from e
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    # The record check_resume_checkpoint asks of a file to resume from.
    if not isinstance(meta, dict) or 'iter' not in meta or 'epoch' not in meta:
        raise ValueError('no meta.iter / meta.epoch (not a training checkpoint)')
    return int(meta['iter']), int(meta['epoch'])


def _pointer(work_dir: str) -> Optional[str]:
    """What ``last_checkpoint`` names (None if absent or empty)."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def _inside(path: str, folder: str) -> bool:
    return osp.dirname(osp.realpath(path)) == osp.realpath(folder)


def work_dir_checkpoints(work_dir: str) -> List[str]:
    """The training checkpoints in ``work_dir``: files named as mmengine names them,
    and the file ``last_checkpoint`` names if it is in this folder."""
    if not osp.isdir(work_dir):
        return []
    found = [osp.join(work_dir, f) for f in os.listdir(work_dir) if CHECKPOINT_NAME.match(f)]
    pointer = _pointer(work_dir)
    if pointer and _inside(pointer, work_dir) and osp.isfile(pointer):
        found.append(osp.join(work_dir, osp.basename(pointer)))
    return sorted(set(found))


def _scan(work_dir: str) -> Tuple[Dict[str, Tuple[int, int]], List[str]]:
    """The recorded progress of each complete checkpoint of ``work_dir`` (in name
    order), and ``'file: why'`` for each damaged one."""
    complete, damaged = {}, []
    for path in work_dir_checkpoints(work_dir):
        try:
            complete[path] = progress(path)
        except ValueError as e:
            damaged.append(f'{path}: {e}')
    return complete, damaged


def newest_checkpoint(work_dir: str) -> Tuple[Optional[str], List[str]]:
    """(the complete checkpoint of ``work_dir`` with the furthest progress or None,
    ``'file: why'`` for each damaged one). Warns about a ``last_checkpoint`` that
    points elsewhere (a moved or copied work dir) and about damaged files skipped."""
    pointer = _pointer(work_dir) if osp.isdir(work_dir) else None
    if pointer and not _inside(pointer, work_dir):
        _warn(f'{osp.join(work_dir, "last_checkpoint")} names {pointer}, outside this work '
              f'dir (it was moved or copied): not followed; the work dir\'s own '
              f'checkpoints are read instead.')
    complete, damaged = _scan(work_dir)
    best = max(complete, key=complete.get) if complete else None
    if damaged:
        _warn('damaged checkpoints skipped (incomplete or unreadable): ' + '; '.join(damaged)
              + (f'. Resuming from {best}, the newest complete one.' if best else ''))
    return best, damaged


def _later_than(work_dir: str, path: str) -> List[str]:
    """Complete checkpoints of ``work_dir`` further on than ``path``: a run continued
    from ``path`` there would overwrite them."""
    mine = progress(path)
    return [osp.basename(p) for p, key in _scan(work_dir)[0].items()
            if key > mine and osp.realpath(p) != osp.realpath(path)]


def move_aside(work_dir: str) -> Optional[str]:
    """Move the work dir's checkpoints and ``last_checkpoint`` into a new folder
    ``previous-<time>`` inside it; returns that folder (None if nothing to move)."""
    files = work_dir_checkpoints(work_dir)
    if not files:
        return None
    dest = osp.join(work_dir, time.strftime('previous-%Y%m%d_%H%M%S'))
    os.makedirs(dest, exist_ok=False)
    for path in files + [osp.join(work_dir, 'last_checkpoint')]:
        if osp.isfile(path):
            shutil.move(path, osp.join(dest, osp.basename(path)))
    return dest


def _finish_partial_saves(work_dir: str) -> None:
    """Checkpoints whose save was interrupted (``<name>.part``, see
    :mod:`mmbiformer.engine.atomic_save_runner`). One that loads completely, whose name is
    free and which records more progress than every checkpoint of the work dir was only
    not renamed yet (SIGINT between the write and the rename): renamed into place, so
    that the run resumes from it. Any other (cut, or superseded) is removed."""
    if not (osp.isdir(work_dir) and _is_first_process()):
        return
    from .atomic_save_runner import PART
    for name in sorted(os.listdir(work_dir)):
        if not name.endswith('.pth' + PART):
            continue
        part = osp.join(work_dir, name)
        final = part[:-len(PART)]
        if _newest_complete(part, final, work_dir):
            os.replace(part, final)
            _warn(f'finished {final}: the run was stopped after writing it completely, '
                  f'before renaming it from {name}')
            continue
        os.remove(part)
        _warn(f'removed {part}: a checkpoint whose writing was interrupted (the run was '
              f'stopped while saving)')


def _newest_complete(part: str, final: str, work_dir: str) -> bool:
    if osp.exists(final):
        return False
    try:
        reached = progress(part)[0]
    except ValueError:  # cut or damaged
        return False
    complete, _ = _scan(work_dir)
    return all(done[0] < reached for done in complete.values())


def _is_first_process() -> bool:
    return os.environ.get('RANK', '0') == '0'


def resolve_resume(cfg, resume: Optional[str], if_possible: bool = False,
                   start_over: bool = False) -> None:
    """Set ``cfg.resume`` / ``cfg.load_from`` for ``--resume [CKPT]``,
    ``--resume-if-possible`` and ``--start-over``, or raise :class:`UserError`.

    * ``--resume`` (``resume='auto'``): the newest complete checkpoint of the work dir;
    * ``--resume CKPT``: that file, unless this work dir holds later checkpoints that
      the continued run would overwrite;
    * ``--resume-if-possible``: as ``--resume``; from scratch only where the work dir
      holds no checkpoint at all;
    * none of these: from scratch, refused where the work dir holds checkpoints;
    * ``--start-over``: from scratch; the work dir's checkpoints are first moved into
      ``previous-<time>/`` (never overwritten).
    """
    work_dir = cfg.work_dir
    _finish_partial_saves(work_dir)
    if start_over:
        if resume is not None or if_possible:
            raise UserError('--start-over starts a new run: it cannot be combined with '
                            '--resume or --resume-if-possible')
        if _is_first_process():  # one process moves; the others start fresh with it
            moved = move_aside(work_dir)
            if moved:
                _warn(f'--start-over: the previous checkpoints of {work_dir} were moved to '
                      f'{moved}')
        cfg.resume = False
        return
    if resume not in (None, 'auto'):
        if not resume.startswith(('http://', 'https://')) and not osp.isfile(resume):
            raise UserError(f'--resume {resume}: no such checkpoint file')
        resume = checkpoint_file(resume)
        check_resume_checkpoint(resume)
        later = _later_than(work_dir, resume)
        if later:
            raise UserError(
                f'--resume {resume}: {work_dir} already holds later checkpoints '
                f'({", ".join(sorted(later))}), which the resumed run would overwrite. '
                f'Resume into another --work-dir, or resume the newest with --resume '
                f'(no file).')
        cfg.resume, cfg.load_from = True, resume
        return
    existing = work_dir_checkpoints(work_dir)
    if resume is None and not if_possible:
        if existing:
            raise UserError(
                f'{work_dir} already holds checkpoints of a run '
                f'({", ".join(osp.basename(p) for p in existing)}); training from scratch '
                f'would overwrite them. Continue it with --resume, train into another '
                f'--work-dir, or pass --start-over to move them to '
                f'{work_dir}/previous-<time>/ and start again.')
        return
    newest, damaged = newest_checkpoint(work_dir)
    if newest:  # loaded by progress(): complete, with the record a resume needs
        cfg.resume, cfg.load_from = True, newest
        return
    if damaged:
        raise UserError(
            f'no complete checkpoint to resume from in {work_dir}: '
            + '; '.join(damaged) + '. Remove the damaged files to start from scratch, '
            'or pass --start-over to move them aside first.')
    if if_possible:
        cfg.resume = False
        return
    raise UserError(
        f'--resume: no checkpoint to resume from in {work_dir}. Check --work-dir, pass '
        f'the checkpoint itself (--resume PATH), or use --resume-if-possible to start '
        f'from scratch when there is none.')


class NothingLeftToTrain(Hook):
    """Says so when a resumed run was already at its end (no iteration ran): a resume
    that exits 0 without a word reads as a run that trained."""

    def before_train(self, runner) -> None:
        self.start = runner.iter

    def after_train(self, runner) -> None:
        if runner.iter != self.start or not self.start:
            return
        loop = runner.train_loop
        where = (f'epoch {runner.epoch} of max_epochs={loop.max_epochs}'
                 if hasattr(loop, 'max_epochs') else
                 f'iteration {runner.iter} of max_iters={loop.max_iters}')
        key = 'max_epochs' if hasattr(loop, 'max_epochs') else 'max_iters'
        runner.logger.warning(
            f'nothing left to train: the run resumed at {where}, its end. To train '
            f'longer, raise it (--cfg-options train_cfg.{key}=N).')
