"""Data loading guards: unreadable images and label maps named, checked or skipped."""
from .unreadable import (CheckedLoad, UnreadableDataError, check_images,  # noqa: F401
                         find_unreadable, guard_loading, unguard_loading)
