"""Cluster launch: ``r1mega-launch`` starts ``r1mega-train`` on Slurm or on this machine.

How a launch flows, module by module:

1. :mod:`~r1mega.launch.cluster`: ``cluster=<name>`` + ``cluster.*`` overrides ->
   :class:`ClusterConfig` (validated: account, partition, time format, tunnel, ...);
2. :mod:`~r1mega.launch.sweep`: the remaining overrides, Hydra multirun syntax -> points;
3. :mod:`~r1mega.launch.jobs`: one job per point, with its run (and checkpoint) directory
   fixed so a requeued job resumes where it stopped;
4. :mod:`~r1mega.launch.preflight`: the layout checked on ``nodes x gpus_per_node`` GPUs and
   the memory estimated by :mod:`r1mega.plan`, before anything is submitted;
5. submission, one of
   * :mod:`~r1mega.launch.nemo`: a NeMo-Run experiment (``SlurmExecutor`` / ``LocalExecutor``,
     torchrun launcher), which also submits over SSH, or
   * :mod:`~r1mega.launch.sbatch`: ``launch/r1mega.sbatch.j2`` rendered and given to ``sbatch``;
   both carry :mod:`~r1mega.launch.environment` and the requeue trap of ``launch/requeue.sh``;
6. :mod:`~r1mega.launch.summary`: afterwards, every point's ``summary.json`` in one table.
"""
