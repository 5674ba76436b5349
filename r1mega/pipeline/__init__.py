"""One-command pipelines: the R1 recipe as a chain of ``r1mega-train`` stages.

``config``   PipelineConfig / StepConfig (the ``pipeline=`` group, conf/pipeline/*.yaml)
``select``   when ``r1mega-train`` runs a pipeline instead of a stage, and where
``steps``    a step's resolved overrides, command line and fingerprint
``preflight`` every step's configuration checked before the first step runs
``state``    DONE.json: how a finished step is recognised and skipped on a rerun
``mixing``   the ``mix`` step: reasoning SFT data + user non-reasoning data at a ratio
``report``   the final evaluation table, summary.json and the PNG of curves
``runner``   the orchestrator that runs the steps in order
"""
