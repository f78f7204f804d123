"""The machinery that makes `produce` and `consume` fast: forked, in-order worker pools
(pool.py), pipe input read straight into shared memory (pipe_blocks.py), files split, encoded and
compressed into record batches by workers (file_producer.py), fetched records decoded and rendered
by workers (render.py), and malloc tuning for the workers (malloc_tuning.py).

Used by cli/ and bench/; it imports client/ and records, never cli/ (it prints nothing: what to
write is handed to it).
"""
