"""Starting and ending a tool's process group: launcher checks, ports, gloo on machines
without a GPU, timeouts and a stalled peer named."""
import contextlib
import gc
import os
import time
from typing import Optional

import torch
from mmengine.config import Config, ConfigDict

from ..errors import UserError

GLOO_SETTLE_S = 1.0  # seconds for gloo's threads to finish their last collective (ample)


def check_launcher(launcher: str) -> None:
    """``--launcher pytorch`` / ``slurm`` outside the launcher that sets their
    environment fails deep in torch.distributed: say how to start instead."""
    if launcher == 'pytorch' and 'RANK' not in os.environ:
        raise UserError('--launcher pytorch needs the environment torchrun sets (RANK, '
                        'WORLD_SIZE, MASTER_ADDR): start with tools/dist_train.sh CONFIG '
                        'GPUS (tools/dist_test.sh for testing) or torchrun '
                        '--nproc_per_node=GPUS tools/train.py CONFIG --launcher pytorch; '
                        'on one process, leave --launcher out.')
    if launcher == 'slurm' and 'SLURM_PROCID' not in os.environ:
        raise UserError('--launcher slurm runs inside srun: use tools/slurm_train.sh '
                        '(tools/slurm_test.sh), or leave --launcher out on one process.')


def free_port() -> int:
    """A TCP port free on this machine now (for a process group's rendezvous)."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def setup_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Let ``--launcher pytorch`` run on machines without CUDA (gloo backend).

    mmengine's ``init_dist`` calls ``torch.cuda.set_device``; we start the process
    group ourselves, wrap the model without ``device_ids`` and use plain BatchNorm
    (SyncBN needs CUDA).
    """
    if launcher != 'pytorch' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    # The backend the run uses, as the logged environment and mmengine read it.
    cfg.setdefault('env_cfg', ConfigDict()).setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    if not dist.is_initialized():
        from datetime import timedelta
        dist.init_process_group(backend='gloo', timeout=timedelta(seconds=dist_timeout(cfg)))
    wrapper = cfg.get('model_wrapper_cfg') or ConfigDict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper

    def no_syncbn(node):
        if isinstance(node, dict):
            if node.get('type') in ('SyncBN', 'MMSyncBN'):
                node['type'] = 'BN'
            for v in node.values():
                no_syncbn(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                no_syncbn(v)
    no_syncbn(cfg.model)


@contextlib.contextmanager
def distributed_run(timeout_s: Optional[float] = None, resume: Optional[str] = None):
    """Around a tool's work: end the process group (if any) before the process exits.

    When every process finished its work: a barrier, then the group is destroyed and
    freed while the interpreter is alive and gloo's threads are idle. Left to the
    interpreter's exit, a gloo thread that dropped the last reference to a finished
    collective (whose tensors Python had seen) needed the GIL at the wrong moment:
    SIGABRT ('terminate called without an active exception') after a 2-process run
    that had saved everything. Keep the runner out of the ``with`` block's own frame
    (build it in a function the block calls): it holds the group, and a frame still
    running is not freed here. When a process failed, the group is only destroyed
    (no barrier: the others may never arrive).

    A collective that timed out (``timeout_s``: the configured timeout) or lost a peer
    becomes a :class:`UserError` naming the ranks that did not answer and the
    ``resume`` command (``engine/stalled_rank.py``)."""
    import torch.distributed as dist

    from ..engine.stalled_rank import explain_peer_failure, peer_failure_kind
    finished = False
    try:
        yield
        finished = True
    except RuntimeError as e:
        if dist.is_available() and dist.is_initialized() and peer_failure_kind(e):
            raise UserError(explain_peer_failure(e, timeout_s, resume)) from e
        raise
    finally:
        if dist.is_available() and dist.is_initialized():
            if finished:
                dist.barrier()
                # A gloo thread frees a finished collective after waking the caller,
                # under its queue's lock, and that may take the GIL. Freeing the group
                # takes that lock while holding the GIL: let the threads finish first.
                time.sleep(GLOO_SETTLE_S)
            dist.destroy_process_group()
            if finished:
                gc.collect()  # the runner's DDP wrapper sits in reference cycles


def dist_timeout(cfg: Config) -> float:
    """``env_cfg.dist_cfg.timeout`` in seconds, set to the default where unset (the
    process group's collectives wait this long for a rank; PyTorch's own default, 30
    minutes, kept a stalled run blocked that long)."""
    from ..engine.stalled_rank import DEFAULT_TIMEOUT_S
    env = cfg.setdefault('env_cfg', ConfigDict())
    dist_cfg = env.setdefault('dist_cfg', ConfigDict(backend='nccl'))
    timeout = dist_cfg.setdefault('timeout', DEFAULT_TIMEOUT_S)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise UserError(f'env_cfg.dist_cfg.timeout must be a number of seconds > 0, got '
                        f'{timeout!r}')
    return float(timeout)
