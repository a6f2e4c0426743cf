"""Teacher feature cache (stage 2): hidden states stored with lhotse's array storage.

Importing the package registers the fp16 storage backend with lhotse, which reading cached
windows needs (:mod:`oskdft.cache.storage`).
"""

from oskdft.cache.key import CacheSpec, cache_spec
from oskdft.cache.storage import STORAGES, get_storage
from oskdft.cache.teacher_cache import (
    TeacherCache,
    cache_teacher_job,
    merge_teacher_cache,
    open_teacher_cache,
)

__all__ = [
    "STORAGES",
    "CacheSpec",
    "TeacherCache",
    "cache_spec",
    "cache_teacher_job",
    "get_storage",
    "merge_teacher_cache",
    "open_teacher_cache",
]
