"""Checkpoints by name: index, verified resumable downloads, conversion on arrival.

``resolve_checkpoint('biformer-s_in1k')`` returns a local file in mmbiformer's layout,
downloading (and converting an official checkpoint) on first use. Paths pass through.

* Index: ``model-index.yml`` + per-task ``metafile.yml`` (OpenMMLab format). Each model
  lists ``Weights`` (URL or null) and our extra fields ``Mirrors`` (more URLs),
  ``SHA256`` (of the downloaded file, where known) and ``Layout`` (``official`` files
  are converted when they arrive).
* Cache: ``$MMBIFORMER_HOME/checkpoints`` (default ``~/.cache/mmbiformer``). A cached
  file is used without any network access.
* Mirrors: ``$MMBIFORMER_MIRROR`` (a URL prefix or a local folder holding
  ``<name>.pth``) is tried before the listed URLs; ``urls=`` replaces them.
"""
import difflib
import hashlib
import os
import os.path as osp
import shutil
import urllib.error
import urllib.request
from typing import Dict, List, Optional

from .checkpoint import CheckpointError, extract_state_dict, safe_load
from .checkpoint import zoo_cache_dir as cache_dir
from .converters import OFFICIAL_MARKER, convert_official_file

PACKAGE_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))  # mmbiformer/
REPO_ROOT = osp.dirname(PACKAGE_ROOT)
# Installed (wheel, pip install .): the build copies configs and index in here.
MIM_ROOT = osp.join(PACKAGE_ROOT, '.mim')
CHUNK = 1 << 16


def data_root() -> str:
    """Where ``model-index.yml`` and ``configs/`` are: the installed package's
    ``.mim/``, or the repository of an editable install."""
    if osp.isfile(osp.join(MIM_ROOT, 'model-index.yml')):
        return MIM_ROOT
    return REPO_ROOT


def index_file() -> str:
    return osp.join(data_root(), 'model-index.yml')


def config_file(name: str) -> str:
    """Path of a shipped config, e.g. ``config_file('det/maskrcnn_biformer_s.py')``
    (also a model-zoo name's ``Config`` entry, ``configs/det/...``)."""
    name = name[len('configs/'):] if name.startswith('configs/') else name
    path = osp.join(data_root(), 'configs', name)
    if not osp.isfile(path):
        folder = osp.join(data_root(), 'configs')
        shipped = sorted(osp.relpath(osp.join(d, f), folder) for d, _, files in
                         os.walk(folder) for f in files if f.endswith('.py'))
        close = difflib.get_close_matches(name, shipped, n=3, cutoff=0.5)
        raise FileNotFoundError(f'no shipped config {name!r}' + (
            f'; did you mean: {", ".join(close)}?' if close else f'; shipped: {shipped}'))
    return path


class ModelZooError(RuntimeError):
    """Unknown name, unreachable weights or a bad download, with what to do."""


def load_index(path: Optional[str] = None) -> Dict[str, dict]:
    """All models of the index (``path``, default :func:`index_file`) by name."""
    import yaml
    path = path or index_file()
    with open(path) as f:
        index = yaml.safe_load(f)
    models = {}
    for entry in index.get('Import', []):
        with open(osp.join(osp.dirname(path), entry)) as f:
            for model in yaml.safe_load(f).get('Models', []):
                models[model['Name']] = model
    return models


def find_model(name: str) -> dict:
    models = load_index()
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=3, cutoff=0.5)
        hint = f' Did you mean: {", ".join(close)}?' if close else ''
        raise ModelZooError(f'unknown model name {name!r}.{hint} '
                            f'`python tools/download.py --list` shows all names.')
    return models[name]


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def download(url: str, dst: str, sha256: Optional[str] = None, timeout: float = 60,
             progress: bool = True) -> str:
    """Download ``url`` to ``dst`` through ``dst + '.part'``.

    An existing ``.part`` is resumed with an HTTP Range request; the file gets its
    final name only once complete and (if ``sha256`` is given) verified.
    """
    part = dst + '.part'
    if osp.isdir(url):  # a local mirror folder
        url = osp.join(url, osp.basename(dst))
    if not url.startswith(('http://', 'https://', 'file://')):
        if not osp.isfile(url):
            raise ModelZooError(f'no file at {url}')
        shutil.copyfile(url, part)
    else:
        have = osp.getsize(part) if osp.exists(part) else 0
        request = urllib.request.Request(url, headers={'User-Agent': 'mmbiformer'})
        if have:
            request.add_header('Range', f'bytes={have}-')
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code != 416:  # 416: the part is already complete
                raise
            response = None
        if response is not None:
            with response:
                resumed = response.status == 206
                total = response.headers.get('Content-Length')
                total = int(total) + (have if resumed else 0) if total else None
                bar = _progress(total, have if resumed else 0, osp.basename(dst), progress)
                with open(part, 'ab' if resumed else 'wb') as f:
                    for block in iter(lambda: response.read(CHUNK), b''):
                        f.write(block)
                        bar.update(len(block))
                bar.close()
                if total is not None and osp.getsize(part) < total:
                    raise ModelZooError(f'{url}: connection closed after '
                                        f'{osp.getsize(part)} of {total} bytes (the '
                                        f'partial file is kept; run again to resume)')
                if total is None and not sha256:
                    _check_loads(part, url)
    if sha256:
        _check_sha256(part, sha256, url)
    os.replace(part, dst)
    return dst


def _check_sha256(path: str, sha256: str, url: str) -> None:
    """Delete ``path`` and raise unless its checksum is ``sha256``."""
    actual = _sha256(path)
    if actual != sha256.lower():
        os.remove(path)
        raise ModelZooError(f'{url}: sha256 mismatch (expected {sha256}, got '
                            f'{actual}); the download was deleted. The file on the '
                            f'server differs from the published one.')


def _check_loads(part: str, url: str) -> None:
    """Without a length or a checksum, a complete file is one that loads: a transfer
    cut short would otherwise be kept under the final name and reused for ever."""
    try:
        safe_load(part)
    except CheckpointError as e:
        os.remove(part)
        raise ModelZooError(f'{url}: the server sent no length and the file does not '
                            f'load as a checkpoint (cut short?); it was deleted. {e}') from e


def _official_layout(path: str) -> bool:
    """The checkpoint file holds the official BiFormer key names (not ours)."""
    return OFFICIAL_MARKER in extract_state_dict(safe_load(path), path)


def url_cache_path(url: str) -> str:
    """Cache file of a checkpoint URL: its name, prefixed by a hash of the whole URL
    (two URLs ending in ``model.pth`` must not share a file)."""
    name = osp.basename(url.split('?')[0]) or 'checkpoint.pth'
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return osp.join(cache_dir(), 'urls', f'{digest}-{name}')


def _progress(total, initial, name, enabled):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit='B', unit_scale=True,
                desc=f'downloading {name}', disable=not enabled, leave=False)


def candidate_urls(model: dict, urls: Optional[List[str]] = None) -> List[str]:
    if urls:
        return list(urls)
    found = []
    mirror = os.environ.get('MMBIFORMER_MIRROR')
    if mirror:  # a folder or a URL prefix holding <name>.pth
        found.append(osp.join(mirror, f'{model["Name"]}.pth') if osp.isdir(mirror) else
                     mirror.rstrip('/') + f'/{model["Name"]}.pth')
    if model.get('Weights'):
        found.append(model['Weights'])
    found.extend(model.get('Mirrors') or [])
    return found


# What else a run can do when a backbone's ImageNet weights (init_cfg) cannot be had;
# said only there: for a checkpoint to test or resume, training without it is no fix.
INIT_CFG_HINT = ('you can also train without them: --cfg-options '
                 'model.backbone.init_cfg=None.')


def fetch(name: str, urls: Optional[List[str]] = None, progress: bool = True,
          timeout: float = 60, init_cfg: bool = False) -> str:
    """Local path of model ``name`` in mmbiformer's layout, downloading if needed
    (``init_cfg``: the weights a backbone starts from)."""
    model = find_model(name)
    final = osp.join(cache_dir(), f'{name}.pth')
    if osp.isfile(final):
        return final
    candidates = candidate_urls(model, urls)
    if not candidates:
        raise ModelZooError(
            f'{name}: no weights are published for this model ({model.get("Note", "")}). '
            f'Train it with tools/train.py {model.get("Config", "")}, or set '
            f'MMBIFORMER_MIRROR to a folder or URL holding {name}.pth.')
    os.makedirs(cache_dir(), exist_ok=True)
    official = model.get('Layout') == 'official'
    raw = final + ('.official' if official else '')
    errors = []
    sha256 = model.get('SHA256')
    for url in candidates:
        try:
            # A mirror (folder or URL) may hold the official file or one already
            # converted (another machine's cache): the published checksum is the
            # official file's, so it is checked once the layout is known.
            published = not official or url == model.get('Weights')
            download(url, raw, sha256 if published else None, timeout=timeout,
                     progress=progress)
            break
        except (OSError, ModelZooError, CheckpointError, urllib.error.URLError) as e:
            errors.append(f'  {url}: {e}')
    else:
        raise ModelZooError(f'{name}: every source failed:\n' + '\n'.join(errors) +
                            f'\nSet MMBIFORMER_MIRROR to a reachable folder or URL '
                            f'prefix holding {name}.pth, or pass the file path instead'
                            + (f'; {INIT_CFG_HINT}' if init_cfg else '.'))
    if official:
        try:  # a corrupt file raises a CheckpointError here
            if not _official_layout(raw):
                os.replace(raw, final)  # converted already: taken as it is
                return final
            if not published and sha256:
                _check_sha256(raw, sha256, url)
            convert_official_file(raw, final)
        finally:  # a file that cannot be converted is not kept either
            if osp.exists(raw):
                os.remove(raw)
    return final


def resolve_checkpoint(name_or_path: str, init_cfg: bool = False, **kwargs) -> str:
    """A local file for a path, a URL, or a model-zoo name (``init_cfg``: the weights
    a backbone starts from)."""
    ref = str(name_or_path)
    path = osp.expanduser(ref)
    if osp.isfile(path):
        return path
    if ref.startswith(('http://', 'https://')):
        dst = url_cache_path(ref)
        if not osp.isfile(dst):
            os.makedirs(osp.dirname(dst), exist_ok=True)
            try:
                download(ref, dst, **kwargs)
            except (OSError, urllib.error.URLError) as e:
                raise ModelZooError(f'{ref}: download failed ({e}). Check the URL and '
                                    f'the network, or download the file and pass its '
                                    f'path.') from e
        return dst
    if os.sep in ref or ref.endswith(('.pth', '.pt', '.ckpt')):
        raise FileNotFoundError(f'checkpoint not found: {ref}')
    return fetch(ref, init_cfg=init_cfg, **kwargs)
