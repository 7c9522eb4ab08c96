"""A checkpoint given to a tool (a path, URL or model-zoo name) made local and checked,
with tool errors instead of tracebacks."""
from ..errors import UserError

def checkpoint_file(ref: str) -> str:
    """A local checkpoint for a path, URL or model-zoo name, with tool errors (a
    missing file, a failed download, an unknown name with the close names)."""
    from .model_zoo import ModelZooError, resolve_checkpoint
    try:
        return resolve_checkpoint(ref)
    except (FileNotFoundError, ModelZooError) as e:
        raise UserError(str(e)) from e


def readable_checkpoint(ref: str) -> str:
    """:func:`checkpoint_file`, then a safe load of it: a corrupt, empty or foreign
    file is a tool error here, before mmengine reads it with a raw traceback."""
    from .checkpoint import CheckpointError, safe_load
    path = checkpoint_file(ref)
    try:
        safe_load(path, mmap=True)
    except CheckpointError as e:
        raise UserError(str(e)) from e
    return path


def check_resume_checkpoint(path: str) -> None:
    """Refuse, before training starts, a file that ``--resume`` cannot continue from."""
    from .checkpoint import CheckpointError, safe_load
    try:
        ckpt = safe_load(path, mmap=True)
    except (CheckpointError, FileNotFoundError) as e:
        raise UserError(str(e)) from e
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or 'epoch' not in meta or 'iter' not in meta:
        raise UserError(
            f'{path}: not a training checkpoint of this toolbox (no meta epoch/iter, '
            f'as mmengine saves them), so there is no run to resume. To start a new '
            f'run from its weights, use --cfg-options load_from={path} without --resume.')
