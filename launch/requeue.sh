# --- r1mega: requeue before the time limit -------------------------------------------------
# Slurm sends USR1 to this batch shell shortly before the time limit (#SBATCH --signal=B:USR1@N).
# The handler puts the job back into the queue; Slurm then ends the running step, and the
# requeued job runs this same script again: r1mega-train finds <checkpoint dir>/latest and
# resumes (trainer.resume=true, the default). Preemption needs no handler: with
# #SBATCH --requeue a preempted job goes back into the queue by itself.
r1mega_requeue() {
    echo "r1mega: USR1 at $(date '+%F %T'): requeueing job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0})"
    scontrol requeue "${SLURM_JOB_ID}"
}
trap r1mega_requeue USR1

# bash runs a trap only once the foreground command has returned, and the training step runs
# for hours: run every srun in the background and wait for it. wait returns early (status > 128)
# when a trapped signal arrives, the trap runs, and the loop waits on until the step has ended;
# the last wait gives the step's own exit status (bash keeps it for a re-wait).
srun() {
    command srun "$@" &
    local pid=$!
    wait "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        wait "$pid"
    done
    wait "$pid"
}
# --- end requeue ------------------------------------------------------------------------
