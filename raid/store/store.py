"""The HDF5 feature store: one row per image, keyed by its path relative to the input root.

Format 2 (h5py, one file; every dataset chunked with fletcher32 checksums):
    /features      (N, D) float32
    /labels        (N,)   int8: 0 real, 1 generated, -1 unknown
    /group_index   (N,)   int32 into the group names
    /key_ends, /key_bytes   keys, UTF-8 (surrogateescape: any file name), concatenated;
                            unique: the row's identity
    /digests       (N, 16) uint8: BLAKE2b-128 of the source file's bytes (zeros: unknown)
    /sources       (N, 2) int64: the source file's size and mtime_ns when it was hashed
    /group_ends, /group_bytes       group names (e.g. generator names)
    /failure_ends, /failure_bytes   a log of "key\\0reason" (empty reason: cleared)
    /root_ends, /root_bytes         input folders as JSON {"root", "prefix"}
    /committed     (2, 16) int64: the committed counts (rows, key bytes, groups, ...) in
                   two slots written alternately; the one with the higher sequence counts
    attrs: format, format_version (2), feature_dim, provenance (JSON)

Datasets may be longer than the committed counts (a killed writer's last batch): readers
use the counts, never the lengths. Appends happen in place (`raid.store.writer`), under a
lock (`raid.store.lock`); format-1 stores (earlier RAID) are read as they are and
converted once by the first writer.

Provenance (extractor and its settings, checkpoint digests, patch policy and seed,
perturbation, feature size) is fixed when the store is created; appending rows made with
other settings is refused, naming what differs. Only `VOLATILE_PROVENANCE` keys may differ.
During a run each process writes shards (`raid.store.shards`); `merge_shards` folds them
into the store at the end.
"""

from raid.store.lock import store_lock
from raid.store.reader import (FORMAT, FORMAT_VERSION, NO_DIGEST, VOLATILE_PROVENANCE,
                               FeatureStore, Rows, flatten, provenance_differences)
from raid.store.shards import (MergeResult, ShardContent, ShardWriter, merge_shards,
                               read_shard)
from raid.store.writer import StoreWriter, remove_stray_temporaries

__all__ = ["FORMAT", "FORMAT_VERSION", "NO_DIGEST", "VOLATILE_PROVENANCE", "FeatureStore",
           "MergeResult", "Rows", "ShardContent", "ShardWriter", "StoreWriter", "flatten",
           "merge_shards", "provenance_differences", "read_shard", "remove_stray_temporaries",
           "store_lock"]
