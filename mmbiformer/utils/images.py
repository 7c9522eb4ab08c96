"""Reading an image a tool was given, with an error that names a missing or broken
file."""
import os.path as osp

from ..errors import UserError, error_summary

def shrink_to_side(image, max_side: int, interpolation: str = 'area'):
    """``(image, scale)``: ``image`` resized down so that its longer side is at most
    ``max_side`` (``scale`` < 1), or itself and 1.0 when it fits or ``max_side`` is 0."""
    import mmcv
    side = max(image.shape[:2])
    if not max_side or side <= max_side:
        return image, 1.0
    scale = max_side / side
    return mmcv.imrescale(image, scale, interpolation=interpolation), scale


def read_image(path: str, what: str = 'image'):
    """The BGR image at ``path``, read before the work that needs it: a missing or
    undecodable file (truncated, empty, not an image) is a :class:`UserError` naming
    it, not a decoder's traceback later."""
    import mmcv
    if not osp.isfile(path):
        raise UserError(f'{what} not found: {path}')
    if osp.getsize(path) == 0:
        raise UserError(f'{what} {path} is empty (0 bytes)')
    reason = ''
    try:
        image = mmcv.imread(path)
    except Exception as e:  # noqa: BLE001 (cv2.error on an empty file, ...)
        image, reason = None, f' ({error_summary(e)})'
    if image is None:
        raise UserError(f'{what} {path}: cannot decode it as an image (corrupt, truncated '
                        f'or not an image file){reason}')
    return image
