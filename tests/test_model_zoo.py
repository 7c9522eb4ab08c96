"""Model zoo: downloads from a loopback HTTP server (127.0.0.1, started here)."""
import hashlib
import http.server
import os
import subprocess
import sys
import threading

import pytest
import torch

from mmbiformer.weights import model_zoo
from mmbiformer.weights.checkpoint import CheckpointError
from mmbiformer.models import BiFormer
from official_reference import random_official_state_dict
from helpers import ROOT



class Server:
    """Serves files from a dict, with HTTP Range; can cut the first response short."""

    def __init__(self):
        self.files, self.requests, self.cut_next, self.no_length = {}, [], False, False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get('Range')))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get('Range')
                if rng:
                    start = int(rng.split('=')[1].split('-')[0])
                    self.send_response(206)
                    self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
                else:
                    self.send_response(200)
                if not server.no_length:
                    self.send_header('Content-Length', str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_next:
                    server.cut_next = False
                    body = body[:len(body) // 2]
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope='module')
def official_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp('w') / 'official.pth'
    state = random_official_state_dict('tiny', seed=1)
    torch.save({'model': state}, path)
    return path.read_bytes(), state


@pytest.fixture
def server(monkeypatch, tmp_path, official_bytes):
    srv = Server()
    srv.files['/biformer-t_in1k.pth'] = official_bytes[0]
    monkeypatch.setenv('MMBIFORMER_HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('MMBIFORMER_MIRROR', srv.url)
    yield srv
    srv.stop()


def test_download_by_name_converts_on_arrival(server, official_bytes):
    path = model_zoo.fetch('biformer-t_in1k', progress=False)
    assert path == os.path.join(model_zoo.cache_dir(), 'biformer-t_in1k.pth')
    state = torch.load(path, weights_only=True)['state_dict']
    official = official_bytes[1]
    assert torch.equal(state['backbone.stages.2.5.attn.qkv.qkv.weight'],
                       official['stages.2.5.attn.qkv.qkv.weight'])
    assert torch.equal(state['head.fc.weight'], official['head.weight'])
    assert not [f for f in os.listdir(model_zoo.cache_dir()) if f != 'biformer-t_in1k.pth']


def test_cache_hit_needs_no_network(server):
    first = model_zoo.fetch('biformer-t_in1k', progress=False)
    server.stop()
    os.environ['MMBIFORMER_MIRROR'] = 'http://127.0.0.1:9/unreachable'
    assert model_zoo.fetch('biformer-t_in1k', progress=False) == first


def test_resume_after_cut_connection(server, official_bytes):
    server.cut_next = True
    with pytest.raises(model_zoo.ModelZooError, match='connection closed'):
        model_zoo.fetch('biformer-t_in1k', progress=False)
    part = os.path.join(model_zoo.cache_dir(), 'biformer-t_in1k.pth.official.part')
    assert 0 < os.path.getsize(part) < len(official_bytes[0])
    assert not os.path.exists(os.path.join(model_zoo.cache_dir(), 'biformer-t_in1k.pth'))
    path = model_zoo.fetch('biformer-t_in1k', progress=False)
    assert server.requests[-1][1] == f'bytes={len(official_bytes[0]) // 2}-'
    assert torch.load(path, weights_only=True)['state_dict']


def test_sha256_checked(server, official_bytes, monkeypatch):
    entry = dict(model_zoo.find_model('biformer-t_in1k'))
    monkeypatch.setattr(model_zoo, 'find_model', lambda name: entry)
    entry['SHA256'] = '0' * 64
    with pytest.raises(model_zoo.ModelZooError, match='sha256 mismatch'):
        model_zoo.fetch('biformer-t_in1k', progress=False)
    assert os.listdir(model_zoo.cache_dir()) == []  # nothing half-written kept
    entry['SHA256'] = hashlib.sha256(official_bytes[0]).hexdigest()
    assert os.path.isfile(model_zoo.fetch('biformer-t_in1k', progress=False))


def test_name_in_config_init_cfg(server, official_bytes):
    model = BiFormer('tiny', init_cfg=dict(type='Pretrained', checkpoint='biformer-t_in1k'))
    model.init_weights()
    assert torch.equal(model.state_dict()['stages.0.0.mlp.0.weight'],
                       official_bytes[1]['stages.0.0.mlp.0.weight'])


def test_corrupt_download_is_a_clear_error(server):
    server.files['/biformer-t_in1k.pth'] = b'<html>this is a login page</html>'
    with pytest.raises(CheckpointError, match='corrupt or not a PyTorch checkpoint'):
        model_zoo.fetch('biformer-t_in1k', progress=False)
    assert os.listdir(model_zoo.cache_dir()) == []


def test_all_sources_failing(server):
    """Every source named; training without the weights is offered only where they
    are a backbone's init_cfg (for a checkpoint to test, that is no fix)."""
    urls = [server.url + '/missing.pth', 'http://127.0.0.1:9/x.pth']
    for init_cfg in (True, False):
        with pytest.raises(model_zoo.ModelZooError, match='every source failed') as e:
            model_zoo.fetch('biformer-t_in1k', urls=urls, progress=False, init_cfg=init_cfg)
        assert 'missing.pth' in str(e.value) and '127.0.0.1:9' in str(e.value)
        assert 'MMBIFORMER_MIRROR' in str(e.value)
        assert ('model.backbone.init_cfg=None' in str(e.value)) == init_cfg


def test_unknown_name_lists_close_names():
    with pytest.raises(model_zoo.ModelZooError, match='Did you mean: biformer-s_in1k'):
        model_zoo.find_model('biformer-s_in1')


def test_dense_models_have_no_weights(monkeypatch, tmp_path):
    monkeypatch.setenv('MMBIFORMER_HOME', str(tmp_path))
    monkeypatch.delenv('MMBIFORMER_MIRROR', raising=False)
    with pytest.raises(model_zoo.ModelZooError, match='no weights are published'):
        model_zoo.fetch('maskrcnn_biformer-s_coco')


def test_download_tool_list():
    proc = subprocess.run([sys.executable, 'tools/download.py', '--list'], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for text in ('biformer-s_in1k', 'Top 1 Accuracy 83.8', 'maskrcnn_biformer-s_coco',
                 'box AP 47.8', 'no (logs only)', 'mIoU 49.8'):
        assert text in proc.stdout


def test_url_cache_is_keyed_by_the_whole_url(server, tmp_path):
    for i, folder in enumerate(('a', 'b')):
        buf = tmp_path / f'{folder}.pth'
        torch.save({'state_dict': {'w': torch.full((2, ), float(i))}}, buf)
        server.files[f'/{folder}/model.pth'] = buf.read_bytes()
    first = model_zoo.resolve_checkpoint(server.url + '/a/model.pth', progress=False)
    second = model_zoo.resolve_checkpoint(server.url + '/b/model.pth', progress=False)
    assert first != second
    assert [p for p, _ in server.requests] == ['/a/model.pth', '/b/model.pth']
    assert torch.load(second, weights_only=True)['state_dict']['w'].tolist() == [1., 1.]
    # Cached: the same URL again makes no request.
    assert model_zoo.resolve_checkpoint(server.url + '/a/model.pth') == first
    assert len(server.requests) == 2


def test_cut_download_without_length_is_not_kept(server, official_bytes):
    server.no_length, server.cut_next = True, True
    server.files['/x/model.pth'] = official_bytes[0]
    url = server.url + '/x/model.pth'
    with pytest.raises(model_zoo.ModelZooError, match='sent no length.*deleted'):
        model_zoo.resolve_checkpoint(url, progress=False)
    assert not os.path.exists(model_zoo.url_cache_path(url))
    # Complete (it loads): kept under its final name.
    path = model_zoo.resolve_checkpoint(url, progress=False)
    assert path == model_zoo.url_cache_path(url) and os.path.isfile(path)


def test_unreachable_url_is_a_model_zoo_error(server):
    with pytest.raises(model_zoo.ModelZooError, match='download failed'):
        model_zoo.resolve_checkpoint('http://127.0.0.1:9/nothing/model.pth', timeout=5)


@pytest.mark.parametrize('layout', ['official', 'converted'])
def test_local_mirror_folder_holds_name_pth(layout, official_bytes, tmp_path, monkeypatch):
    """README: MMBIFORMER_MIRROR may be a folder holding <name>.pth. An ImageNet model
    (official layout upstream) is found there as the official file or as a file already
    converted (copied from another machine's cache); both give the converted weights."""
    monkeypatch.setenv('MMBIFORMER_HOME', str(tmp_path / 'home'))
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    official = official_bytes[1]
    if layout == 'official':
        (mirror / 'biformer-t_in1k.pth').write_bytes(official_bytes[0])
    else:
        converted = {('head.fc.' + k[5:]) if k.startswith('head.') else 'backbone.' + k: v
                     for k, v in official.items()}
        torch.save({'state_dict': converted}, mirror / 'biformer-t_in1k.pth')
    monkeypatch.setenv('MMBIFORMER_MIRROR', str(mirror))
    path = model_zoo.fetch('biformer-t_in1k', progress=False)
    state = torch.load(path, weights_only=True)['state_dict']
    assert torch.equal(state['backbone.stages.2.5.attn.qkv.qkv.weight'],
                       official['stages.2.5.attn.qkv.qkv.weight'])
    assert torch.equal(state['head.fc.weight'], official['head.weight'])
    assert sorted(os.listdir(model_zoo.cache_dir())) == ['biformer-t_in1k.pth']


def _converted(official):
    return {('head.fc.' + k[5:]) if k.startswith('head.') else 'backbone.' + k: v
            for k, v in official.items()}


@pytest.mark.parametrize('where', ['url', 'folder'])
def test_mirrors_take_our_layout_and_training_checkpoints(where, official_bytes, tmp_path,
                                                          monkeypatch):
    """A mirror (URL prefix or folder) may serve the file in our layout, even one of our
    training checkpoints (mmengine's message hub: HistoryBuffers, an empty one among
    them): taken as it is, not sent to the official converter or refused."""
    from mmengine.logging import HistoryBuffer
    monkeypatch.setenv('MMBIFORMER_HOME', str(tmp_path / 'home'))
    ckpt = tmp_path / 'ours.pth'
    torch.save({'state_dict': _converted(official_bytes[1]), 'meta': {'epoch': 3},
                'message_hub': {'log_scalars': {'loss': HistoryBuffer()}}}, ckpt)
    srv = None
    if where == 'url':
        srv = Server()
        srv.files['/biformer-t_in1k.pth'] = ckpt.read_bytes()
        monkeypatch.setenv('MMBIFORMER_MIRROR', srv.url)
    else:
        (tmp_path / 'mirror').mkdir()
        (tmp_path / 'mirror' / 'biformer-t_in1k.pth').write_bytes(ckpt.read_bytes())
        monkeypatch.setenv('MMBIFORMER_MIRROR', str(tmp_path / 'mirror'))
    try:
        path = model_zoo.fetch('biformer-t_in1k', progress=False)
    finally:
        if srv:
            srv.stop()
    state = torch.load(path, weights_only=True)['state_dict']
    assert torch.equal(state['head.fc.weight'], official_bytes[1]['head.weight'])
    assert sorted(os.listdir(model_zoo.cache_dir())) == ['biformer-t_in1k.pth']
