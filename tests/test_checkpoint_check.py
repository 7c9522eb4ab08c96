"""Whole-model checkpoints are checked before test/demo use them (nothing evaluates a
mostly random model with exit 0)."""
import pytest
import torch
from torch import nn

from mmbiformer.weights.checkpoint import CheckpointError, check_model_checkpoint
from mmbiformer.models import BiFormer


class Detectorish(nn.Module):
    def __init__(self, arch):
        super().__init__()
        self.backbone = BiFormer(arch, n_win=4)
        self.head = nn.Linear(self.backbone.embed_dims[-1], 3)


def _save(tmp_path, state, name='ckpt.pth'):
    path = str(tmp_path / name)
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def small():
    return Detectorish('small')


def test_own_checkpoint_passes(small, tmp_path):
    check_model_checkpoint(small, _save(tmp_path, small.state_dict()))


def test_linear_state_dict_is_refused(small, tmp_path):
    path = _save(tmp_path, nn.Linear(4, 2).state_dict())
    with pytest.raises(CheckpointError) as e:
        check_model_checkpoint(small, path)
    msg = str(e.value)
    n = len(small.state_dict())
    assert path in msg and f'of its {n} weights' in msg and 'not a checkpoint of this model' in msg
    assert '--allow-partial' in msg


def test_tiny_weights_for_small_config_are_refused(small, tmp_path):
    path = _save(tmp_path, Detectorish('tiny').state_dict())
    with pytest.raises(CheckpointError, match='fewer blocks than the model'):
        check_model_checkpoint(small, path)



def test_small_weights_for_tiny_config_are_refused(small, tmp_path):
    """The other direction: every tensor of T is in an S checkpoint, so nothing is
    missing, but S's extra blocks would be dropped (it was a warning and exit 0)."""
    path = _save(tmp_path, small.state_dict())
    with pytest.raises(CheckpointError, match=r'bigger model than this config builds: it '
                       r'holds \[4, 4, 18, 4\] blocks per stage, this model \[2, 2, 8, 2\]'
                       r'.*--allow-partial'):
        check_model_checkpoint(Detectorish('tiny'), path)
    check_model_checkpoint(Detectorish('tiny'), path, allow_partial=True)

def test_tiny_weights_for_base_config_are_refused(tmp_path):
    path = _save(tmp_path, Detectorish('tiny').state_dict())
    with pytest.raises(CheckpointError, match=r'have another shape.*another arch'):
        check_model_checkpoint(Detectorish('base'), path)


def test_backbone_only_file_points_at_init_cfg(small, tmp_path):
    path = _save(tmp_path, small.backbone.state_dict())
    with pytest.raises(CheckpointError, match=r"backbone only.*init_cfg=dict\(type='Pretrained'"):
        check_model_checkpoint(small, path)


def test_allow_partial_lets_it_through(small, tmp_path):
    path = _save(tmp_path, nn.Linear(4, 2).state_dict())
    check_model_checkpoint(small, path, allow_partial=True)


def test_corrupt_file_is_a_checkpoint_error(small, tmp_path):
    path = tmp_path / 'bad.pth'
    path.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='corrupt or not a PyTorch checkpoint'):
        check_model_checkpoint(small, str(path))


def test_mapped_loads_read_old_files_and_refuse_cut_ones(small, tmp_path):
    """The checks map a checkpoint's tensors: a file in torch's old (non-zip) format,
    which cannot be mapped, is read whole; a file cut short is still refused."""
    old = str(tmp_path / 'old.pth')
    torch.save({'state_dict': small.state_dict()}, old, _use_new_zipfile_serialization=False)
    check_model_checkpoint(small, old)
    whole = _save(tmp_path, small.state_dict())
    cut = tmp_path / 'cut.pth'
    with open(whole, 'rb') as f:
        cut.write_bytes(f.read()[:-1000])
    with pytest.raises(CheckpointError, match='corrupt or not a PyTorch checkpoint'):
        check_model_checkpoint(small, str(cut))


@pytest.mark.parametrize('tool', ['test', 'demo'])
def test_tools_refuse_a_foreign_checkpoint(tool, tmp_path):
    import glob
    import os.path as osp

    from mmbiformer.testing import MAKERS
    from mmbiformer.utils.short_run import as_cli, short_run_options
    coco = MAKERS['coco'](str(tmp_path / 'coco'), num_train=1, num_val=1, size=(64, 96))
    opts = ['--cfg-options', *as_cli(short_run_options('retinanet', coco, (64, 96), 1))]
    path = _save(tmp_path, nn.Linear(4, 2).state_dict(), 'linear.pth')
    config = 'configs/det/retinanet_biformer_t.py'
    if tool == 'test':
        args = ['tools/test.py', config, path, '--work-dir', str(tmp_path / 'w')]
    else:
        image = sorted(glob.glob(osp.join(coco, 'val2017', '*.jpg')))[0]
        args = ['tools/demo.py', config, path, image, '--device', 'cpu',
                '--out', str(tmp_path / 'out.jpg')]
    from helpers import run_in_process, tool_error
    out = tool_error(*args, *opts)  # in this process: the suite's time
    assert 'linear.pth does not fit this model' in out and '--allow-partial' in out
    assert not osp.exists(tmp_path / 'out.jpg')
    run_in_process(*args, '--allow-partial', *opts)


class _Task(nn.Module):
    """The backbone of every task and the heads that tell which task it is."""

    def __init__(self, *heads):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        for name in heads:
            setattr(self, name, nn.Linear(2, 3))


@pytest.mark.parametrize('file_heads,model_heads,file_task,model_task', [
    (('rpn_head', 'roi_head'), ('decode_head', 'auxiliary_head'), 'detection',
     'segmentation'),
    (('decode_head', ), ('bbox_head', ), 'segmentation', 'detection'),
])
def test_checkpoint_of_another_task_is_named(file_heads, model_heads, file_task,
                                             model_task, tmp_path):
    """Not 'fewer blocks' nor 'backbone only': the file's task and the fix."""
    path = _save(tmp_path, _Task(*file_heads).state_dict())
    with pytest.raises(CheckpointError) as e:
        check_model_checkpoint(_Task(*model_heads), path)
    msg = str(e.value)
    assert f'checkpoint of a {file_task}' in msg and f'builds a {model_task}' in msg
    assert 'config it was trained with' in msg and "prefix='backbone.'" in msg
    assert 'backbone only' not in msg and 'fewer blocks' not in msg


def test_a_fine_tune_start_may_differ_in_its_heads_only(small, tmp_path):
    """load_from at a fine-tune's start: another number of classes (the head's shape)
    passes, fewer blocks in the backbone does not; the hint says how to go on."""
    other_head = dict(small.state_dict(), **{'head.weight': torch.zeros(5, 512),
                                             'head.bias': torch.zeros(5)})
    check_model_checkpoint(small, _save(tmp_path, other_head), heads_may_differ=True)
    with pytest.raises(CheckpointError, match='fewer blocks.*To start, pass X'):
        check_model_checkpoint(small, _save(tmp_path, Detectorish('tiny').state_dict()),
                               heads_may_differ=True, hint='To start, pass X')


def test_a_detector_of_other_heads_is_named(tmp_path):
    """A RetinaNet checkpoint for a Mask R-CNN config: the heads of each, not 'another
    arch or number of classes'."""
    path = _save(tmp_path, _Task('bbox_head').state_dict())
    with pytest.raises(CheckpointError) as e:
        check_model_checkpoint(_Task('rpn_head', 'roi_head'), path)
    msg = str(e.value)
    assert 'another detection model: its heads are bbox_head, this config\'s are roi_head, ' \
        'rpn_head' in msg and 'another arch' not in msg
