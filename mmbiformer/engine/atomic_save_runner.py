"""mmengine's Runner, with checkpoints that are never left half-written.

mmengine writes ``epoch_N.pth`` in place: a full disk ends the run in a raw
``OSError: [Errno 28]`` traceback and leaves a partial file under the final name (which
keeps the disk full and which a resume then meets), and a kill during the write does
the same. Here each checkpoint is written to ``<name>.part`` in the same folder and
renamed to its name only when complete (``os.replace``: atomic on one file system). On
a failed write the partial file is removed and :class:`CheckpointSaveError` names the
file, the reason, the free space and the size of the previous checkpoint, which stays
intact; with its checkpoint hook (:class:`SafeCheckpointHook`) the checkpoints that
rotation drops are removed only after that. ``tools/train.py`` builds every run with
this runner. When the next run of the work dir starts, a ``.part`` left by a killed
run is renamed into place if it is complete and the newest checkpoint (stopped between
the write and the rename), and removed otherwise
(:func:`mmbiformer.engine.resume.resolve_resume`).
"""
import errno
import glob
import logging
import os
import os.path as osp
import shutil

from mmengine.dist import master_only
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

PART = '.part'


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written (the message says why and what is kept)."""


# Log lines that only the log file keeps: the config, the environment and the hook
# order (hundreds of lines at every start), and one line per parameter from mmengine's
# optimizer constructor (paramwise_options). The console shows progress and results.
_FILE_ONLY = ('Config:\n', '\n' + '-' * 60 + '\nSystem environment:',
              'Hooks will be executed in the following order', 'paramwise_options -- ')


class _FileOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_FILE_ONLY)


@RUNNERS.register_module()
class AtomicSaveRunner(Runner):
    """``Runner`` whose :meth:`save_checkpoint` writes through a temporary file, and
    whose console leaves out the long start-up dumps that the log file keeps."""

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        logger = super().build_logger(log_level, log_file, **kwargs)
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and not any(
                    isinstance(f, _FileOnly) for f in handler.filters):
                handler.addFilter(_FileOnly())
        return logger

    def register_default_hooks(self, hooks=None) -> None:
        # Old checkpoints are removed only once the new one is in place.
        from .safe_checkpoint_hook import safe_default_hooks
        super().register_default_hooks(safe_default_hooks(hooks))

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        if '://' in out_dir:  # remote storage: its own semantics
            return super().save_checkpoint(out_dir, filename, *args, **kwargs)
        final = osp.join(out_dir, filename)
        part = final + PART
        try:
            super().save_checkpoint(out_dir, filename + PART, *args, **kwargs)
            os.replace(part, final)
        except OSError as e:
            if osp.exists(part):
                os.remove(part)
            raise CheckpointSaveError(_explain(final, e)) from None


def _explain(final: str, error: OSError) -> str:
    folder = osp.dirname(final) or '.'
    free = shutil.disk_usage(folder).free if osp.isdir(folder) else None
    previous = sorted((p for p in glob.glob(osp.join(folder, '*.pth'))
                       if osp.abspath(p) != osp.abspath(final)), key=osp.getmtime)
    text = (f'could not write the checkpoint {final}: '
            f'{error.strerror or error}')
    if free is not None:
        text += f' ({free / 2**20:.0f} MiB free in {folder}'
        if previous:
            text += (f'; the previous checkpoint took '
                     f'{osp.getsize(previous[-1]) / 2**20:.0f} MiB')
        text += ')'
    text += '. The partial file was removed'
    then = (f'; {previous[-1]} is intact: {{}} and continue with --resume' if previous
            else '; {} and start again')
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return text + then.format('free some space') + (
            ' (default_hooks.checkpoint.max_keep_ckpts=N keeps only the newest N '
            'checkpoints).')
    if error.errno == errno.EFBIG:  # not the disk: this process's file-size limit
        import resource
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        shown = ('unlimited' if limit == resource.RLIM_INFINITY
                 else f'{limit / 2**20:.0f} MiB')
        return text + then.format(f'the file-size limit of this process (ulimit -f; '
                                  f'now {shown}) is below the checkpoint\'s size: raise '
                                  f'it (ulimit -f unlimited)') + '.'
    return text + then.format('fix the cause above') + '.'

