"""Log lines that every process of a data-parallel run says for itself: what its
graphs replay and what they cost. mmengine's logger shows rank 0's lines only (the
other ranks' consoles take errors, and only rank 0 writes the log file)."""
import logging
from typing import Optional


def log_every_rank(message: str, logger: Optional[logging.Logger] = None,
                   level: int = logging.INFO) -> None:
    """``message`` from this process: through the run's logger on rank 0 (or in a run of
    one process), on the console prefixed with the rank elsewhere (torchrun gathers every
    rank's output)."""
    from mmengine.dist import get_rank, get_world_size
    from mmengine.logging import MMLogger
    if get_world_size() > 1:
        message = f'[rank {get_rank()}] {message}'
        if get_rank() != 0:
            print(message, flush=True)
            return
    (logger or MMLogger.get_current_instance()).log(level, message)
