"""Storage: segments, indexes, partitions and the store of topics on disk.

Knows nothing of the network."""
