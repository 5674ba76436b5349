"""Running reward jobs that can hang or are hostile: the worker pool with a hard deadline per job
(``pool``, ``worker``, ``worker_preload``), the in-process executor for ``num_workers=0``
(``inline``), the code sandbox (``sandbox``) with the kernel isolation it layers
(``isolation``) and the cleanup of leftover processes (``procs``)."""
