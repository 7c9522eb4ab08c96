"""Turning a checkpoint reference (a path, for now) into a local file."""
import os


def resolve_checkpoint(name_or_path: str) -> str:
    """Return a local checkpoint file for ``name_or_path``."""
    path = os.path.expanduser(str(name_or_path))
    if os.path.isfile(path):
        return path
    raise FileNotFoundError(f'checkpoint not found: {name_or_path} (give a path to a '
                            f'.pth file)')
