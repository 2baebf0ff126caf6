"""Stop cleanly when asked to: SIGTERM (SLURM, Kubernetes), SIGINT (Ctrl-C) and SIGUSR1 (SLURM `--signal`).

The first signal only sets a flag. The recipe's loop calls `exit_if_preempted` after every optimizer step; there all
processes agree (a max over ranks, on a small CPU process group, so no device synchronisation) on whether any of them
was signalled, write a checkpoint at that step, print one line saying where it is and how to resume, and exit with
`EXIT_PREEMPTED`. A second signal exits at once without a checkpoint.

Signals that arrive before the first training step or after the loop (data preparation, final evaluation and save)
stop the process at once, with one line: there is no step to finish.

Under a single-process `accelerate launch`, the launcher (a plain `subprocess.Popen` + `wait`) dies of SIGTERM without
passing it on; `install` therefore asks the kernel to signal the trainer when its parent dies (`PR_SET_PDEATHSIG`,
Linux; SIGUSR2, handled as a first stop request, so that a Ctrl-C that reached both the launcher and the trainer is
not counted twice), so the trainer checkpoints and exits instead of running on as an orphan. Only a process that
`accelerate launch` started does this: a recipe run as `nohup python recipes/... &` outlives the shell that started
it, as its user asked.

From accelerate 1.16 the single-process launcher passes SIGTERM on, and answers a Ctrl-C (which the trainer got as
well) with a SIGTERM to its children: under `accelerate launch`, that one SIGTERM after a SIGINT is the same request,
not the second signal that exits at once. That launcher kills its children 5 s after it signals them, so the step in
flight and the checkpoint must fit in 5 s there (signal the trainer itself, or use `python recipes/...`, otherwise).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

import torch

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped on request after a checkpoint; rerun with --resume_from_checkpoint latest
SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")
PARENT_DEATH_SIGNAL = signal.SIGUSR2  # sent by the kernel when the parent dies (PR_SET_PDEATHSIG)
_PR_SET_PDEATHSIG = 1


class _Preemption:
    """Process-wide state of the handlers (signals are per process, so one instance)."""

    def __init__(self):
        self.requested: str | None = None  # name of the first signal received
        self.armed = False  # inside the training loop: finish the step and checkpoint
        self.installed = False
        self.rank = 0
        self.group = None  # gloo process group for the agreement when world size > 1
        self.previous: dict = {}
        self.relayed = False  # the launcher's SIGTERM that follows a Ctrl-C was seen

    def handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested == "SIGINT" and name == "SIGTERM" and launched_by_accelerate() and not self.relayed:
            # accelerate >= 1.16's launcher answers the Ctrl-C it got with SIGTERM to its children: the same request
            self.relayed = True
            return
        if self.requested or not self.armed:
            if self.requested:
                _say(f"second signal ({name}): exiting now without a checkpoint", self.rank)
            else:
                _say(f"stopped by {name} outside the training loop (no step to finish, nothing saved)", self.rank)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signum)
        self.requested = name
        _say(
            f"received {name}: finishing the current optimizer step, then checkpointing (send it again to stop at once)",
            self.rank,
        )

    def handle_parent_death(self, signum, frame):
        """The launcher died (SIGTERM to `accelerate launch`, or its KeyboardInterrupt on Ctrl-C, which also reached
        this process): a first request, never the "second signal" that skips the checkpoint."""
        if self.requested:
            return
        if not self.armed:
            _say("stopped: the launching process exited outside the training loop (nothing saved)", self.rank)
            os._exit(128 + signal.SIGTERM)
        self.requested = "the exit of the launching process"
        _say("the launching process exited: finishing the current optimizer step, then checkpointing", self.rank)


_STATE = _Preemption()


def _say(line: str, rank: int) -> None:
    if rank == 0:
        print(line, file=sys.stderr, flush=True)


def launched_by_accelerate() -> bool:
    """Whether `accelerate launch` started this process (its launchers export the ACCELERATE_DYNAMO_* settings)."""
    return "ACCELERATE_DYNAMO_BACKEND" in os.environ


def install(accelerator) -> None:
    """Collective (with several processes). Install the handlers and the parent-death signal; called by
    `make_accelerator`, so every recipe has them."""
    _STATE.rank = accelerator.process_index
    _STATE.requested, _STATE.armed, _STATE.relayed = None, False, False
    if accelerator.num_processes > 1 and _STATE.group is None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            # a CPU group for the per-step flag: no host-device synchronisation on NCCL backends
            _STATE.group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    for name in SIGNALS:
        signum = getattr(signal, name)
        previous = signal.signal(signum, _STATE.handle)
        if not _STATE.installed:
            _STATE.previous[signum] = previous
    _STATE.installed = True
    if sys.platform.startswith("linux") and launched_by_accelerate():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            signal.signal(PARENT_DEATH_SIGNAL, _STATE.handle_parent_death)
            libc.prctl(_PR_SET_PDEATHSIG, PARENT_DEATH_SIGNAL)
            if os.getppid() == 1:  # the parent died before the call: act on it now
                os.kill(os.getpid(), PARENT_DEATH_SIGNAL)
        except (OSError, AttributeError):
            pass


def arm() -> None:
    """Signals from now on finish the current step and checkpoint (the loop has started)."""
    _STATE.armed = True


def disarm() -> None:
    """The loop is over: a signal stops the process at once again."""
    _STATE.armed = False


def stop_requested(accelerator) -> bool:
    """Whether any process received a stop signal, agreed by all processes (call it at the same step on all)."""
    arm()
    delay = float(os.environ.get("TOOLKIT_TEST_STEP_DELAY", "0") or 0)  # tests: slow steps down to signal mid-run
    if delay:
        time.sleep(delay)
    local = _STATE.requested is not None
    if accelerator.num_processes == 1 or _STATE.group is None:
        return local
    import torch.distributed as dist

    flag = torch.tensor([int(local)], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_STATE.group)
    return bool(flag.item())


def exit_if_preempted(accelerator, args, progress) -> None:
    """Collective; call after each optimizer step. If a stop signal arrived on any process: checkpoint this step
    (with the partial logging window, so the resumed run logs what the uninterrupted one would), print where it is
    and how to resume, and exit with `EXIT_PREEMPTED`. `progress`: the loop's `ProgressLogger` (or, for a loop
    without one, its `TrainState`)."""
    if not stop_requested(accelerator):
        return
    from toolkit.training.checkpoint import save_checkpoint

    state = getattr(progress, "state", progress)
    if hasattr(progress, "pending_window"):
        state.pending_log = progress.pending_window()
    path = save_checkpoint(accelerator, args.output_dir, state, args.save_total_limit)
    state.pending_log = None
    if hasattr(progress, "bar"):
        progress.bar.close()
    disarm()
    name = _STATE.requested or "a signal on another process"
    if accelerator.is_main_process:
        print(
            f"stopped by {name} after step {state.global_step}: checkpoint {path}; to resume, run the same command "
            f"with --resume_from_checkpoint latest (exit code {EXIT_PREEMPTED})",
            file=sys.stderr,
            flush=True,
        )
    accelerator.end_training()
    sys.exit(EXIT_PREEMPTED)
