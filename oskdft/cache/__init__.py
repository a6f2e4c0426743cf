"""Teacher feature cache (stage 2): hidden states stored with lhotse's array storage, in the
formats of :mod:`oskdft.data.storage`.
"""

from oskdft.cache.key import CacheSpec, cache_spec
from oskdft.cache.teacher_cache import (
    TeacherCache,
    cache_teacher_job,
    merge_teacher_cache,
    open_teacher_cache,
)

__all__ = [
    "CacheSpec",
    "TeacherCache",
    "cache_spec",
    "cache_teacher_job",
    "merge_teacher_cache",
    "open_teacher_cache",
]
